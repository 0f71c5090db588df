import pytest

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


# -------------------------------------------------------------------- records the sensor cannot use


from mlops_assets.core.monitoring.retraining import CheckRecord, select_failures  # noqa: E402


def test_planned_records_are_skipped_with_a_note_once_and_picked_up_when_their_result_lands():
    state = RetrainState()
    planned = CheckRecord(5, "data_drift_ok", "PLANNED", "2025-02-10")
    later = CheckRecord(7, "data_drift_ok", "FAILED", "2025-02-12", "ERROR")
    failures, notes = select_failures(state, [planned, later])
    assert failures == [FailedCheck(7, "data_drift_ok", "2025-02-12")]
    [note] = notes
    assert "record 5 (2025-02-10) has no result yet" in note
    assert state.pending == [5] and state.last_event_id == 7
    state = RetrainState.from_cursor(state.to_cursor())
    assert select_failures(state, [planned, later]) == ([], [])  # said once; nothing new
    # the run finishes: the same record (same id, behind the cursor now) has its result
    resolved = CheckRecord(5, "data_drift_ok", "FAILED", "2025-02-10", "ERROR")
    failures, notes = select_failures(state, [resolved, later])
    assert failures == [FailedCheck(5, "data_drift_ok", "2025-02-10")] and notes == [] and state.pending == []


def test_records_without_a_day_a_severity_or_a_known_status_are_skipped_with_a_note():
    state = RetrainState()
    records = [CheckRecord(1, "performance_ok", "FAILED", None, "ERROR"),
               CheckRecord(2, "performance_ok", "FAILED", "2025-02-10", None),
               CheckRecord(3, "performance_ok", "SKIPPED", "2025-02-10"),
               CheckRecord(4, "performance_ok", "FAILED", "2025-02-11", "WARN"),
               CheckRecord(6, "performance_ok", "SUCCEEDED", "2025-02-12", "ERROR")]
    failures, notes = select_failures(state, records)
    assert failures == [] and len(notes) == 3 and state.last_event_id == 6
    assert "no partition" in notes[0] and "severity" in notes[1] and "'SKIPPED'" in notes[2]


def test_a_planned_record_that_never_gets_a_result_is_given_up_when_it_leaves_the_window():
    state = RetrainState(pending=[3], last_event_id=9)
    failures, notes = select_failures(state, [CheckRecord(9, "data_drift_ok", "SUCCEEDED", "2025-02-10", "ERROR")])
    assert failures == [] and state.pending == [] and "record 3" in notes[0] and "given up" in notes[0]


def test_an_unreadable_cursor_is_a_value_error_and_an_old_one_still_reads():
    with pytest.raises(ValueError, match="unreadable retrain sensor cursor"):
        RetrainState.from_cursor("{not json")
    old = RetrainState.from_cursor('{"last_event_id": 4, "last_retrain_day": "2025-02-01", "suppressed": []}')
    assert (old.last_event_id, old.pending) == (4, [])
