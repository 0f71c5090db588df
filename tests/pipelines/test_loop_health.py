"""The loop-health SLOs through Dagster: each part of the loop stalled in turn (ingestion, scoring, labels,
retraining, promotion), the check that watches it fails with a message naming the stale day or the age, and
a loop that keeps up passes every check. "Now" is the loop-health schedule's tick, chosen by each test."""

import datetime as dt
import shutil

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time

from conftest import SPECS
from harness import START, CodeLocation, Location, synthetic_history
from mlops_assets.core.config.spec import load_spec
from mlops_assets.core.ingestion.landing import features_file_name, labels_file_name
from mlops_assets.core.monitoring import slo
from mlops_assets.defs.monitoring.slo_checks import CHECKED_ASSET, NOW_TAG
from mlops_assets.demo.history import deliveries
from mlops_assets.demo.launch import ReplayLog, execute_request, run_requests_once

HISTORY_DAYS = 30  # days 0..29 ingested and labeled; a champion trained as of day 20; days 27..29 scored
SCORED = (27, 28, 29)


def day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


def morning(i: int) -> dt.datetime:
    return dt.datetime.combine(day(i), dt.time(7, 5), tzinfo=dt.timezone.utc)


def score(loc: CodeLocation, i: int) -> None:
    job = loc.defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=loc.instance, partition_key=day(i).isoformat(),
                                    asset_selection=[loc.key("batch_scoring")], resources=loc.defs.resources,
                                    raise_on_error=False)
    assert result.success


def evaluate(loc: CodeLocation, now: dt.datetime) -> dict[str, dg.AssetCheckEvaluation]:
    """One tick of the model's loop-health schedule at `now`, and its run, as the daemon (or the replay) runs it."""
    schedule = loc.defs.get_schedule_def(loc.named("loop_health_schedule"))
    request = schedule(dg.build_schedule_context(instance=loc.instance, scheduled_execution_time=now))
    assert request.tags[NOW_TAG] == now.isoformat()
    result = execute_request(loc.defs, loc.instance, request, {**request.tags, "dagster/run_key": request.run_key},
                             schedule)
    assert result.success  # a failed SLO fails its check, never the run
    return {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"}


ROWS_PER_DAY = 300


def deliver(loc: CodeLocation, days: range, features=True, labels=False) -> None:
    """Deliver days' files to the landing zone and let the landing sensor ingest them (as many rows a day as
    the history the champion learnt from: fewer would fail raw_batch_volume_expected)."""
    history = synthetic_history(loc.project.spec, max(days) + 1, rows_per_day=ROWS_PER_DAY)
    spec = loc.project.spec
    for i in days:
        frame = history[day(i)]
        if features:
            loc.project.landing.deliver(features_file_name(day(i)),
                                        frame[spec.batch_columns].to_csv(index=False).encode())
        if labels:
            loc.project.landing.deliver(labels_file_name(day(i)),
                                        frame[spec.label_columns].to_csv(index=False).encode())
    loc.tick()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A data folder with HISTORY_DAYS of labeled history, a champion as of day 20 and days 27..29 scored,
    built once; each test works on its own copy."""
    root = tmp_path_factory.mktemp("trained")
    history = synthetic_history(load_spec(SPECS / "synthetic.toml"), HISTORY_DAYS, rows_per_day=ROWS_PER_DAY)
    loc = Location(root, SPECS / "synthetic.toml", history=history)
    assert loc.train(20).success and loc.registry.version_for("champion")
    for i in SCORED:
        score(loc, i)
    return root / "data"


def copy_of(trained, tmp_path, spec=SPECS / "synthetic.toml") -> CodeLocation:
    shutil.copytree(trained, tmp_path / "data")
    return CodeLocation(tmp_path, spec)


def test_the_five_slos_are_checks_on_the_assets_of_their_part_of_the_loop(trained, tmp_path):
    loc = copy_of(trained, tmp_path)
    graph = loc.defs.resolve_asset_graph()
    for name, asset in CHECKED_ASSET.items():
        spec = graph.get_check_spec(dg.AssetCheckKey(loc.key(asset), name))
        text = spec.description
        assert text.startswith("Loop-health SLO") and "Look at" in text and "Do:" in text
    schedule = loc.defs.get_schedule_def(loc.named("loop_health_schedule"))
    assert schedule.cron_schedule == "0 7 * * *" and schedule.job_name == loc.named("loop_health_job")
    # one run evaluates them all, with Dagster's own freshness check on raw_batch for this live feed
    checks = evaluate(loc, morning(30))
    assert set(checks) == {*slo.SLOS, "freshness_check"}
    assert all(checks[name].passed for name in slo.SLOS), {n: c.description for n, c in checks.items()}
    assert checks[slo.DATA_FRESHNESS].description == f"ingested through {day(29)}"
    assert checks[slo.CHAMPION_AGE].metadata["age_days"].value == 10


def test_ingestion_stops(trained, tmp_path):
    loc = copy_of(trained, tmp_path)
    deliver(loc, range(30, 32))  # days 30 and 31 land and are ingested, then the feed stops
    assert loc.store.partitions("raw_batch") == [day(30).isoformat(), day(31).isoformat()]
    assert evaluate(loc, morning(33))[slo.DATA_FRESHNESS].passed  # day 32 may still be on its way
    checks = evaluate(loc, morning(35))
    fresh = checks[slo.DATA_FRESHNESS]
    assert not fresh.passed and fresh.severity == dg.AssetCheckSeverity.ERROR
    assert fresh.description.startswith(f"{day(32)} not ingested: 3 days not ingested ({day(32)} .. {day(34)})")
    assert fresh.metadata["last_ingested_day"].value == day(31).isoformat()
    # predictions are stale too, and that check points at the cause
    assert "ingestion is behind too" in checks[slo.PREDICTION_STALENESS].description
    # Dagster's own freshness check on raw_batch (a live feed: the synthetic spec has no end_date) agrees when
    # the wall clock is the loop's
    with freeze_time(morning(35)):
        native = evaluate(loc, morning(35))["freshness_check"]
    assert not native.passed and day(34).isoformat() in native.description
    # the failure is what the asset's Checks tab shows: the latest evaluation of the check
    [record] = loc.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(loc.key("raw_batch"), slo.DATA_FRESHNESS), limit=1)
    assert record.status.value == "FAILED"


def test_scoring_stops(trained, tmp_path):
    loc = copy_of(trained, tmp_path)
    deliver(loc, range(30, 33))  # ingestion goes on; nothing scores after day 29
    assert evaluate(loc, morning(31))[slo.PREDICTION_STALENESS].passed  # day 30 may still be scoring
    checks = evaluate(loc, morning(33))
    stale = checks[slo.PREDICTION_STALENESS]
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.ERROR
    assert stale.description.startswith(f"{day(30)} not scored: 3 days without predictions ({day(30)} .. {day(32)})")
    assert f"the last scored day is {day(29)}" in stale.description and "ingestion is behind" not in stale.description
    assert checks[slo.DATA_FRESHNESS].passed
    score(loc, 32)  # the loop scores again
    assert evaluate(loc, morning(33))[slo.PREDICTION_STALENESS].passed


def test_labels_stop_landing(trained, tmp_path):
    loc = copy_of(trained, tmp_path)
    deliver(loc, range(30, 34))  # features of days 30..33, no labels
    checks = evaluate(loc, morning(34))
    labels = checks[slo.LABEL_COVERAGE]
    # label_delay_days 2 and one day of grace: on day 34 the labels of day 30 are two days late
    assert not labels.passed and labels.severity == dg.AssetCheckSeverity.ERROR
    assert labels.description.startswith(f"labels of {day(30)} not landed: due {day(32)} (label_delay_days 2), "
                                         "2 days late, allowed 1")
    assert checks[slo.DATA_FRESHNESS].passed
    deliver(loc, range(30, 31), features=False, labels=True)  # day 30's labels land
    assert loc.store.exists("labeled_examples", day(30).isoformat())
    assert evaluate(loc, morning(34))[slo.LABEL_COVERAGE].passed


def test_a_retrain_is_requested_but_never_runs(tmp_path):
    loc = Location(tmp_path, SPECS / "synthetic.toml", history_days=HISTORY_DAYS)  # no champion yet
    [request] = loc.sensor_requests("retrain_sensor")  # the first model, as of the latest labeled day
    assert request.partition_key == day(29).isoformat() and request.tags["mlops/trigger"]
    job = loc.defs.resolve_job_def(loc.named("train_candidate_job"))
    # the request becomes a run that is never launched (a stopped daemon, a stuck queue)
    run = loc.instance.create_run_for_job(job, status=dg.DagsterRunStatus.NOT_STARTED, tags={
        **request.tags, "dagster/partition": request.partition_key, "dagster/run_key": request.run_key})
    # allowed: label_delay_days 2 + max_retrain_wait_days 2 after the incident day (day 29)
    assert evaluate(loc, morning(33))[slo.RETRAINING_CADENCE].passed
    cadence = evaluate(loc, morning(34))[slo.RETRAINING_CADENCE]
    assert not cadence.passed and cadence.severity == dg.AssetCheckSeverity.ERROR
    assert cadence.description.startswith(
        f"retrain requested (no champion yet failed on {day(29)}; as of {day(29)}; run {run.run_id[:8]} NOT_STARTED) "
        f"has no candidate trained as of {day(29)} or later after 5 days, allowed 4")
    assert cadence.metadata["oldest_request_run"].value == run.run_id
    loc.train(29)  # someone runs it: a candidate trained on the requested data answers it, whatever its gates say
    assert loc.registry.list_versions()
    assert evaluate(loc, morning(34))[slo.RETRAINING_CADENCE].passed


def test_a_champion_kept_too_long(trained, tmp_path):
    spec = tmp_path / "synthetic.toml"
    spec.write_text((SPECS / "synthetic.toml").read_text() + "\n[slo]\nmax_champion_age_days = 8\n")
    loc = copy_of(trained, tmp_path, spec)
    champion = loc.registry.version_for("champion")
    assert evaluate(loc, morning(28))[slo.CHAMPION_AGE].passed  # as of day 20: 8 days old
    checks = evaluate(loc, morning(29))
    age = checks[slo.CHAMPION_AGE]
    assert not age.passed and age.severity == dg.AssetCheckSeverity.WARN
    assert age.description == (f"champion {champion} is 9 days old: trained as of {day(20)}, allowed 8; "
                               "no newer version registered")
    assert age.metadata["age_days"].value == 9
    assert all(checks[name].passed for name in slo.SLOS if name != slo.CHAMPION_AGE)


def test_an_evaluation_by_hand_of_a_historical_dataset_uses_the_loops_clock(trained, tmp_path):
    """No schedule tick (someone runs the job from the UI): a dataset whose partitions ended before the wall
    clock is judged as of the morning after the latest day the loop has seen, not as of today."""
    spec = tmp_path / "synthetic.toml"
    spec.write_text((SPECS / "synthetic.toml").read_text().replace(
        'start_date = "2025-01-01"', 'start_date = "2025-01-01"\nend_date = "2025-03-01"'))
    loc = copy_of(trained, tmp_path, spec)
    job = loc.defs.resolve_job_def(loc.named("loop_health_job"))
    result = job.execute_in_process(instance=loc.instance, resources=loc.defs.resources)
    checks = {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert set(checks) == set(slo.SLOS)  # no wall-clock freshness check for a historical dataset
    assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items()}
    fresh = checks[slo.DATA_FRESHNESS].metadata
    assert fresh["now"].value == morning(30).replace(minute=0).isoformat()
    assert "latest day the loop has seen" in fresh["now_from"].value


def test_a_loop_that_keeps_up_passes_every_check(tmp_path):
    """A live feed: each morning the previous day's features (and the labels whose delay has passed) land, and
    the sensors and schedules run as the daemon runs them. Every loop-health check passes every morning, and so
    does Dagster's wall-clock freshness check on raw_batch (the wall clock frozen to the loop's)."""
    history = synthetic_history(load_spec(SPECS / "synthetic.toml"), 27, rows_per_day=300)
    loc = Location(tmp_path, SPECS / "synthetic.toml", history={d: f for d, f in history.items() if d < day(23)})
    with freeze_time(morning(21)):  # the first model, trained on the morning of day 21 (its run checks its age)
        assert loc.train(20).success
    log = ReplayLog()
    for delivery in deliveries(history, loc.project.spec, day(23), day(26)):
        for name, content in delivery.files.items():
            loc.project.landing.deliver(name, content)
        now = morning((delivery.day - START).days + 1)  # the day is over: its file lands the next morning
        with freeze_time(now):
            run_requests_once(loc.defs, loc.instance, log, echo=lambda *_: None, now=now, model=loc.model)
    assert not log.failed_runs
    health = [r for r in loc.instance.get_runs()
              if r.tags.get("dagster/schedule_name") == loc.named("loop_health_schedule")]
    assert {r.tags[NOW_TAG] for r in health} == {morning(i).isoformat() for i in (24, 25, 26, 27)}
    assert loc.store.documents("scoring_stats")[-1] == day(26).isoformat()  # the schedule scores yesterday

    def outcomes(asset, name):
        """Completed evaluations, newest first: the schedule's and those of runs that materialised the asset."""
        records = loc.instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(loc.key(asset), name), limit=50)
        done = [r for r in records if r.status.value != "PLANNED"]
        by_schedule = [r for r in done if r.run_id in {run.run_id for run in health}]
        assert len(by_schedule) == 4, name
        return {r.status.value for r in done}

    for name in slo.SLOS:
        assert outcomes(CHECKED_ASSET[name], name) == {"SUCCEEDED"}, name
    assert outcomes("raw_batch", "freshness_check") == {"SUCCEEDED"}
