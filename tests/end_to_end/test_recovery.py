"""Recovery without a human, by Dagster's own machinery as the shipped dagster.yaml configures it (run
monitoring, run retries), with the real dagster-daemon launching the code location's own sensor runs:

- a run whose worker is SIGKILLed mid-step is marked failed by the code server that launched it and
  re-executed from the failed step by run retries, keeping its run key: the day gets done;
- runs stopped by the pipeline itself (a blocking schema check, a dg.Failure) are not retried;
- a run whose worker died together with its code server (the daemon was killed) stays STARTED until run
  monitoring fails it at max_runtime_seconds; it is then retried the same way, although the sensor's own
  request for that day, with the dead run's run key, is skipped by the daemon.
"""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from conftest import SPECS
from harness import START, synthetic_history
from mlops_assets.core.config.settings import Settings
from mlops_assets.core.ingestion.landing import features_file_name
from mlops_assets.defs import build_definitions
from mlops_assets.demo import corruptions, synthetic
from mlops_assets.demo.history import load_labeled_days

sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemon_support import (  # noqa: E402
    Budget, Daemon, create_storage, descendants, finished, instance_home, run_worker_pid, step_events,
)

# Test-only: the monitoring daemon polls every 5 s instead of 30 s; everything else is the shipped YAML.
FAST_POLL = {"poll_interval_seconds": 5}


def day(i: int) -> str:
    return (START + dt.timedelta(days=i)).isoformat()


def _location(tmp_path, monkeypatch, run_monitoring):
    home = instance_home(tmp_path / "dagster_home", run_monitoring=run_monitoring)
    env = {"DAGSTER_HOME": str(home), "MLOPS_SPECS": str(SPECS / "synthetic.toml"),
           "MLOPS_DATA_DIR": str(tmp_path / "data")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    create_storage()
    project = build_definitions(Settings.from_env()).resources["portfolio"].model("synthetic")
    return env, project


def _materialized_by(instance, asset: str, partition: str) -> str | None:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(["synthetic", asset]), asset_partitions=[partition]), limit=1).records
    return records[0].run_id if records else None


def _retry_of(instance, run_id: str) -> str | None:
    return instance.get_run_by_id(run_id).tags.get("dagster/auto_retry_run_id")


@pytest.mark.slow
def test_a_run_killed_mid_step_is_failed_and_retried_until_its_day_is_done(tmp_path, monkeypatch):
    env, project = _location(tmp_path, monkeypatch, FAST_POLL)
    spec = project.spec
    # 24 labeled days: the retrain sensor's first tick requests the first candidate as of the last one. Rows
    # enough that training takes a couple of seconds, so the worker is killed while that step is running.
    history = synthetic_history(spec, 24, rows_per_day=1500)
    load_labeled_days(project.store, spec, history, sorted(history))
    # Two days whose files the pipeline rejects: a blocking schema check fails (out of range) and raw_batch
    # raises dg.Failure (an empty file). Both are the pipeline deciding, not crashing: never retried.
    cfg = synthetic.ScenarioConfig("stable", START + dt.timedelta(days=24), 2, rows_per_day=50, seed=3)
    for batch, kind in zip(synthetic.generate_days(spec, cfg), ("out_of_range", "empty_file")):
        project.landing.deliver(features_file_name(batch.day), corruptions.features_file_bytes(spec, batch, kind))

    with Daemon(tmp_path, env) as daemon, dg.DagsterInstance.get() as instance:
        budget = Budget(480, daemon)
        [first] = budget.wait_for(lambda: instance.get_runs(filters=dg.RunsFilter(
            job_name="synthetic_train_candidate_job", tags={"dagster/sensor_name": "synthetic_retrain_sensor"})),
            "the retrain sensor's run")
        budget.wait_for(lambda: "STEP_START" in step_events(instance, first.run_id).get("synthetic__candidate_model", []),
                        "the training step to start", interval=0.2)
        # Kill the run worker and the step process it runs the training in: the step is lost mid-way.
        worker = run_worker_pid(instance, first.run_id)
        assert worker is not None
        for pid in [worker, *descendants(worker)]:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        assert "STEP_SUCCESS" not in step_events(instance, first.run_id)["synthetic__candidate_model"]

        dead = budget.wait_for(lambda: finished(instance, first.run_id), "the killed run to be marked failed")
        marked_failed = time.time() - killed_at
        assert dead.status == dg.DagsterRunStatus.FAILURE
        assert dead.tags.get("dagster/failure_reason") != "STEP_FAILURE"  # not a step failing: a crash
        assert dead.tags["dagster/will_retry"] == "true"
        retry_id = budget.wait_for(lambda: _retry_of(instance, first.run_id), "the automatic retry")
        retry = budget.wait_for(lambda: finished(instance, retry_id), "the retry to finish")
        recovered = time.time() - killed_at
        assert retry.status == dg.DagsterRunStatus.SUCCESS, daemon.tail()
        # The retry is the same request: same partition, sensor and run key (the key that makes the daemon skip
        # a re-request of this day now belongs to a run that completed it).
        assert retry.tags["dagster/parent_run_id"] == first.run_id
        for tag in ("dagster/partition", "dagster/sensor_name", "dagster/run_key"):
            assert retry.tags[tag] == first.tags[tag]
        assert retry.tags["dagster/partition"] == day(23)
        # Re-executed from the failure: the step that had succeeded is not run again, the killed one is.
        redone = step_events(instance, retry_id)
        assert "synthetic__training_set" not in redone
        assert "STEP_SUCCESS" in redone["synthetic__candidate_model"]
        # The day is done: its candidate trained, registered once, evaluated.
        assert _materialized_by(instance, "candidate_model", day(23)) == retry_id
        assert _materialized_by(instance, "evaluation_report", day(23)) == retry_id
        versions = project.registry.list_versions()
        assert len(versions) == 1 and day(23) in versions[0].version and versions[0].run_id == retry_id

        # The rejected days' runs failed on a step: not retried, and the run says why.
        rejected = budget.wait_for(lambda: [r for r in instance.get_runs(filters=dg.RunsFilter(
            tags={"dagster/sensor_name": "synthetic_landing_sensor"})) if r.is_finished] or None,
            "the rejected files' runs")
        assert sorted(r.tags["dagster/partition"] for r in rejected) == [day(24), day(25)]
        time.sleep(12)  # two more passes of the re-execution daemon (every 5 s)
        for run in rejected:
            run = instance.get_run_by_id(run.run_id)
            assert run.status == dg.DagsterRunStatus.FAILURE
            assert run.tags["dagster/failure_reason"] == "STEP_FAILURE"
            assert run.tags["dagster/will_retry"] == "false"
            assert "dagster/auto_retry_run_id" not in run.tags
            assert any("Not retrying run since it failed due to an asset or op failure" in (e.message or "")
                       for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT))
        children = {r.tags.get("dagster/parent_run_id") for r in instance.get_runs()}
        assert not children & {r.run_id for r in rejected}
    print(f"\nworker killed mid-step: marked failed after {marked_failed:.1f}s, day done {recovered:.1f}s after the "
          f"kill; test {budget.elapsed():.0f}s")


@pytest.mark.slow
def test_a_run_left_started_by_a_dead_code_server_is_failed_by_monitoring_and_retried(tmp_path, monkeypatch):
    # Test-only: a run is given up after 90 s instead of an hour (an ingestion run takes about 20 s here).
    env, project = _location(tmp_path, monkeypatch, {**FAST_POLL, "max_runtime_seconds": 90})
    spec = project.spec
    [batch] = synthetic.generate_days(spec, synthetic.ScenarioConfig("stable", START, 1, rows_per_day=2000, seed=1))
    project.landing.deliver(features_file_name(batch.day), corruptions.features_file_bytes(spec, batch))

    daemon = Daemon(tmp_path, env).start()
    try:
        with dg.DagsterInstance.get() as instance:
            budget = Budget(420, daemon)
            [first] = budget.wait_for(lambda: instance.get_runs(filters=dg.RunsFilter(
                tags={"dagster/sensor_name": "synthetic_landing_sensor"})), "the landing sensor's run")
            budget.wait_for(lambda: step_events(instance, first.run_id), "a step to start", interval=0.2)
            # The machine's processes die together: daemon, code server, run worker, step processes.
            daemon.kill()
            time.sleep(3)
            assert instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.STARTED  # nobody noticed
            run_key = first.tags["dagster/run_key"]

            # The sensor asks for the day again (its cursor lost): the daemon skips it, the dead run has its key.
            subprocess.run([str(Path(sys.executable).parent / "dagster"), "sensor", "cursor", "--delete",
                            "synthetic_landing_sensor", "-w", str(daemon.workspace)],
                           env=daemon.env, check=True, capture_output=True, timeout=120)
            daemon.start()
            budget.wait_for(lambda: f'already completed with run keys: ["{run_key}"]' in daemon.tail(20000),
                            "the sensor's request with the dead run's key to be skipped")
            assert len(instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": run_key}))) == 1

            # Run monitoring gives the run up at max_runtime_seconds; run retries completes the day.
            dead = budget.wait_for(lambda: finished(instance, first.run_id), "monitoring to fail the run")
            assert dead.status == dg.DagsterRunStatus.FAILURE
            messages = [e.message or "" for e in instance.all_logs(first.run_id)]
            assert any("exceeding maximum runtime of 90 seconds" in m for m in messages), messages[-5:]
            retry_id = budget.wait_for(lambda: _retry_of(instance, first.run_id), "the automatic retry")
            retry = budget.wait_for(lambda: finished(instance, retry_id), "the retry to finish")
            assert retry.status == dg.DagsterRunStatus.SUCCESS, daemon.tail()
            assert retry.tags["dagster/run_key"] == run_key and retry.tags["dagster/partition"] == day(0)
            for asset in ("raw_batch", "feature_table"):
                assert _materialized_by(instance, asset, day(0)) == retry_id
            assert project.store.exists("feature_table", day(0))
            print(f"\ndead code server: run failed by monitoring, day done; test {budget.elapsed():.0f}s")
    finally:
        daemon.stop()
