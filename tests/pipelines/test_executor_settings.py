"""The executor is chosen by the settings, not the code: unset keeps Dagster's default, `celery` puts every job's
steps on the Celery executor configured with the profile's broker and backend."""

import pytest
import yaml

from conftest import SPECS
from mlops_assets.core.config.settings import Settings, SettingsError
from mlops_assets.defs import build_definitions
from mlops_assets.defs.execution import celery_config
from mlops_assets.profiles.production.stack import INSTANCE_YAML, _safe


def settings(tmp_path, **env):
    return Settings.from_env({"MLOPS_SPECS": str(SPECS / "synthetic.toml"), "MLOPS_DATA_DIR": str(tmp_path), **env})


def test_default_keeps_dagsters_executor(tmp_path):
    defs = build_definitions(settings(tmp_path))
    assert defs.executor is None
    assert defs.resolve_job_def("synthetic_daily_ingestion_job").executor_def.name == "multi_or_in_process_executor"


def test_celery_executor_from_settings(tmp_path):
    broker = "pyamqp://guest:guest@127.0.0.1:5672/mlops_x"
    chosen = settings(tmp_path, MLOPS_EXECUTOR="celery", MLOPS_CELERY_BROKER=broker, MLOPS_CELERY_BACKEND="rpc://")
    assert celery_config(chosen) == {"broker": broker, "backend": "rpc://"}
    defs = build_definitions(chosen)
    # every job, asset jobs and op jobs alike (the asset jobs and the promotion job shown)
    for job in ("synthetic_daily_ingestion_job", "synthetic_train_candidate_job", "synthetic_promote_model"):
        assert defs.resolve_job_def(job).executor_def.name == "celery"


def test_every_job_tags_its_runs_with_its_model(tmp_path):
    """The run queue's one-run-per-model limit keys on mlops/model: a run launched by hand (UI, CLI) must carry it
    too, not only the sensors' and schedules' runs."""
    defs = build_definitions(settings(tmp_path))
    jobs = [job for job in defs.resolve_all_job_defs() if not job.name.startswith("__")]
    assert len(jobs) >= 6
    assert {job.name: job.tags.get("mlops/model") for job in jobs} == {job.name: "synthetic" for job in jobs}


def test_unknown_executor_is_refused_naming_the_variable(tmp_path):
    with pytest.raises(SettingsError, match="MLOPS_EXECUTOR='kubernetes'"):
        settings(tmp_path, MLOPS_EXECUTOR="kubernetes")


def test_production_instance_yaml_limits_one_run_per_model_and_keeps_secrets_out():
    config = yaml.safe_load(INSTANCE_YAML.read_text())
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "MLOPS_INSTANCE_PG_URL"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    [limit] = config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert limit == {"key": "mlops/model", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}


def test_production_instance_yaml_loads_with_the_url_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "dagster.yaml").write_text(INSTANCE_YAML.read_text())
    monkeypatch.setenv("MLOPS_INSTANCE_PG_URL", "postgresql+psycopg2://u:secret@127.0.0.1:1/none")
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(tmp_path))
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "MLOPS_INSTANCE_PG_URL"}


def test_urls_in_messages_hide_the_password():
    assert _safe("pyamqp://guest:hunter2@127.0.0.1:5672/v") == "pyamqp://guest:***@127.0.0.1:5672/v"
    assert _safe("postgresql://postgres@127.0.0.1:5432/postgres") == "postgresql://postgres@127.0.0.1:5432/postgres"
