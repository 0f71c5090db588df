"""The typed monitoring reference: fitted once per model version, round-tripped through JSON with a format
version, stored beside the model's artifact and recorded with the version in the registry (DuckDB and, when
reachable, PostgreSQL), checked against its checksum before it is parsed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core.monitoring.performance_reference import CALIBRATION_MIN_ROWS
from mlops_assets.core.monitoring.reference import FORMAT_VERSION, CostBaseline, MonitoringReference
from mlops_assets.core.monitoring.reports import build_reference, cost_day, performance_day
from mlops_assets.core.registry import model_registry
from mlops_assets.core.registry.artifacts import ArtifactError, ArtifactIntegrityError, ArtifactStore
from mlops_assets.core.registry.database import backend_for
from mlops_assets.core.registry.model_registry import ModelRegistry, RegistryError
from mlops_assets.core.training import trainer as training

from test_monitoring_core import frames
from test_registry import registry_url  # noqa: F401 - the DuckDB / PostgreSQL fixture

@pytest.fixture(scope="module")
def fitted(synthetic_spec):
    days = frames(synthetic_spec, days=11)
    train, validation = pd.concat(days[:8]), pd.concat(days[8:10])
    model = training.train(synthetic_spec, synthetic_spec.training, train)
    reference = build_reference(synthetic_spec, model.pipeline, train, validation, latency_ms_per_1k=12.5)
    return model, reference, days[10]


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def registry(registry_url, store):  # noqa: F811
    return ModelRegistry(registry_url, store)


def register(registry, version, model, reference=None, **kw):
    artifact = registry.artifacts.save(model, "synthetic")
    stored = registry.artifacts.save_json(reference.to_dict(), "synthetic") if reference is not None else None
    return registry.register(
        version, dataset="synthetic", task="binary_classification", lineage={"seed": 7}, metrics={},
        gate_report={"passed": True, "failures": []}, gates_passed=True, artifact=artifact, run_id="run",
        actor="test", reference=stored, **kw)


# ------------------------------------------------------------------------------------------ the object


def test_fit_gives_typed_fields(synthetic_spec, fitted):
    _, reference, _ = fitted
    assert isinstance(reference, MonitoringReference)
    assert reference.cost == CostBaseline(12.5, reference.cost.artifact_bytes) and reference.cost.artifact_bytes > 0
    assert reference.calibrator is not None and reference.calibrator.method == "isotonic"
    assert {"roc_auc", "accuracy", "accuracy_at_threshold"} <= set(reference.baseline)
    assert all(isinstance(v, float) for v in reference.baseline.values())
    assert reference.profile.prediction is not None and reference.profile.n_rows > 0
    unmonitored = {f.name for f in synthetic_spec.features if not f.monitor}
    assert set(reference.unmonitored) == unmonitored
    assert all(reference.profile.weights[name] == 0 for name in unmonitored)
    assert np.isnan(reference.baseline_metric("no_such_metric"))


def test_round_trip_through_json_keeps_every_number(synthetic_spec, fitted):
    model, reference, day = fitted
    raw = reference.to_dict()
    assert raw["format_version"] == FORMAT_VERSION
    again = MonitoringReference.from_dict(json.loads(json.dumps(raw)))
    assert again.to_dict() == raw
    assert again.calibrator == reference.calibrator and again.cost == reference.cost
    assert again.baseline == reference.baseline and again.unmonitored == reference.unmonitored
    # the drift floors measured when the version was fitted come back as they were, not re-derived
    assert again.profile == reference.profile and all(p.spread for p in again.profile.features if p.count)
    # the reports give the same figures from the stored reference as from the fitted one
    scores = training.predict_scores(model.pipeline, synthetic_spec, day)
    labels = training.labels(synthetic_spec, day)
    for given in (None, labels):
        before = performance_day(synthetic_spec, reference, scores, given, len(day), synthetic_spec.monitoring)
        after = performance_day(synthetic_spec, again, scores, given, len(day), synthetic_spec.monitoring)
        assert after.to_dict() == before.to_dict()
    stats = {"rows": 1000, "cpu_seconds": 0.01, "wall_seconds": 0.02}
    policy = synthetic_spec.monitoring
    assert cost_day(again, stats, [], 1, 0.1, policy) == cost_day(reference, stats, [], 1, 0.1, policy)


def test_a_spec_with_calendar_features_gets_a_reference_weighing_its_own_features(synthetic_spec):
    """The pipeline of such a spec needs the derived calendar columns: permuting only the spec's features
    once failed for lack of them."""
    from dataclasses import replace

    from mlops_assets.core.features.engineering import engineer

    spec = replace(synthetic_spec, calendar_features=True)
    days = [engineer(d, spec).assign(**{spec.target: d[spec.target].to_numpy()}) for d in frames(spec, days=6)]
    train, validation = pd.concat(days[:4]), pd.concat(days[4:])
    model = training.train(spec, spec.training, train)
    reference = build_reference(spec, model.pipeline, train, validation, latency_ms_per_1k=1.0)
    assert set(reference.profile.weights) == set(spec.feature_names)


def test_another_format_version_is_refused(fitted):
    raw = fitted[1].to_dict()
    assert FORMAT_VERSION == 2
    with pytest.raises(ValueError, match=r"monitoring reference format 99, expected one of \(1, 2\)"):
        MonitoringReference.from_dict({**raw, "format_version": 99})
    legacy = {k: v for k, v in raw.items() if k != "format_version"}  # e.g. the old untyped dict
    with pytest.raises(ValueError, match="monitoring reference format None"):
        MonitoringReference.from_dict(legacy)


def test_a_format_1_reference_is_judged_by_the_sampling_interval_around_its_validation_baseline(synthetic_spec,
                                                                                               fitted):
    model, reference, day = fitted
    raw = {k: v for k, v in reference.to_dict().items() if k != "performance"}
    old = MonitoringReference.from_dict({**raw, "format_version": 1})
    assert old.performance is None and old.profile.to_dict() == reference.profile.to_dict()
    scores = training.predict_scores(model.pipeline, synthetic_spec, day)
    labels = training.labels(synthetic_spec, day)
    fine = performance_day(synthetic_spec, old, scores, labels, len(day), synthetic_spec.monitoring)
    assert "format-1 reference" in fine.limits_source and "sampling interval" in fine.limits_source
    assert fine.reference_level == reference.baseline["roc_auc"] and fine.status == "OK"
    collapsed = performance_day(synthetic_spec, old, scores, 1 - labels, len(day), synthetic_spec.monitoring)
    assert collapsed.status == "ERROR" and collapsed.estimate_bias is None
    estimated = performance_day(synthetic_spec, old, scores, None, len(day), synthetic_spec.monitoring)
    assert estimated.judged == "estimated" and estimated.value == estimated.estimated


def test_the_calibrator_learns_from_out_of_fold_training_days_when_validation_is_short(synthetic_spec, fitted):
    _, reference, _ = fitted
    performance = reference.performance
    validation_rows = 2 * 400  # two validation days of 400 rows: too few to calibrate on alone
    assert validation_rows < CALIBRATION_MIN_ROWS
    assert performance.reference_source == "validation + out-of-fold training days"
    assert performance.reference_rows == performance.calibration_rows == 10 * 400
    # recalibrated on the version's own validation rows, and its bias measured on those rows alone
    assert performance.recalibrated_on_rows == performance.bias_rows == validation_rows
    assert performance.bias_blocks == 2 and np.isfinite(performance.estimate_bias)
    # chunks are whole days reaching performance_min_rows (500), as a monitoring window: two 400-row days each
    assert performance.n_chunks == 5 and performance.chunk_rows == 800


def test_without_a_calibrator_there_is_no_label_free_estimate(synthetic_spec, fitted):
    model, reference, day = fitted
    bare = MonitoringReference.from_dict({**reference.to_dict(), "calibrator": None})
    assert bare.calibrator is None and bare.to_dict()["calibrator"] is None
    scores = training.predict_scores(model.pipeline, synthetic_spec, day)
    perf = performance_day(synthetic_spec, bare, scores, None, len(day), synthetic_spec.monitoring)
    assert perf.estimated is None and perf.judged is None and perf.status == "OK"
    assert perf.baseline == reference.baseline["roc_auc"]


# ------------------------------------------------------------------------------------- artifact store


def test_json_documents_are_content_addressed_beside_the_pickles(store):
    model = store.save({"weights": [1, 2]}, "synthetic")
    first = store.save_json({"b": 1, "a": [1.5, None]}, "synthetic")
    again = store.save_json({"a": [1.5, None], "b": 1}, "synthetic")
    assert first == again and first.path == f"synthetic/{first.sha256}.json"
    assert store.resolve(first.path).parent == store.resolve(model.path).parent
    assert store.load_json(first.path, first.sha256) == {"a": [1.5, None], "b": 1}
    assert not [p for p in store.resolve(first.path).parent.iterdir() if p.name.startswith(".tmp-")]


def test_a_tampered_json_document_is_not_parsed(store):
    stored = store.save_json({"a": 1}, "synthetic")
    store.resolve(stored.path).write_text("{not json at all")
    with pytest.raises(ArtifactIntegrityError, match=stored.sha256):
        store.load_json(stored.path, stored.sha256)
    with pytest.raises(ArtifactError, match="not found"):
        store.load_json("synthetic/missing.json", stored.sha256)


# --------------------------------------------------------------------------------------------- registry


def test_the_registry_records_and_loads_each_versions_reference(registry, fitted):
    model, reference, _ = fitted
    record = register(registry, "v1", model.pipeline, reference)
    assert record.reference is not None and record.reference.path.endswith(".json")
    assert registry.get("v1").reference == record.reference
    assert registry.list_versions()[0].reference == record.reference
    assert registry.artifacts.resolve(record.reference.path).parent == registry.artifacts.resolve(
        record.artifact.path).parent
    assert registry.load_reference("v1").to_dict() == reference.to_dict()
    [entry] = registry.audit_log(version="v1")
    assert entry.details["reference_sha256"] == record.reference.sha256


def test_a_tampered_reference_is_refused_naming_the_version(registry, fitted):
    model, reference, _ = fitted
    record = register(registry, "v1", model.pipeline, reference)
    path = registry.artifacts.resolve(record.reference.path)
    raw = json.loads(path.read_text())
    raw["baseline"]["accuracy_at_threshold"] = 0.99  # a "better" baseline: still valid JSON
    path.write_text(json.dumps(raw))
    with pytest.raises(ArtifactIntegrityError, match=f"monitoring reference of v1: .*{record.reference.sha256}"):
        registry.load_reference("v1")
    path.unlink()
    with pytest.raises(RegistryError, match="monitoring reference of v1: .*not found"):
        registry.load_reference("v1")


def test_registering_a_tampered_or_foreign_reference_is_refused(registry, fitted):
    model, reference, _ = fitted
    artifact = registry.artifacts.save(model.pipeline, "synthetic")
    stored = registry.artifacts.save_json(reference.to_dict(), "synthetic")
    registry.artifacts.resolve(stored.path).write_text("{}")
    kw = dict(dataset="synthetic", task="binary_classification", lineage={}, metrics={}, gate_report={},
              gates_passed=True, artifact=artifact, run_id="run", actor="test")
    with pytest.raises(ArtifactIntegrityError, match="cannot register v1"):
        registry.register("v1", reference=stored, **kw)
    foreign = registry.artifacts.save_json({"profile": {}, "format_version": 0}, "synthetic")
    with pytest.raises(RegistryError, match="cannot register v1: .*not a monitoring reference"):
        registry.register("v1", reference=foreign, **kw)
    assert registry.list_versions() == []


def test_a_version_without_a_reference_says_so(registry, fitted):
    register(registry, "v1", fitted[0].pipeline)
    assert registry.get("v1").reference is None
    with pytest.raises(RegistryError, match="model version v1 has no monitoring reference"):
        registry.load_reference("v1")
    with pytest.raises(RegistryError, match="unknown model version 'v2'"):
        registry.load_reference("v2")


def test_two_versions_keep_their_own_references(registry, fitted):
    model, reference, _ = fitted
    other = MonitoringReference.from_dict({**reference.to_dict(), "baseline": {"accuracy_at_threshold": 0.5}})
    register(registry, "v1", model.pipeline, reference)
    register(registry, "v2", {"another": "model"}, other)
    assert registry.load_reference("v1").baseline == reference.baseline
    assert registry.load_reference("v2").baseline == {"accuracy_at_threshold": 0.5}


def test_reregistering_keeps_the_recorded_reference(registry, fitted):
    model, reference, _ = fitted
    first = register(registry, "v1", model.pipeline, reference)
    relatency = MonitoringReference.from_dict({**reference.to_dict(), "cost": {"latency_ms_per_1k": 99.0,
                                                                                "artifact_bytes": 1}})
    again = register(registry, "v1", model.pipeline, relatency)  # same model retrained: latency differs
    assert again.reference == first.reference and registry.load_reference("v1").cost.latency_ms_per_1k == 12.5


def test_an_existing_database_gets_the_reference_columns(registry_url, store, fitted):  # noqa: F811
    """A registry created before references were recorded: opening it adds nullable columns; old versions
    read as having no reference until registered again with one."""
    model, reference, _ = fitted
    artifact = store.save(model.pipeline, "synthetic")
    with backend_for(registry_url).transaction(write=True) as tx:
        for statement in model_registry.DDL:  # the original tables, without the reference columns
            tx.rows(statement)
        tx.rows("INSERT INTO {s}.model_versions (seq, version, dataset, task, created_at, registered_by, run_id, "
                "artifact_path, artifact_sha256, artifact_bytes, key_metric, lineage, metrics, gate_report, "
                "gates_passed) VALUES (1, 'old', 'synthetic', 'binary_classification', '2025-01-01', 'x', 'r', "
                "?, ?, ?, '', '{}', '{}', '{}', TRUE)", [artifact.path, artifact.sha256, artifact.size_bytes])
    registry = ModelRegistry(registry_url, store)
    ModelRegistry(registry_url, store)  # opening it again changes nothing
    assert registry.get("old").reference is None
    with pytest.raises(RegistryError, match="model version old has no monitoring reference"):
        registry.load_reference("old")
    stored = store.save_json(reference.to_dict(), "synthetic")
    registry.register("old", dataset="synthetic", task="binary_classification", lineage={}, metrics={},
                      gate_report={}, gates_passed=True, artifact=artifact, run_id="r2", actor="backfill",
                      reference=stored)
    assert registry.get("old").reference == stored
    assert registry.load_reference("old").to_dict() == reference.to_dict()
    assert [e.action for e in registry.audit_log(version="old")] == ["attach_reference"]
