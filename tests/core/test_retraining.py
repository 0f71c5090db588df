from mlops_assets.core.monitoring.retraining import FailedCheck, RetrainState, plan_first_model, plan_retrains

DAYS = [f"2025-02-{d:02d}" for d in range(1, 29)]


def test_one_incident_one_retrain_with_cooldown():
    state = RetrainState()
    failures = [FailedCheck(10, "data_drift_ok", "2025-02-10"), FailedCheck(11, "performance_ok", "2025-02-10"),
                FailedCheck(12, "data_drift_ok", "2025-02-11"), FailedCheck(13, "data_drift_ok", "2025-02-16")]
    requests = plan_retrains(state, failures, DAYS[:9], cooldown_days=7)
    assert [(r.as_of, r.incident_day) for r in requests] == [("2025-02-09", "2025-02-10")]
    assert state.last_event_id == 13 and len(state.suppressed) == 3
    # a failure after the cooldown is a new incident
    later = plan_retrains(state, [FailedCheck(20, "data_drift_ok", "2025-02-17")], DAYS, cooldown_days=7)
    assert [(r.as_of, r.check) for r in later] == [("2025-02-17", "data_drift_ok")]


def test_cursor_round_trip_keeps_the_cooldown():
    state = RetrainState()
    plan_retrains(state, [FailedCheck(5, "data_drift_ok", "2025-02-10")], DAYS, cooldown_days=7)
    again = RetrainState.from_cursor(state.to_cursor())
    assert plan_retrains(again, [FailedCheck(6, "data_drift_ok", "2025-02-12")], DAYS, cooldown_days=7) == []


def test_failure_before_any_label_requests_nothing():
    state = RetrainState()
    assert plan_retrains(state, [FailedCheck(1, "data_drift_ok", "2025-01-05")], DAYS, cooldown_days=7) == []
    assert state.last_retrain_day is None


def test_first_model_waits_for_a_full_window():
    state = RetrainState()
    assert plan_first_model(state, DAYS[:20], 21, has_champion=False, cooldown_days=7) is None
    request = plan_first_model(state, DAYS[:21], 21, has_champion=False, cooldown_days=7)
    assert request.as_of == DAYS[20]
    assert plan_first_model(state, DAYS[:22], 21, has_champion=False, cooldown_days=7) is None  # cooling down
    assert plan_first_model(state, DAYS[:28], 21, has_champion=False, cooldown_days=7).as_of == DAYS[27]
    assert plan_first_model(RetrainState(), DAYS, 21, has_champion=True, cooldown_days=7) is None
