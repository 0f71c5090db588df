"""Serving and monitoring through Dagster on the synthetic dataset: ledger, shadow, canary ramp and automatic
rollback, the four reports' checks, and the retrain sensor with its cooldown."""

import datetime as dt

import dagster as dg
import pandas as pd

from conftest import SPECS
from harness import START, Location, synthetic_history
from mlops_assets.core.monitoring import reports as monitoring
from mlops_assets.core.training import trainer as training

CANARY_SPEC = """
[deployment]
canary_window_days = 1
min_rows_per_step = 10
max_latency_ratio = 50.0
max_score_shift = 0.5
"""


def day(i):
    return (START + dt.timedelta(days=i)).isoformat()


def make_location(tmp_path, scenario="stable", days=34, extra="", **kw):
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text((SPECS / "synthetic.toml").read_text() + extra)
    from mlops_assets.core.config.spec import load_spec

    history = synthetic_history(load_spec(spec_path), days, scenario=scenario, rows_per_day=300, **kw)
    loc = Location(tmp_path, spec_path, history=history)
    assert loc.train(20).success
    return loc


def monitor(loc, i):
    return loc.run_job("score_and_monitor_job", day(i))


def register_bad_model(loc, as_of_index=20):
    """A model trained on inverted labels, registered (its gates would fail) for a forced canary, with its own
    monitoring reference (its training rows and scores; validated on the next days' true labels)."""
    spec, store = loc.project.spec, loc.project.store
    frame = store.read_many("labeled_examples", [day(i) for i in range(as_of_index - 10, as_of_index)])
    frame[spec.target] = frame[spec.target].map({"0": "1", "1": "0"})
    model = training.train(spec, spec.training, frame)
    artifact = loc.registry.artifacts.save(model.pipeline, spec.name)
    validation = store.read_many("labeled_examples", [day(i) for i in range(as_of_index, as_of_index + 2)])
    reference = monitoring.build_reference(spec, model.pipeline, frame, validation, latency_ms_per_1k=1.0)
    stored_reference = loc.registry.artifacts.save_json(reference.to_dict(), spec.name)
    version = f"{spec.name}-inverted-{artifact.sha256[:8]}"
    champion = loc.registry.get(loc.registry.version_for("champion"))
    loc.registry.register(version, dataset=spec.name, task=spec.task, lineage=champion.lineage, metrics={},
                          gate_report={"passed": False, "failures": ["key_metric_vs_champion"]}, gates_passed=False,
                          artifact=artifact, run_id="test", actor="test", reference=stored_reference)
    return version


def test_scoring_writes_the_ledger_and_reports_pass_on_stable_data(tmp_path):
    loc = make_location(tmp_path)
    champion = loc.registry.version_for("champion")
    result = monitor(loc, 22)
    assert result.success
    checks = loc.checks(result)
    # exactly the monitoring checks: the loop-health SLOs run only in the loop-health job, as of its tick
    assert checks == {"data_drift_ok": True, "prediction_drift_ok": True, "performance_ok": True, "cost_ok": True}
    ledger = loc.project.ledger
    rows = ledger.day(day(22))
    assert len(rows) == 300 and set(rows["route"]) == {"champion"} and set(rows["model_version"]) == {champion}
    entity = rows["entity"].iloc[0]
    [decision] = ledger.for_entity(entity, day(22)).to_dict("records")
    assert decision["model_version"] == champion and decision["acted_on"]
    perf = loc.project.store.read_json("performance_report", day(22))
    assert perf["label_coverage"] == 1.0 and perf["realised"] is not None and perf["estimated"] is not None
    assert (perf["window_days"], perf["window_rows"]) == (1, 300)  # nothing served before day 22
    # the next day's window reaches back to day 22: 300 rows a day are fewer than performance_min_rows (500)
    result = monitor(loc, 23)
    assert result.success
    perf = loc.project.store.read_json("performance_report", day(23))
    assert (perf["window_first_day"], perf["window_days"], perf["window_rows"]) == (day(22), 2, 600)
    [check] = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
               and e.event_specific_data.check_name == "performance_ok"]
    assert check.metadata["metric"].value == "roc_auc" and check.metadata["window_rows"].value == 600
    assert check.metadata["error_at"].value == perf["error_limit"] < perf["reference_level"]


def test_shadow_scores_every_row_and_is_never_acted_on(tmp_path):
    loc = make_location(tmp_path)
    shadow = register_bad_model(loc)
    loc.registry.promote(shadow, "shadow", actor="test", reason="try it in the dark", force=True)
    assert monitor(loc, 22).success
    rows = loc.project.ledger.day(day(22))
    shadow_rows = rows[rows["model_version"] == shadow]
    assert len(shadow_rows) == 300 and not shadow_rows["acted_on"].any() and set(shadow_rows["route"]) == {"shadow"}
    acted = rows[rows["acted_on"]]
    assert len(acted) == 300 and set(acted["model_version"]) == {loc.registry.version_for("champion")}
    report = loc.project.store.read_json("shadow_report", day(22))
    assert report["shadow_versions"] == [shadow] and report["rows"] == 300 and report["labelled_rows"] == 300
    # a model trained on inverted labels disagrees with the champion and scores worse once labels land
    assert report["agreement_rate"] < 0.5 and report["score_correlation"] < 0
    assert report["metrics"]["shadow"]["roc_auc"] < 0.5 < report["metrics"]["champion"]["roc_auc"]


def test_canary_ramps_to_champion(tmp_path):
    loc = make_location(tmp_path, extra=CANARY_SPEC)
    first = loc.registry.version_for("champion")
    loc.train(27)  # a second candidate on later data
    candidate = [v.version for v in loc.registry.list_versions() if v.version != first][0]
    loc.registry.promote(candidate, "canary", actor="test", reason="ship it carefully", force=True)
    shares = []
    for i in range(28, 34):
        assert monitor(loc, i).success
        event = loc.instance.get_latest_materialization_event(loc.key("canary_step"))
        shares.append(event.asset_materialization.metadata["action"].value)
        if loc.registry.version_for("champion") == candidate:
            break
    assert loc.registry.version_for("champion") == candidate, shares
    actions = [e.action for e in loc.registry.audit_log(version=candidate)]
    assert actions.count("canary_ramp") == 3 and "canary_start" in actions
    ramps = [e.details for e in loc.registry.audit_log(version=candidate) if e.action == "canary_ramp"]
    assert [(r["from"], r["to"]) for r in ramps] == [(0.05, 0.25), (0.25, 0.5), (0.5, 1.0)]
    # each step's figures are in the audit log: estimate, interval and rows of every guardrail; score shift is
    # against the canary's own training scores; the canary scored every row of the day, acting on its share only
    for r in ramps:
        evidence = r["evidence"]
        assert evidence["verdicts"] == {"metric": "pass", "score_shift": "pass", "latency": "pass"}
        assert evidence["score_shift"]["high"] <= 0.5 and evidence["rows"] == 300
        assert evidence["metric"]["low"] <= evidence["metric"]["estimate"] <= evidence["metric"]["high"]
        assert evidence["latency_ratio"]["rows"] > 0
    metadata = loc.instance.get_latest_materialization_event(loc.key("canary_step")).asset_materialization.metadata
    assert {"metric_estimate", "metric_interval", "metric_rows", "latency_ratio_interval",
            "score_shift_interval"} <= set(metadata)
    served = loc.project.ledger.by_version(candidate)
    assert set(served.loc[served["acted_on"], "route"]) == {"canary"}
    assert set(served.loc[~served["acted_on"], "route"]) <= {"shadow"}


def test_bad_canary_is_rolled_back_automatically(tmp_path):
    loc = make_location(tmp_path, extra=CANARY_SPEC)
    champion = loc.registry.version_for("champion")
    bad = register_bad_model(loc)
    loc.registry.promote(bad, "canary", actor="test", reason="testing the guardrails", force=True)
    for i in range(22, 26):
        assert monitor(loc, i).success
    assert loc.registry.version_for("canary") is None and loc.registry.version_for("champion") == champion
    [rollback] = [e for e in loc.registry.audit_log(version=bad) if e.to_alias == "archived"]
    assert rollback.actor == "dagster:canary_step" and "rolled back" in rollback.reason
    # after the rollback every row is decided by the champion again
    assert monitor(loc, 26).success
    rows = loc.project.ledger.day(day(26))
    assert set(rows.loc[rows["acted_on"], "model_version"]) == {champion}


def test_drift_fails_the_check_and_the_retrain_sensor_respects_its_cooldown(tmp_path):
    loc = make_location(tmp_path, scenario="abrupt_shift", days=34, onset_day=25, magnitude=2.0)
    for i in (23, 25, 26, 27):
        monitor(loc, i)
    spec = loc.project.spec
    # the onset day drifts at ERROR level, but its features were quiet on the days before (24 and 23, whose
    # feature tables are in the store): a WARN that says so; the next day's drift of the same features confirms it
    onset = loc.project.store.read_json("data_drift_report", day(25))
    assert set(onset["drifted_features"]) == set(spec.numeric_features[:2])
    assert onset["day_status"] == "ERROR" and onset["status"] == "WARN" and onset["previous_day"] == day(24)
    assert "on this day only" in onset["reason"]
    drift = loc.project.store.read_json("data_drift_report", day(26))
    assert set(drift["drifted_features"]) == set(spec.numeric_features[:2]) and drift["status"] == "ERROR"
    assert drift["previous_day"] == day(25) and "the drift persists" in drift["reason"]
    assert loc.project.store.read_json("data_drift_report", day(23))["status"] == "OK"
    # the earlier days it reads are declared, so a backfill orders their feature tables before the report
    mapping = loc.defs.resolve_assets_def(loc.key("data_drift_report")).get_partition_mapping(loc.key("feature_table"))
    assert isinstance(mapping, dg.TimeWindowPartitionMapping) and mapping.start_offset == -2
    # the UI shows, per feature, the effect against its floor and where the floor came from, and why the status
    metadata = loc.instance.get_latest_materialization_event(loc.key("data_drift_report")).asset_materialization.metadata
    assert metadata["status"].value == "ERROR" and spec.numeric_features[0] in metadata["reason"].value
    assert metadata["day_status"].value == "ERROR" and metadata["compared_with_day"].value == day(26)
    rows = {r.data["feature"]: r.data for r in metadata["features"].value.records}
    assert set(rows) == set(spec.feature_names)
    for name in spec.numeric_features[:2]:
        row = rows[name]
        assert row["drifted"] and row["effect_size"] > row["floor"] > 0 and row["floor_source"] == "day_spread"
        assert row["weight"] > 0 and row["monitored"]
        assert row["effect_size"] == float(f"{row['effect_size']:.4g}")  # shown to 4 significant digits

    sensor = loc.defs.get_sensor_def(loc.named("retrain_sensor"))
    ctx = dg.build_sensor_context(instance=loc.instance, definitions=loc.defs, resources=loc.defs.resources)
    result = sensor(ctx)
    [request] = result.run_requests
    assert request.partition_key == day(26) and "data_drift_ok failed on " + day(26) in request.tags["mlops/trigger"]
    # more failing days inside the cooldown: no second retrain
    monitor(loc, 28)
    ctx = dg.build_sensor_context(instance=loc.instance, definitions=loc.defs, resources=loc.defs.resources,
                                  cursor=result.cursor)
    assert sensor(ctx).run_requests == []


def test_label_arrival_sensor_requests_realised_performance(tmp_path):
    loc = make_location(tmp_path)
    monitor(loc, 22)
    sensor = loc.defs.get_sensor_def(loc.named("label_arrival_sensor"))
    ctx = dg.build_sensor_context(instance=loc.instance, definitions=loc.defs, resources=loc.defs.resources)
    assert sensor(ctx).run_requests == []  # labels were loaded before any Dagster materialisation
    job = loc.defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(instance=loc.instance, partition_key=day(22), resources=loc.defs.resources,
                           asset_selection=[loc.key("raw_labels")], raise_on_error=False)
    loc.instance.report_runless_asset_event(dg.AssetMaterialization(loc.key("labeled_examples"), partition=day(22)))
    loc.instance.report_runless_asset_event(dg.AssetMaterialization(loc.key("labeled_examples"), partition=day(30)))
    ctx = dg.build_sensor_context(instance=loc.instance, definitions=loc.defs, resources=loc.defs.resources)
    [request] = sensor(ctx).run_requests  # day 30 was never scored
    assert request.partition_key == day(22)
    assert pd.Timestamp(day(22))
