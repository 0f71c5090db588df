"""The real dagster-daemon, with the code location's sensors running, sees a drift check fail and launches
a retraining run on its own."""

import shutil
import sys
from pathlib import Path

import dagster as dg
import pytest

from conftest import REPO, SPECS
from harness import START, synthetic_history
from mlops_assets.demo.history import load_labeled_days
from mlops_assets.core.config.settings import Settings
from mlops_assets.defs import build_definitions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemon_support import Budget, Daemon, finished  # noqa: E402

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def day(i):
    import datetime as dt

    return (START + dt.timedelta(days=i)).isoformat()


@pytest.mark.slow
def test_daemon_retrain_sensor_launches_a_run_after_drift(tmp_path, monkeypatch):
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    shutil.copy(REPO / "mlops_assets" / "dagster.yaml", home / "dagster.yaml")
    env = {"DAGSTER_HOME": str(home), "MLOPS_SPECS": str(SPECS / "synthetic.toml"), "MLOPS_DATA_DIR": str(data)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    # An instance with a champion and a drifting day already scored: what a week in production leaves behind.
    settings = Settings.from_env()
    defs = build_definitions(settings)
    project = defs.resources["portfolio"].model("synthetic")
    spec = project.spec
    history = synthetic_history(spec, 28, scenario="abrupt_shift", rows_per_day=300, onset_day=24, magnitude=2.0)
    load_labeled_days(project.store, spec, history, sorted(history))
    with dg.DagsterInstance.get() as instance:
        for job, partition in (("synthetic_train_candidate_job", day(20)), ("synthetic_score_and_monitor_job", day(25))):
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance, partition_key=partition, run_config=QUIET, resources=defs.resources,
                raise_on_error=False)
            assert result.success or job == "synthetic_score_and_monitor_job"
        drift = project.store.read_json("data_drift_report", day(25))
        assert drift["status"] == "ERROR"
        before = {r.run_id for r in instance.get_runs()}

    with Daemon(tmp_path, env) as daemon, dg.DagsterInstance.get() as instance:
        budget = Budget(240, daemon)

        def launched_by_the_sensor():
            return next((run for run in instance.get_runs(filters=dg.RunsFilter(job_name="synthetic_train_candidate_job"))
                         if run.run_id not in before
                         and run.tags.get("dagster/sensor_name") == "synthetic_retrain_sensor"), None)

        launched = budget.wait_for(launched_by_the_sensor, "the retrain sensor's run", interval=3)
        assert launched.tags["dagster/partition"] == day(25)
        assert "data_drift_ok failed on " + day(25) in launched.tags["mlops/trigger"]
        budget.wait_for(lambda: finished(instance, launched.run_id), "the retraining run to finish", interval=3)
        # it ran the training steps (the gates may pass or stop it: both are the product working)
        steps = {e.step_key for e in instance.all_logs(launched.run_id) if e.step_key}
        assert {"synthetic__training_set", "synthetic__candidate_model"} <= steps
