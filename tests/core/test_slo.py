"""The loop-health SLO decisions, from dates alone: no Dagster, no wall clock ("now" is always given)."""

import datetime as dt

import pytest

from mlops_assets.core.config.policies import SloPolicy
from mlops_assets.core.monitoring import slo

D0 = dt.date(1997, 3, 1)
POLICY = SloPolicy()


def day(i: int) -> dt.date:
    return D0 + dt.timedelta(days=i)


def morning(i: int, hour: int = 7) -> dt.datetime:
    return dt.datetime.combine(day(i), dt.time(hour), tzinfo=dt.timezone.utc)


def days(first: int, last: int) -> frozenset:
    return frozenset(day(i) for i in range(first, last + 1))


def healthy(now: int = 40, **changes) -> slo.LoopState:
    """A loop that kept up until the morning of day `now`: ingested, scored and labeled as it should be, a
    champion trained as of day 20."""
    champion = slo.VersionInfo("m-1997-03-21-aaaa", day(20))
    state = dict(now=morning(now), start_date=D0, end_date=None, ingested_days=days(0, now - 1),
                 scored_days=days(21, now - 1), labeled_days=days(0, now - 2), label_delay_days=1, window_days=14,
                 champion=champion, versions=(champion,), retrain_requests=())
    state.update(changes)
    return slo.LoopState(**state)


def by_name(state, policy=POLICY) -> dict[str, slo.SloResult]:
    return {r.name: r for r in slo.evaluate(state, policy)}


def test_a_healthy_loop_passes_every_slo():
    results = by_name(healthy())
    assert [r.name for r in results.values()] == list(slo.SLOS)
    assert all(r.passed for r in results.values()), {n: r.message for n, r in results.items()}
    assert results[slo.CHAMPION_AGE].metadata["age_days"] == 20
    assert results[slo.DATA_FRESHNESS].message == f"ingested through {day(39)}"


def test_data_freshness_allows_one_late_day_then_names_the_first_day_not_ingested():
    # ingested through day 29, then nothing: day 30 may still be on its way on the morning of day 31 ...
    assert slo.data_freshness(healthy(31, ingested_days=days(0, 29)), POLICY).passed
    # ... not on the morning of day 32
    result = slo.data_freshness(healthy(32, ingested_days=days(0, 29)), POLICY)
    assert not result.passed and result.severity == "ERROR"
    assert result.message.startswith(f"{day(30)} not ingested: 2 days not ingested ({day(30)} .. {day(31)})")
    assert f"the last ingested day is {day(29)}" in result.message
    assert result.metadata["delay_days"] == 2 and result.metadata["last_ingested_day"] == day(29).isoformat()
    # stricter spec: no late day at all
    assert not slo.data_freshness(healthy(31, ingested_days=days(0, 29)), SloPolicy(max_ingest_delay_days=0)).passed


def test_data_freshness_before_the_first_partition_and_with_nothing_ingested():
    assert slo.data_freshness(healthy(0, ingested_days=frozenset()), POLICY).passed  # day 0 is not complete yet
    result = slo.data_freshness(healthy(5, ingested_days=frozenset()), POLICY)
    assert not result.passed and result.message.startswith(f"{day(0)} not ingested: 5 days")
    assert "no day has ever been ingested" in result.message


def test_a_historical_dataset_is_not_due_beyond_its_last_partition():
    ended = healthy(60, end_date=day(40), ingested_days=days(0, 39), scored_days=days(21, 39),
                    labeled_days=days(0, 39))
    results = by_name(ended, SloPolicy(max_champion_age_days=60))
    assert results[slo.DATA_FRESHNESS].passed and results[slo.PREDICTION_STALENESS].passed
    assert results[slo.DATA_FRESHNESS].metadata["last_complete_day"] == day(39).isoformat()


def test_prediction_staleness_names_the_first_unscored_day_and_points_at_ingestion_when_it_is_behind():
    assert slo.prediction_staleness(healthy(40, scored_days=days(21, 38)), POLICY).passed
    result = slo.prediction_staleness(healthy(40, scored_days=days(21, 35)), POLICY)
    assert not result.passed and result.message.startswith(f"{day(36)} not scored: 4 days without predictions")
    assert f"the last scored day is {day(35)}" in result.message and "ingestion is behind" not in result.message
    both = slo.prediction_staleness(healthy(40, scored_days=days(21, 35), ingested_days=days(0, 35)), POLICY)
    assert "ingestion is behind too" in both.message and slo.DATA_FRESHNESS in both.message


def test_prediction_staleness_waits_for_a_champion_and_counts_from_its_as_of_date():
    no_champion = healthy(40, champion=None, versions=(), scored_days=frozenset())
    assert slo.prediction_staleness(no_champion, POLICY).passed
    # a new champion trained as of day 38 has not scored yet: fine for a day
    fresh = slo.VersionInfo("m-new", day(38))
    assert slo.prediction_staleness(healthy(40, champion=fresh, scored_days=frozenset()), POLICY).passed
    never = slo.prediction_staleness(healthy(45, champion=fresh, scored_days=frozenset()), POLICY)
    assert not never.passed and "m-new (as of" in never.message and never.message.startswith(f"{day(39)} not scored")


def test_label_coverage_names_the_oldest_day_whose_labels_are_late():
    # delay 1, grace 1: on the morning of day 40, labels through day 37 are due (day 38's may be a day late)
    assert slo.label_coverage(healthy(40, labeled_days=days(0, 37)), POLICY).passed
    result = slo.label_coverage(healthy(40, labeled_days=days(0, 34)), POLICY)
    assert not result.passed and result.severity == "ERROR"
    assert result.message.startswith(f"labels of {day(35)} not landed: due {day(36)} (label_delay_days 1), 4 days late")
    assert "3 of 14 ingested days due lack labels" in result.message
    assert result.metadata["missing_days"] == ", ".join(d.isoformat() for d in (day(35), day(36), day(37)))
    # a gap older than the training window no longer matters; a day never ingested is freshness's business
    assert slo.label_coverage(healthy(40, labeled_days=days(0, 37) - {day(5)}), POLICY).passed
    assert slo.label_coverage(healthy(40, labeled_days=days(0, 30), ingested_days=days(0, 30)), POLICY).passed


def test_label_coverage_follows_the_spec_delay_and_grace():
    # delay 3: on the morning of day 40, day 36's labels are due today and day 35's were due yesterday
    assert slo.label_coverage(healthy(40, labeled_days=days(0, 34), label_delay_days=3),
                              SloPolicy(label_grace_days=2)).passed
    late = slo.label_coverage(healthy(40, labeled_days=days(0, 34), label_delay_days=3), POLICY)
    assert not late.passed and late.message.startswith(f"labels of {day(35)} not landed: due {day(38)} "
                                                       "(label_delay_days 3), 2 days late, allowed 1")
    assert slo.label_coverage(healthy(40, labeled_days=days(0, 35), label_delay_days=3), POLICY).passed


def request(incident: int, as_of: int, status="NOT_STARTED") -> slo.RetrainRequestInfo:
    return slo.RetrainRequestInfo(day(incident), day(as_of), f"data_drift_ok failed on {day(incident)}", "r" * 32,
                                  status)


def test_retraining_cadence_fails_for_a_request_nothing_answered():
    pending = healthy(36, retrain_requests=(request(33, 32),))
    ok = slo.retraining_cadence(pending, POLICY)  # 3 days after the incident; allowed 2 + label delay 1
    assert ok.passed and "pending for 3 of 3 allowed days" in ok.message
    result = slo.retraining_cadence(healthy(37, retrain_requests=(request(33, 32),)), POLICY)
    assert not result.passed and result.severity == "ERROR"
    assert result.message.startswith(f"retrain requested (data_drift_ok failed on {day(33)}; as of {day(32)}; "
                                     "run rrrrrrrr NOT_STARTED) has no candidate")
    assert "after 4 days, allowed 3" in result.message and result.metadata["unanswered_requests"] == 1


def test_retraining_cadence_is_satisfied_by_any_version_trained_on_the_requested_data():
    answered = slo.VersionInfo("m-1997-04-02-bbbb", day(32))  # gates may have failed: the loop still answered
    state = healthy(50, versions=(healthy().champion, answered), retrain_requests=(request(33, 32, "SUCCESS"),))
    assert slo.retraining_cadence(state, POLICY).passed
    # a later request supersedes an earlier failed one once it is answered
    state = healthy(50, versions=(healthy().champion, slo.VersionInfo("m-x", day(40))),
                    retrain_requests=(request(33, 32, "FAILURE"), request(41, 40, "SUCCESS")))
    assert slo.retraining_cadence(state, POLICY).passed
    assert slo.retraining_cadence(healthy(50), POLICY).message == "no retrain requested"


def test_champion_age_warns_with_the_age_and_newer_versions_waiting():
    assert slo.champion_age(healthy(50), POLICY).passed  # as of day 20: 30 days
    result = slo.champion_age(healthy(51), POLICY)
    assert not result.passed and result.severity == "WARN"
    assert result.message == (f"champion m-1997-03-21-aaaa is 31 days old: trained as of {day(20)}, allowed 30; "
                              "no newer version registered")
    newer = slo.VersionInfo("m-1997-04-20-cccc", day(50))
    waiting = slo.champion_age(healthy(51, versions=(healthy().champion, newer)), SloPolicy(max_champion_age_days=10))
    assert "1 newer version(s) registered, newest m-1997-04-20-cccc" in waiting.message
    assert slo.champion_age(healthy(51, champion=None), POLICY).passed


def test_now_for_an_evaluation_nobody_scheduled():
    wall = dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.timezone.utc)
    assert slo.manual_now(wall, None, day(10), 7) == (wall, "the wall clock")  # a live feed
    now, why = slo.manual_now(wall, dt.date(1998, 12, 7), dt.date(1997, 6, 18), 7)
    assert now == dt.datetime(1997, 6, 19, 7, tzinfo=dt.timezone.utc) and "1997-06-18" in why
    assert slo.manual_now(wall, dt.date(1998, 12, 7), None, 7)[0] == wall
    assert slo.parse_now("1997-06-19T06:00:00") == dt.datetime(1997, 6, 19, 6, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("trigger, expected", [
    ("performance_ok failed on 1997-05-01", dt.date(1997, 5, 1)),
    ("no champion yet failed on 1997-04-11", dt.date(1997, 4, 11)),
    ("someone asked", dt.date(1997, 4, 30)),
])
def test_incident_day_of_a_trigger(trigger, expected):
    assert slo.incident_day_of(trigger, dt.date(1997, 4, 30)) == expected


def test_as_of_from_lineage_else_from_the_version_name():
    assert slo.as_of_of("x", {"manifest": {"as_of": "1997-04-11"}}) == dt.date(1997, 4, 11)
    assert slo.as_of_of("elec2-1997-04-11-1a2b3c4d", {"manifest": None}) == dt.date(1997, 4, 11)
    assert slo.as_of_of("synthetic-inverted-1a2b", {}) is None


def test_now_is_the_ticks_then_the_latest_ticks_then_the_manual_one():
    wall = dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.timezone.utc)

    def never():
        raise AssertionError("the landing zone is listed only for a historical dataset with no tick")

    tick, last = "1997-05-02T06:00:00+00:00", "1997-05-01T06:00:00+00:00"
    assert slo.loop_now(tick, last, wall, dt.date(1998, 12, 7), never, 7)[0] == slo.parse_now(tick)
    now, why = slo.loop_now(None, last, wall, dt.date(1998, 12, 7), never, 7)
    assert now == slo.parse_now(last) and "latest loop-health schedule tick" in why
    assert slo.loop_now(None, None, wall, None, never, 7) == (wall, "the wall clock")
    assert slo.loop_now(None, None, wall, dt.date(1998, 12, 7), lambda: dt.date(1997, 6, 18), 7)[0] == \
        dt.datetime(1997, 6, 19, 7, tzinfo=dt.timezone.utc)
