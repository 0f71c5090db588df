"""Each model version is monitored against its own reference, through Dagster: two versions trained as of the
same day (the second with another regularisation, as a person retraining a partition with a changed spec
would) keep their own references, and monitoring a day served by one of them uses that one's reference."""

import datetime as dt


from conftest import SPECS
from harness import START, CodeLocation, Location, spec_with, synthetic_history
from mlops_assets.core.config.spec import load_spec
from mlops_assets.core.monitoring import reports as monitoring
from mlops_assets.core.monitoring.drift import prediction_drift
from mlops_assets.core.training import candidate as lifecycle, trainer as training

AS_OF = 20  # both versions are trained as of START + 20 days
SERVED = 22


def day(i):
    return (START + dt.timedelta(days=i)).isoformat()


def on_the_same_data(loc: Location, spec_path) -> CodeLocation:
    """A second code location on `loc`'s data folder (same warehouse, registry and artifacts), another spec."""
    other = CodeLocation(loc.settings.data_dir.parent, spec_path)
    assert other.model == loc.model
    return other


def refit(loc: Location, version: str):
    """The reference a version's own pipeline gives on its own training manifest (latency aside)."""
    record = loc.registry.get(version)
    manifest = training.Lineage.from_dict(record.lineage).manifest
    fresh = lifecycle.monitoring_reference(loc.project.store, loc.project.spec, manifest,
                                           loc.registry.load_model(version)).to_dict()
    return {k: v for k, v in fresh.items() if k != "cost"}


def without_cost(reference):
    return {k: v for k, v in reference.to_dict().items() if k != "cost"}


def test_two_versions_of_the_same_day_are_monitored_against_their_own_references(tmp_path):
    history = synthetic_history(load_spec(SPECS / "synthetic.toml"), 30, rows_per_day=300)
    loc_a = Location(tmp_path, SPECS / "synthetic.toml", history=history)
    assert loc_a.train(AS_OF).success
    registry = loc_a.registry
    version_a = registry.version_for("champion")
    reference_a = registry.load_reference(version_a).to_dict()

    loc_b = on_the_same_data(loc_a, spec_with(tmp_path, "seed = 7", "seed = 7\nparams = { C = 0.02 }"))
    loc_b.train(AS_OF)  # registered whatever its gates say; the champion stays (no auto-canary)
    [version_b] = [v.version for v in registry.list_versions() if v.version != version_a]
    a, b = registry.get(version_a), registry.get(version_b)
    assert a.lineage["manifest"]["as_of"] == b.lineage["manifest"]["as_of"] == day(AS_OF)
    assert b.lineage["params"] == {"C": 0.02} and registry.version_for("champion") == version_a

    # one reference per version, beside its artifact, under its own checksum; no per-day document any more
    assert a.reference.sha256 != b.reference.sha256
    for record in (a, b):
        path = registry.artifacts.resolve(record.reference.path)
        assert path.parent == registry.artifacts.resolve(record.artifact.path).parent
    assert loc_a.project.store.documents("model_reference") == []
    candidate = lifecycle.CandidateRecord.from_dict(loc_b.project.store.read_json("candidate_model", day(AS_OF)))
    assert candidate.version == version_b and candidate.reference == b.reference

    # training B as of the same day left A's reference alone, and each is its own pipeline's
    ref_a, ref_b = registry.load_reference(version_a), registry.load_reference(version_b)
    assert ref_a.to_dict() == reference_a
    assert without_cost(ref_a) == refit(loc_a, version_a)
    assert without_cost(ref_b) == refit(loc_b, version_b)
    assert ref_a.profile.prediction.to_dict() != ref_b.profile.prediction.to_dict()
    assert ref_a.baseline != ref_b.baseline and ref_a.calibrator != ref_b.calibrator
    reference_b = ref_b.to_dict()

    # a day served by A is monitored against A's reference
    assert loc_a.run_job("score_and_monitor_job", day(SERVED)).success
    rows = loc_a.project.ledger.day(day(SERVED))
    assert set(rows["model_version"]) == {version_a}
    scores = rows["score"].to_numpy(float)
    spec, store = loc_a.project.spec, loc_a.project.store
    drift = store.read_json("prediction_drift_report", day(SERVED))
    by_a = prediction_drift(ref_a.profile, scores, spec.monitoring)
    by_b = prediction_drift(ref_b.profile, scores, spec.monitoring)
    assert drift["model_version"] == version_a and by_a.statistic != by_b.statistic
    assert drift["statistic"] == by_a.statistic and drift["p_value"] == by_a.p_value
    performance = store.read_json("performance_report", day(SERVED))
    assert performance["model_version"] == version_a
    assert performance["baseline"] == ref_a.baseline[performance["metric"]]
    assert performance["reference_level"] == ref_a.performance.center != ref_b.performance.center
    estimated_a = monitoring.performance_day(spec, ref_a, scores, None, len(scores), spec.monitoring).estimated
    estimated_b = monitoring.performance_day(spec, ref_b, scores, None, len(scores), spec.monitoring).estimated
    assert performance["estimated"] == estimated_a != estimated_b
    cost = store.read_json("cost_report", day(SERVED))
    assert cost["model_bytes"] == ref_a.cost.artifact_bytes
    assert cost["benchmark_latency_ms_per_1k"] == ref_a.cost.latency_ms_per_1k

    # ... and B's reference is unchanged
    assert registry.get(version_b).reference == b.reference
    assert registry.load_reference(version_b).to_dict() == reference_b
