"""The volume check on raw_batch: a day with 1 of its 24 expected rows is blocked before feature_table, and a
person's recorded acceptance lets that version of the day through."""

import datetime as dt

import dagster as dg

from conftest import SPECS
from mlops_assets import cli
from mlops_assets.core.ingestion import volume
from mlops_assets.core.ingestion.landing import features_file_name, labels_file_name
from mlops_assets.demo import synthetic

START = dt.date(2025, 1, 1)


def test_a_day_with_1_of_24_rows_is_blocked_and_can_be_accepted_with_a_reason(make_pipeline, synthetic_spec,
                                                                             tmp_path, monkeypatch, capsys):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    cfg = synthetic.ScenarioConfig("stable", START, 10, rows_per_day=24, seed=4)
    batches = list(synthetic.generate_days(synthetic_spec, cfg))
    for batch in batches[:9]:
        pipeline.landing.deliver(features_file_name(batch.day), batch.features.to_csv(index=False).encode())
    pipeline.tick()
    assert not pipeline.log.failed_runs and len(pipeline.store.partitions("feature_table")) == 9

    short = batches[9]
    day = short.day.isoformat()
    pipeline.landing.deliver(features_file_name(short.day), short.features.head(1).to_csv(index=False).encode())
    pipeline.tick()
    assert pipeline.store.exists("raw_batch", day)  # the schema passed: the file is kept ...
    assert not pipeline.store.exists("feature_table", day)  # ... but the day goes no further
    [run] = [r for r in pipeline.instance.get_runs() if r.tags.get("dagster/partition") == day]
    assert run.status.value == "FAILURE"
    key = pipeline.key("raw_batch")
    records = pipeline.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, "raw_batch_volume_expected"), limit=20)
    evaluation = records[0].event.dagster_event.event_specific_data
    assert records[0].partition == day and not evaluation.passed
    assert evaluation.metadata["rows"].value == 1 and evaluation.metadata["expected"].value == 24
    # its labels land later: with no feature table, the labeled examples are not built either
    pipeline.landing.deliver(labels_file_name(short.day), short.labels.head(1).to_csv(index=False).encode())
    pipeline.tick()
    assert not pipeline.store.exists("labeled_examples", day)

    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLOPS_SPECS", str(SPECS / "synthetic.toml"))
    assert cli.main(["accept-volume", day, "--model", "synthetic", "--reason", " "]) == 1  # a reason is required
    assert cli.main(["accept-volume", day, "--model", "synthetic", "--reason", "fire drill at 01:00",
                     "--actor", "ops"]) == 0
    assert "1 rows accepted by ops" in capsys.readouterr().out
    assert volume.acceptance_for(pipeline.store, day, pipeline.store.fingerprint("raw_batch", day)).actor == "ops"
    result = pipeline.run_job("daily_ingestion_job", day)
    assert result.success and pipeline.checks(result)["raw_batch_volume_expected"]
    assert pipeline.store.exists("feature_table", day)
    evaluation = pipeline.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, "raw_batch_volume_expected"), limit=1)[0].event.dagster_event.event_specific_data
    assert "fire drill at 01:00" in evaluation.metadata["accepted_by"].value


def test_a_short_re_delivery_is_held_and_the_accepted_day_stays(make_pipeline, synthetic_spec, tmp_path,
                                                                monkeypatch, capsys):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    cfg = synthetic.ScenarioConfig("stable", START, 10, rows_per_day=24, seed=5)
    batches = list(synthetic.generate_days(synthetic_spec, cfg))
    for batch in batches:
        pipeline.landing.deliver(features_file_name(batch.day), batch.features.to_csv(index=False).encode())
    pipeline.tick()
    last = batches[-1]
    day = last.day.isoformat()
    accepted = pipeline.store.fingerprint("raw_batch", day)
    assert pipeline.store.read("raw_batch", day).shape[0] == 24

    # a schema-valid but short file for the same day: held, the accepted 24 rows stay, nothing downstream moves
    pipeline.landing.deliver(features_file_name(last.day), last.features.head(2).to_csv(index=False).encode())
    pipeline.tick()
    assert pipeline.store.fingerprint("raw_batch", day) == accepted
    assert pipeline.store.read("raw_batch", day).shape[0] == 24
    assert not pipeline.landing.exists(features_file_name(last.day))
    held = [r for r in pipeline.project.quarantine.records(day) if r.reason.startswith("held over the accepted version")]
    assert len(held) == 1
    key = pipeline.key("raw_batch")
    evaluation = pipeline.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, "raw_batch_volume_expected"), limit=1)[0].event.dagster_event.event_specific_data
    assert not evaluation.passed and "held" in evaluation.metadata["message"].value
    command = evaluation.metadata["if_genuine"].value
    fingerprint = command.split("--fingerprint ")[1].split()[0]

    # a person accepts that version; delivered again (before any tick saw it leave), it replaces the day
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLOPS_SPECS", str(SPECS / "synthetic.toml"))
    assert cli.main(["accept-volume", day, "--model", "synthetic", "--fingerprint", fingerprint, "--reason",
                     "r"]) == 1  # --rows goes with it
    capsys.readouterr()
    assert cli.main(["accept-volume", day, "--model", "synthetic", "--fingerprint", fingerprint, "--rows", "2",
                     "--reason", "the producer's partial day is all there is", "--actor", "ops"]) == 0
    assert "Deliver the held file again" in capsys.readouterr().out
    pipeline.landing.deliver(features_file_name(last.day), last.features.head(2).to_csv(index=False).encode())
    pipeline.tick()
    assert pipeline.store.read("raw_batch", day).shape[0] == 2
    assert pipeline.store.fingerprint("raw_batch", day) == fingerprint
