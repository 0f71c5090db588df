"""The foundation through Dagster: landing sensor → raw batch → schema check → feature table → labels."""

import datetime as dt

import dagster as dg
import pytest

from conftest import SPECS
from mlops_assets.demo import corruptions, synthetic
from mlops_assets.core.ingestion.landing import features_file_name, labels_file_name
from mlops_assets.demo.history import deliveries

START = dt.date(2025, 1, 1)


def synthetic_batches(spec, days, **kw):
    cfg = synthetic.ScenarioConfig("stable", START, days, rows_per_day=60, seed=3, **kw)
    return list(synthetic.generate_days(spec, cfg))


def deliver_features(pipeline, spec, batch, corruption=None):
    pipeline.landing.deliver(features_file_name(batch.day), corruptions.features_file_bytes(spec, batch, corruption))


def test_elec2_days_flow_to_labeled_examples(make_pipeline, elec2_spec, elec2_history):
    pipeline = make_pipeline(SPECS / "elec2.toml")
    for delivery in deliveries(elec2_history, elec2_spec, dt.date(1996, 5, 7), dt.date(1996, 5, 9)):
        for name, content in delivery.files.items():
            pipeline.landing.deliver(name, content)
        pipeline.tick()
    assert not pipeline.log.failed_runs
    store = pipeline.store
    assert store.partitions("feature_table") == ["1996-05-07", "1996-05-08", "1996-05-09"]
    # labels land one day late: the last day has features but no labels yet
    assert store.partitions("labeled_examples") == ["1996-05-07", "1996-05-08"]
    table = store.read("labeled_examples", "1996-05-08")
    assert len(table) == 48 and set(table[elec2_spec.target].unique()) <= {"0", "1"}
    assert pipeline.check_results("raw_batch_matches_spec") == {
        "1996-05-07": True, "1996-05-08": True, "1996-05-09": True}
    mat = pipeline.instance.get_latest_materialization_event(pipeline.key("raw_batch"))
    assert mat.asset_materialization.metadata["dagster/row_count"].value == 48


def test_sensor_skips_identical_redelivery_and_reruns_corrected(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    [batch] = synthetic_batches(synthetic_spec, 1)
    deliver_features(pipeline, synthetic_spec, batch)
    assert pipeline.tick() == 1
    assert pipeline.tick() == 0  # nothing new
    deliver_features(pipeline, synthetic_spec, batch)  # the very same bytes again
    assert pipeline.tick() == 0
    changed = batch.features.copy()
    changed.iloc[0, changed.columns.get_loc(synthetic_spec.numeric_features[0])] = 0.5
    pipeline.landing.deliver(features_file_name(batch.day), changed.to_csv(index=False).encode())
    assert pipeline.tick() == 1
    keys = {r.tags["dagster/run_key"] for r in pipeline.instance.get_runs()}
    assert len(keys) == 2 and all(k.startswith("features:2025-01-01:") for k in keys)


def test_sensor_context_requests_partition_with_hash_run_key(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    [batch] = synthetic_batches(synthetic_spec, 1)
    deliver_features(pipeline, synthetic_spec, batch)
    pipeline.landing.root.joinpath("..features_2025-01-02.csv").write_text("x")
    sensor = pipeline.defs.get_sensor_def(pipeline.named("landing_sensor"))
    ctx = dg.build_sensor_context(instance=pipeline.instance, definitions=pipeline.defs,
                                  resources=pipeline.defs.resources)
    result = sensor(ctx)
    [request] = result.run_requests
    sha = [f for f in pipeline.landing.list_files()[0]][0].sha256
    assert request.partition_key == "2025-01-01" and request.run_key == f"features:2025-01-01:{sha[:16]}"
    assert {k.path[-1] for k in request.asset_selection} == {"raw_batch", "feature_table"}
    # labels arriving later request the labeled examples of *their* day, once its feature table exists
    pipeline.landing.deliver(labels_file_name(batch.day), batch.labels.to_csv(index=False).encode())
    ctx = dg.build_sensor_context(instance=pipeline.instance, definitions=pipeline.defs, cursor=result.cursor,
                                  resources=pipeline.defs.resources)
    [request] = sensor(ctx).run_requests
    assert request.run_key.startswith("labels:2025-01-01:")
    assert {k.path[-1] for k in request.asset_selection} == {"raw_labels"}  # no feature table yet
    pipeline.store.write("feature_table", "2025-01-01", batch.features)
    ctx = dg.build_sensor_context(instance=pipeline.instance, definitions=pipeline.defs,
                                  resources=pipeline.defs.resources)  # a fresh cursor sees the file anew
    [request] = [r for r in sensor(ctx).run_requests if r.run_key.startswith("labels:")]
    assert {k.path[-1] for k in request.asset_selection} == {"raw_labels", "labeled_examples"}


# Where each corruption must be caught: by the raw batch (unreadable file) or by the schema check.
UNREADABLE = {"empty_file", "header_only", "truncated_csv"}


def test_every_corrupt_case_is_quarantined_and_other_days_go_on(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    kinds = list(corruptions.CORRUPTIONS)
    batches = synthetic_batches(synthetic_spec, len(kinds) + 1)
    good = batches[-1]
    for batch, kind in zip(batches, kinds):
        deliver_features(pipeline, synthetic_spec, batch, kind)
    deliver_features(pipeline, synthetic_spec, good)
    pipeline.tick()

    assert pipeline.store.partitions("feature_table") == [good.day.isoformat()]
    checks = pipeline.check_results("raw_batch_matches_spec")
    records = {r.partition: r for r in pipeline.project.quarantine.records()}
    for batch, kind in zip(batches, kinds):
        day = batch.day.isoformat()
        record = records.get(day)
        assert record is not None, f"{kind}: not quarantined"
        assert record.file == features_file_name(batch.day) and record.reason, kind
        assert not pipeline.landing.exists(record.file), kind
        assert (pipeline.project.quarantine.root / record.stored_as).read_bytes() == corruptions.features_file_bytes(
            synthetic_spec, batch, kind), kind
        assert not pipeline.store.exists("raw_batch", day), kind
        if kind in UNREADABLE:
            assert day not in checks, kind  # failed before there was a table to check
        else:
            assert checks[day] is False, kind
            assert record.column, kind
    assert checks[good.day.isoformat()] is True
    assert len(pipeline.log.failed_runs) == len(kinds)

    # the error names file, partition, column and reason
    truncated_day = batches[kinds.index("truncated_csv")].day.isoformat()
    failure = [r for r in pipeline.instance.get_runs() if r.tags.get("mlops/file") == f"features_{truncated_day}.csv"]
    text = " ".join(
        e.dagster_event.step_failure_data.error.message
        for e in pipeline.instance.all_logs(failure[0].run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE"
    )
    assert f"features_{truncated_day}.csv" in text and truncated_day in text and "truncated" in text

    # re-delivering corrected files recovers those days
    for batch in batches[:3]:
        deliver_features(pipeline, synthetic_spec, batch)
    pipeline.tick()
    assert set(pipeline.store.partitions("feature_table")) == {b.day.isoformat() for b in batches[:3]} | {
        good.day.isoformat()}


def test_schema_check_metadata_lists_failure_cases(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    [batch] = synthetic_batches(synthetic_spec, 1)
    deliver_features(pipeline, synthetic_spec, batch, "out_of_range")
    pipeline.tick()
    key = dg.AssetCheckKey(pipeline.key("raw_batch"), "raw_batch_matches_spec")
    [record] = pipeline.instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
    evaluation = record.event.dagster_event.event_specific_data
    assert evaluation.passed is False
    failures = evaluation.metadata["failures"].value
    columns = [r.data["column"] for r in failures.records]
    assert synthetic.ground_truth(synthetic_spec, synthetic.ScenarioConfig(
        "stable", START, 1, corruptions={0: "out_of_range"})).corruptions[0].column in columns
    row = failures.records[0].data
    assert row["count"] >= 1 and row["examples"] and row["check"]
    assert "quarantined_as" in evaluation.metadata


@pytest.mark.parametrize("kind", ["labels"])
def test_bad_labels_are_quarantined(make_pipeline, synthetic_spec, kind):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    [batch] = synthetic_batches(synthetic_spec, 1)
    deliver_features(pipeline, synthetic_spec, batch)
    labels = batch.labels.copy()
    labels[synthetic_spec.target] = 7
    pipeline.landing.deliver(labels_file_name(batch.day), labels.to_csv(index=False).encode())
    pipeline.tick()
    assert pipeline.store.partitions("feature_table") == ["2025-01-01"]
    assert pipeline.store.partitions("labeled_examples") == []
    [record] = pipeline.project.quarantine.records()
    assert record.file == labels_file_name(batch.day) and synthetic_spec.target in record.reason


def test_code_location_loads_for_both_specs(tmp_path):
    from mlops_assets.core.config.settings import Settings
    from mlops_assets.defs import build_definitions

    for spec in ("elec2.toml", "synthetic.toml"):
        defs = build_definitions(Settings.for_data_dir(tmp_path, SPECS / spec))
        dg.Definitions.validate_loadable(defs)
        graph = defs.resolve_asset_graph()
        groups = {k.path[-1]: graph.get(k).group_name for k in graph.get_all_asset_keys()}
        assert groups == {
            "raw_batch": "ingestion", "raw_labels": "ingestion", "feature_table": "features",
            "labeled_examples": "features", "training_set": "training", "candidate_model": "training",
            "evaluation_report": "evaluation", "model_promotion": "deployment", "batch_scoring": "serving",
            "canary_step": "serving", "shadow_report": "serving", "data_drift_report": "monitoring",
            "prediction_drift_report": "monitoring", "performance_report": "monitoring", "cost_report": "monitoring",
        }
        checks = {k.name for k in graph.asset_check_keys}
        assert {"raw_batch_matches_spec", "raw_batch_volume_expected", "raw_labels_matches_spec",
                "candidate_model_reproducible", "gate_beats_champion", "gate_slices", "gate_no_row_overlap",
                "gate_no_target_leakage", "gate_first_model_floors"} <= checks


def test_labels_of_a_day_whose_features_were_rejected_wait_for_corrected_features(make_pipeline, synthetic_spec,
                                                                                 tmp_path):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    [batch] = synthetic_batches(synthetic_spec, 1)
    day = batch.day.isoformat()
    deliver_features(pipeline, synthetic_spec, batch, "out_of_range")
    pipeline.tick()
    labels = synthetic.write_labels(synthetic_spec, batch, tmp_path / "made")
    pipeline.landing.deliver(labels.name, labels.read_bytes())
    pipeline.tick()
    # the labels are ingested and nothing fails on the missing feature table (before: labeled_examples did)
    unexpected = [f for f in pipeline.log.failed_runs if not f.startswith("gate:")]
    assert unexpected == [] and len(pipeline.log.failed_runs) == 1  # only the rejected features file
    assert pipeline.store.partitions("raw_labels") == [day] and pipeline.store.partitions("labeled_examples") == []
    deliver_features(pipeline, synthetic_spec, batch)  # the corrected file
    pipeline.tick()
    assert pipeline.store.partitions("labeled_examples") == [day]


def test_ingestion_reports_its_progress_in_the_runs_log(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    [batch] = synthetic_batches(synthetic_spec, 1)
    deliver_features(pipeline, synthetic_spec, batch)
    assert pipeline.tick() == 1
    [run] = pipeline.instance.get_runs()
    logged = [e.user_message for e in pipeline.instance.all_logs(run.run_id) if e.user_message]
    assert any("features_2025-01-01.csv: read" in m and "MiB" in m for m in logged)
    assert any("60 rows read and typed" in m for m in logged)
    assert any("checks on 60 rows" in m and "passed" in m for m in logged)
    mat = pipeline.instance.get_latest_materialization_event(pipeline.key("raw_batch"))
    assert mat.asset_materialization.metadata["dagster/row_count"].value == 60
