"""The monitoring reference and the daily performance and cost figures, on the synthetic dataset."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlops_assets.demo import synthetic
from mlops_assets.core.training import trainer as training
from mlops_assets.core.features.engineering import engineer
from mlops_assets.core.config.spec import spec_from_dict
from mlops_assets.core.monitoring.reports import (build_reference, collect_window, cost_day, judge_performance,
                                                  performance_day, profile_of)
from mlops_assets.core.monitoring.drift import drift_report


def frames(spec, scenario="stable", days=12, rows_per_day=400, seed=11, **kw):
    cfg = synthetic.ScenarioConfig(scenario, dt.date(2025, 1, 1), days, rows_per_day=rows_per_day, seed=seed, **kw)
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
    assert before.realised is None and before.label_coverage == 0 and before.judged == "estimated"
    assert after.label_coverage == 1.0 and after.judged == "realised" and after.metric == "roc_auc"
    assert after.details["realised"]["accuracy"] == pytest.approx(np.mean((scores >= 0.5) == labels))
    assert before.estimate_correction == reference.performance.estimate_bias != 0.0
    assert before.value == pytest.approx(before.estimated - reference.performance.estimate_bias)
    assert before.estimate_bias_interval.endswith("(2 blocks)")
    assert abs(before.estimated - after.realised) < 0.06
    assert before.status == after.status == "OK"
    # a model whose ranking collapses is an ERROR, reported as worse and down
    flipped = performance_day(synthetic_spec, reference, scores, 1 - labels, len(day), synthetic_spec.monitoring)
    assert flipped.status == "ERROR" and flipped.value < flipped.error_limit < flipped.warn_limit
    assert flipped.worse_by > 0 and "down" in flipped.message and "(worse)" in flipped.message


def served_stream(spec, scenario, rows_per_day, seed, onset_day=60, days=100):
    """A model trained on the first 15 small days, serving the rest: one window report per served day."""
    stream = frames(spec, scenario, days=days, rows_per_day=rows_per_day, seed=seed, onset_day=onset_day)
    train, validation = pd.concat(stream[:15]), pd.concat(stream[15:18])
    model = training.train(spec, spec.training, train, git_commit="test")
    reference = build_reference(spec, model.pipeline, train, validation, latency_ms_per_1k=1.0)
    served = {}
    for i, frame in enumerate(stream[18:], start=18):
        rows = pd.DataFrame({"score": training.predict_scores(model.pipeline, spec, frame),
                             "label": training.labels(spec, frame).astype(float)})
        served[(dt.date(2025, 1, 1) + dt.timedelta(days=i)).isoformat()] = (i, rows)
    reports = {}
    for day, (i, _) in served.items():
        window = collect_window(day, lambda d: served[d][1] if d in served else None, spec.monitoring)
        reports[i] = judge_performance(spec, reference, window, spec.monitoring)
    return reference, reports


@pytest.mark.parametrize("seed", [1, 2])
def test_a_stable_stream_of_small_days_raises_no_error(synthetic_spec, seed):
    # 40 rows a day: one day's ROC AUC has a std near 0.07, so a day on its own would alarm on noise
    _, reports = served_stream(synthetic_spec, "stable", rows_per_day=40, seed=seed)
    statuses = [r.status for r in reports.values()]
    assert len(statuses) == 82 and statuses.count("ERROR") == 0 and statuses.count("WARN") <= 4
    window = reports[60]
    assert window.window_days == 13 and window.window_rows == 520  # enough rows: 500 by default
    assert window.limits_source and window.error_limit < window.reference_level


def test_a_real_drop_is_flagged_within_a_couple_of_windows(synthetic_spec):
    reference, reports = served_stream(synthetic_spec, "concept_drift", rows_per_day=40, seed=1, onset_day=60)
    assert all(r.status != "ERROR" for i, r in reports.items() if i < 60)
    first = min(i for i, r in reports.items() if i >= 60 and r.status == "ERROR")
    assert first - 60 <= 2 * reports[first].window_days
    assert reports[first].worse_by > 0 and reports[first].value < reference.performance.center


def regression_spec(key_metric="mae"):
    return spec_from_dict({
        "dataset": {"name": "tiny_reg", "timestamp": "ts", "entity_id": "id", "target": "y", "task": "regression",
                    "start_date": "2025-01-01"},
        "features": {"x1": {"type": "numeric"}, "x2": {"type": "numeric"}},
        "training": {"estimator": "ridge", "seed": 3, "window_days": 20, "validation_days": 3, "benchmark_days": 3},
        "gates": {"key_metric": key_metric},
    })


def regression_days(days, rows, seed):
    rng = np.random.default_rng(seed)
    out = []
    for d in range(days):
        x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
        ts = pd.Timestamp("2025-01-01") + pd.Timedelta(days=d) + pd.to_timedelta(np.arange(rows) * 60, unit="s")
        out.append(pd.DataFrame({"ts": ts, "id": [f"e{d}-{i}" for i in range(rows)], "x1": x1, "x2": x2,
                                 "y": 2 * x1 - x2 + rng.normal(0, 0.5, rows)}))
    return out


@pytest.mark.parametrize("key_metric", ["mae", "rmse"])
def test_regression_error_going_up_is_reported_as_worse(key_metric):
    spec = regression_spec(key_metric)
    days = regression_days(20, 100, seed=4)
    train, validation = pd.concat(days[:14]), pd.concat(days[14:17])
    model = training.train(spec, spec.training, train, git_commit="test")
    reference = build_reference(spec, model.pipeline, train, validation, latency_ms_per_1k=1.0)
    assert reference.performance.metric == key_metric and not reference.performance.higher_is_better
    window = pd.concat([d.assign(day=d["ts"].dt.strftime("%Y-%m-%d")) for d in days[17:]])
    scores = training.predict_scores(model.pipeline, spec, window)
    rows = pd.DataFrame({"day": window["day"].to_numpy(), "score": scores, "label": window["y"].to_numpy()})
    same = judge_performance(spec, reference, rows, spec.monitoring)
    assert same.status == "OK" and same.metric == key_metric
    worse = judge_performance(spec, reference, rows.assign(score=rows["score"] + 1.0), spec.monitoring)
    # for an error metric the limits sit above the level, and a larger error is worse
    assert worse.reference_level < worse.warn_limit < worse.error_limit < worse.value
    assert worse.status == "ERROR" and worse.worse_by > 0
    assert "up" in worse.message and "(worse)" in worse.message and "down" not in worse.message
    better = judge_performance(spec, reference, rows.assign(score=rows["label"]), spec.monitoring)
    assert better.status == "OK" and better.worse_by < 0


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
