"""The model's jobs retry a step that failed on a transient error, in the same run, and do not retry a known,
deterministic stop (a rejected file, a failed blocking check): running those again gives the same answer."""

import datetime as dt

import pytest

from conftest import SPECS
from mlops_assets.core.ingestion.landing import features_file_name
from mlops_assets.defs.ingestion import assets as ingestion_assets
from mlops_assets.demo import corruptions, synthetic

START = dt.date(2025, 1, 1)


def _events(pipeline, type_value):
    return [e for run in pipeline.instance.get_runs() for e in pipeline.instance.all_logs(run.run_id)
            if e.dagster_event and e.dagster_event.event_type_value == type_value]


@pytest.fixture
def counted_ingest(monkeypatch):
    """`ingest` as the raw batch asset calls it, failing with OSError on the first `fail_first` calls."""
    calls = {"n": 0, "fail_first": 0}
    real = ingestion_assets.ingest

    def ingest(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= calls["fail_first"]:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(ingestion_assets, "ingest", ingest)
    return calls


def _deliver(pipeline, spec, corruption=None):
    [batch] = synthetic.generate_days(spec, synthetic.ScenarioConfig("stable", START, 1, rows_per_day=40, seed=2))
    pipeline.landing.deliver(features_file_name(batch.day), corruptions.features_file_bytes(spec, batch, corruption))


def test_a_transient_step_failure_is_retried_in_the_same_run(make_pipeline, synthetic_spec, counted_ingest):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    counted_ingest["fail_first"] = 1
    _deliver(pipeline, synthetic_spec)
    assert pipeline.tick() == 1
    assert not pipeline.log.failed_runs
    assert pipeline.store.partitions("feature_table") == [START.isoformat()]
    assert counted_ingest["n"] == 2
    [retry] = _events(pipeline, "STEP_UP_FOR_RETRY")
    assert "No space left on device" in str(retry.dagster_event.event_specific_data.error)


def test_a_persistent_failure_gives_up_after_the_policys_retries(make_pipeline, synthetic_spec, counted_ingest):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    counted_ingest["fail_first"] = 99
    _deliver(pipeline, synthetic_spec)
    pipeline.tick()
    assert len(pipeline.log.failed_runs) == 1
    assert counted_ingest["n"] == 3  # the first attempt and two retries
    assert pipeline.landing.exists(features_file_name(START))  # nothing lost: the file waits in landing


@pytest.mark.parametrize("corruption", ["truncated_csv", "out_of_range"])
def test_a_rejected_file_is_not_retried(make_pipeline, synthetic_spec, counted_ingest, corruption):
    """truncated_csv stops with dg.Failure(allow_retries=False); out_of_range fails the blocking schema check."""
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    _deliver(pipeline, synthetic_spec, corruption)
    pipeline.tick()
    assert len(pipeline.log.failed_runs) == 1
    assert counted_ingest["n"] == 1
    assert not _events(pipeline, "STEP_UP_FOR_RETRY")
