"""The monitoring reference and the daily performance and cost figures, on the synthetic dataset."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlops_assets.demo import synthetic
from mlops_assets.core.training import trainer as training
from mlops_assets.core.features.engineering import engineer
from mlops_assets.core.monitoring.reports import build_reference, cost_day, performance_day, profile_of
from mlops_assets.core.monitoring.drift import drift_report


def frames(spec, scenario="stable", days=12, **kw):
    cfg = synthetic.ScenarioConfig(scenario, dt.date(2025, 1, 1), days, rows_per_day=400, seed=11, **kw)
    out = []
    for b in synthetic.generate_days(spec, cfg):
        table = engineer(b.features, spec)
        labels = b.labels.assign(**{spec.target: b.labels[spec.target].astype(str)})
        labels[spec.timestamp] = pd.to_datetime(labels[spec.timestamp])
        out.append(table.merge(labels, on=spec.key_columns))
    return out


@pytest.fixture(scope="module")
def fitted(synthetic_spec):
    days = frames(synthetic_spec)
    train, validation = pd.concat(days[:8]), pd.concat(days[8:10])
    model = training.train(synthetic_spec, synthetic_spec.training, train)
    reference = build_reference(synthetic_spec, model.pipeline, train, validation, latency_ms_per_1k=10.0)
    return model, reference, days


def test_reference_weights_follow_importance_and_skip_unmonitored(synthetic_spec, fitted):
    _, reference, _ = fitted
    weights = profile_of(reference).weights
    assert abs(sum(weights.values()) - 1) < 1e-9
    assert max(weights, key=weights.get) in synthetic_spec.feature_names
    assert 0.5 < reference.baseline["accuracy_at_threshold"] < 1 and reference.calibrator is not None


def test_drift_report_from_reference_flags_the_shifted_feature(synthetic_spec, fitted):
    _, reference, _ = fitted
    shifted = frames(synthetic_spec, "abrupt_shift", days=3, onset_day=1)[2]
    report = drift_report(profile_of(reference), shifted, synthetic_spec.monitoring)
    assert set(report.drifted_features) == set(synthetic_spec.numeric_features[:2])
    stable = drift_report(profile_of(reference), fitted[2][11], synthetic_spec.monitoring)
    assert stable.drifted_features == [] and stable.status == "OK"


def test_performance_estimate_then_realised(synthetic_spec, fitted):
    model, reference, days = fitted
    day = days[11]
    scores = training.predict_scores(model.pipeline, synthetic_spec, day)
    labels = training.labels(synthetic_spec, day)
    before = performance_day(synthetic_spec, reference, scores, None, len(day), synthetic_spec.monitoring)
    after = performance_day(synthetic_spec, reference, scores, labels, len(day), synthetic_spec.monitoring)
    assert before.realised is None and before.label_coverage == 0 and before.estimated is not None
    assert after.label_coverage == 1.0 and after.realised == pytest.approx(np.mean((scores >= 0.5) == labels))
    assert abs(before.estimated - after.realised) < 0.06
    assert before.status == "OK"
    # a model whose realised accuracy collapses is an ERROR
    flipped = performance_day(synthetic_spec, reference, scores, 1 - labels, len(day), synthetic_spec.monitoring)
    assert flipped.status == "ERROR" and flipped.drop > synthetic_spec.monitoring.error_performance_drop


def test_cost_status_is_relative_to_the_champions_first_days(synthetic_spec, fitted):
    _, reference, _ = fitted
    policy = synthetic_spec.monitoring
    first = [{"rows": 1000, "cpu_seconds": 0.01, "wall_seconds": w} for w in (0.010, 0.012, 0.011)]
    fresh = cost_day(reference, first[0], [], 1, 0.2, policy)
    assert fresh["status"] == "OK" and fresh["baseline_days"] == 0
    ok = cost_day(reference, {"rows": 500, "cpu_seconds": 0.005, "wall_seconds": 0.0066}, first, 2, 0.5, policy)
    assert ok["status"] == "OK" and ok["wall_ratio_to_baseline"] == pytest.approx(1.2)
    slow = cost_day(reference, {"rows": 1000, "cpu_seconds": 0.1, "wall_seconds": 0.11}, first, 2, 0.5, policy)
    assert slow["status"] == "ERROR" and slow["wall_ratio_to_baseline"] == pytest.approx(10)
    assert slow["retrains_to_date"] == 2 and slow["model_bytes"] == reference.cost.artifact_bytes
