"""The model lifecycle through Dagster on the synthetic dataset: first-model policy, gates that stop promotion,
forced promotion with a reason, rollback, tampered artifacts, reproducibility, and a regression task."""


import numpy as np
import pandas as pd
import pytest

from conftest import SPECS
from mlops_assets.core.training import candidate as lifecycle
from mlops_assets.core.registry.artifacts import ArtifactIntegrityError

from harness import QUIET, Location, spec_with, synthetic_history  # noqa: E402


def test_first_model_becomes_champion_with_lineage(tmp_path):
    loc = Location(tmp_path, SPECS / "synthetic.toml")
    result = loc.train(20)
    assert result.success
    checks = loc.checks(result)
    assert checks["candidate_model_reproducible"] and checks["gate_first_model_floors"] and checks["gate_no_row_overlap"]
    assert checks["gate_no_target_leakage"]
    assert loc.materialized(result) == {"training_set", "candidate_model", "evaluation_report", "model_promotion"}
    champion = loc.registry.version_for("champion")
    record = loc.registry.get(champion)
    manifest = record.lineage["manifest"]
    assert manifest["as_of"] == "2025-01-21" and len(manifest["data_versions"]) == 21
    assert manifest["splits"]["benchmark"] == ["2025-01-19", "2025-01-20", "2025-01-21"]
    assert record.lineage["seed"] == 7 and record.lineage["estimator"] == "logistic_regression"
    assert {"sklearn", "pandas", "numpy"} <= set(record.lineage["library_versions"])
    assert record.gates_passed and record.run_id == result.run_id
    [promotion] = [e for e in loc.registry.audit_log(version=champion) if e.to_alias == "champion"]
    assert promotion.actor == "policy:first-model"


def test_failed_gate_stops_promotion_and_force_needs_a_reason(tmp_path):
    spec_path = spec_with(tmp_path, "floors = { roc_auc = 0.7 }", "floors = { roc_auc = 0.999 }")
    loc = Location(tmp_path, spec_path)
    result = loc.train(20)
    assert not result.success
    assert loc.checks(result)["gate_first_model_floors"] is False
    assert "model_promotion" not in loc.materialized(result)
    assert loc.registry.version_for("champion") is None
    [version] = [v.version for v in loc.registry.list_versions()]
    assert loc.registry.get(version).gates_passed is False
    evaluation = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                  and e.event_specific_data.check_name == "gate_first_model_floors"][0].event_specific_data
    assert "0.999" in evaluation.metadata["message"].value and evaluation.metadata["margin"].value < 0

    refused = loc.run_job("promote_model", run_config={"ops": {loc.named("promote_version"): {"config": {
        "version": version, "to": "champion"}}}})
    assert not refused.success and loc.registry.version_for("champion") is None
    forced = loc.run_job("promote_model", run_config={"ops": {loc.named("promote_version"): {"config": {
        "version": version, "to": "champion", "force": True, "reason": "incident 42: ship the fix",
        "actor": "alice"}}}})
    assert forced.success and loc.registry.version_for("champion") == version
    entry = [e for e in loc.registry.audit_log(version=version) if e.to_alias == "champion"][0]
    assert entry.forced and entry.reason == "incident 42: ship the fix" and entry.actor == "alice"


@pytest.mark.parametrize("auto_canary", [True, False])
def test_a_passing_candidate_starts_as_canary_only_when_the_deployment_policy_says_auto_canary(tmp_path, auto_canary):
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text((SPECS / "synthetic.toml").read_text() + f"\n[deployment]\nauto_canary = {str(auto_canary).lower()}\n")
    loc = Location(tmp_path, spec_path)
    assert loc.project.spec.deployment.auto_canary is auto_canary
    assert loc.train(20).success
    champion = loc.registry.version_for("champion")
    assert loc.train(27).success  # this candidate passes its gates against the first (seeded data: always)
    [second] = [v.version for v in loc.registry.list_versions() if v.version != champion]
    assert loc.registry.version_for("champion") == champion
    if auto_canary:
        assert loc.registry.version_for("canary") == second
        [start] = [e for e in loc.registry.audit_log(version=second) if e.to_alias == "canary"]
        assert start.actor == "policy:auto-canary"
    else:
        assert loc.registry.version_for("canary") is None and loc.registry.aliases_of(second) == ["candidate"]


def test_rollback_job_restores_previous_champion_checksum(tmp_path):
    loc = Location(tmp_path, SPECS / "synthetic.toml")
    assert loc.train(20).success
    first = loc.registry.version_for("champion")
    first_sha = loc.registry.get(first).artifact.sha256
    loc.train(27)  # may or may not beat the champion; it is registered either way
    second = [v.version for v in loc.registry.list_versions() if v.version != first][0]
    loc.run_job("promote_model", run_config={"ops": {loc.named("promote_version"): {"config": {
        "version": second, "to": "champion", "force": True, "reason": "test"}}}})
    assert loc.registry.version_for("champion") == second
    result = loc.run_job("rollback_model", run_config={"ops": {loc.named("rollback_champion"): {"config": {
        "reason": "canary breach"}}}})
    assert result.success
    restored = loc.registry.version_for("champion")
    assert restored == first and loc.registry.get(restored).artifact.sha256 == first_sha
    assert "archived" in loc.registry.aliases_of(second)


def test_tampered_candidate_is_not_loaded(tmp_path):
    loc = Location(tmp_path, SPECS / "synthetic.toml")
    day = "2025-01-21"
    result = loc.defs.resolve_job_def(loc.named("train_candidate_job")).execute_in_process(
        instance=loc.instance, partition_key=day, run_config=QUIET, resources=loc.defs.resources,
        asset_selection=[loc.key("training_set"), loc.key("candidate_model")])
    assert result.success
    record = lifecycle.CandidateRecord.from_dict(loc.project.store.read_json("candidate_model", day))
    path = loc.registry.artifacts.resolve(record.artifact.path)
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(ArtifactIntegrityError, match=record.artifact.sha256):
        lifecycle.load_candidate(loc.registry.artifacts, record)
    evaluation = loc.defs.resolve_job_def(loc.named("train_candidate_job")).execute_in_process(
        instance=loc.instance, partition_key=day, run_config=QUIET, resources=loc.defs.resources,
        asset_selection=[loc.key("evaluation_report")], raise_on_error=False)
    assert not evaluation.success and loc.registry.list_versions() == []


def test_changed_training_data_is_named_when_reproducing(tmp_path):
    loc = Location(tmp_path, SPECS / "synthetic.toml")
    assert loc.train(20).success
    record = lifecycle.CandidateRecord.from_dict(loc.project.store.read_json("candidate_model", "2025-01-21"))
    store, spec = loc.project.store, loc.project.spec
    frame = store.read("labeled_examples", "2025-01-03")
    frame.loc[0, spec.numeric_features[0]] += 1.0
    store.write("labeled_examples", "2025-01-03", frame)
    pipeline = lifecycle.load_candidate(loc.registry.artifacts, record)
    with pytest.raises(ValueError, match="labeled_examples partition 2025-01-03 changed"):
        lifecycle.check_reproducible(store, spec, record, pipeline)


def test_regression_task_end_to_end(tmp_path):
    text = (SPECS / "synthetic.toml").read_text()
    text = text.replace('task = "binary_classification"', 'task = "regression"').replace(
        'target = "churned"', 'target = "monthly_value"').replace(
        'estimator = "logistic_regression"', 'estimator = "ridge"').replace(
        'key_metric = "roc_auc"\nfloors = { roc_auc = 0.7 }', 'key_metric = "rmse"\nfloors = { rmse = 1.0, r2 = 0.5 }')
    spec_path = tmp_path / "regression.toml"
    spec_path.write_text(text)
    from mlops_assets.core.config.spec import load_spec

    spec = load_spec(spec_path)
    base = synthetic_history(load_spec(SPECS / "synthetic.toml"), 30)
    rng = np.random.default_rng(0)
    history = {}
    for day, frame in base.items():
        frame = frame.drop(columns=["churned"]) if "churned" in frame else frame
        x = frame[spec.numeric_features].astype(float)
        frame[spec.target] = 2.0 * x.iloc[:, 0] - x.iloc[:, 1] + rng.normal(0, 0.3, len(frame))
        history[day] = frame
    loc = Location(tmp_path, spec_path, history=history)
    result = loc.train(20)
    assert result.success, loc.checks(result)
    champion = loc.registry.get(loc.registry.version_for("champion"))
    metrics = champion.metrics["candidate"]["metrics"]
    assert metrics["rmse"] < 0.5 and metrics["r2"] > 0.9
    assert "gate_calibration" not in {k for k, v in loc.checks(result).items() if v is False}
    assert pd.api.types.is_float_dtype(loc.project.store.read("labeled_examples", "2025-01-05")[spec.target])
