"""One decision threshold: the spec's [deployment] decision_threshold decides for serving, evaluation and monitoring
alike. At 0.3 every figure that depends on decisions equals the one computed by hand at 0.3 and differs from 0.5."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core.config.spec import spec_from_dict
from mlops_assets.core.evaluation.report import evaluate
from mlops_assets.core.monitoring.reports import build_reference, performance_day
from mlops_assets.core.serving.scoring import ServingModel, ledger_labels, score_batch
from mlops_assets.core.serving.shadow import shadow_comparison
from mlops_assets.core.training.trainer import labels, predict_scores, train

THRESHOLD = 0.3


def make_spec(threshold: float | None):
    raw = {
        "dataset": {"name": "tiny", "timestamp": "ts", "entity_id": "id", "target": "y",
                    "task": "binary_classification", "start_date": "2025-01-01"},
        "features": {"x1": {"type": "numeric"}, "x2": {"type": "numeric"}},
        "training": {"estimator": "logistic_regression", "seed": 3},
        "gates": {"bootstrap_samples": 20},
    }
    if threshold is not None:
        raw["deployment"] = {"decision_threshold": threshold}
    return spec_from_dict(raw)


def rows(n: int, seed: int, day: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x1 - 0.5 * x2 - 0.8)))).astype(int)  # base rate ~0.3
    ts = pd.Timestamp(day) + pd.to_timedelta(np.arange(n) * (86_400 // n), unit="s")
    return pd.DataFrame({"ts": ts, "id": [f"c{i}" for i in range(n)], "x1": x1, "x2": x2, "y": y})


def by_hand(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    pred = (scores >= threshold).astype(int)
    tp, fp, fn = [int(((pred == a) & (y == b)).sum()) for a, b in ((1, 1), (1, 0), (0, 1))]
    return {"accuracy": float(np.mean(pred == y)), "f1": 2 * tp / (2 * tp + fp + fn)}


@pytest.fixture(scope="module")
def setup():
    specs = {THRESHOLD: make_spec(THRESHOLD), 0.5: make_spec(None)}  # 0.5: the spec default
    assert specs[0.5].deployment.decision_threshold == 0.5
    train_frame, validation, day = rows(600, 0, "2025-02-01"), rows(400, 1, "2025-02-02"), rows(500, 2, "2025-02-03")
    pipeline = train(specs[0.5], specs[0.5].training, train_frame, git_commit="test").pipeline
    scores = {"validation": predict_scores(pipeline, specs[0.5], validation),
              "day": predict_scores(pipeline, specs[0.5], day)}
    # the test means something only if enough scores fall between the two thresholds
    assert 0.1 < np.mean((scores["day"] >= THRESHOLD) & (scores["day"] < 0.5)) < 0.5
    return specs, pipeline, train_frame, validation, day, scores


def test_evaluation_decides_at_the_spec_threshold(setup):
    specs, pipeline, _, _, day, scores = setup
    y = labels(specs[0.5], day)
    metrics = {t: evaluate(spec, pipeline, None, day, make_plots=False).candidate.metrics for t, spec in specs.items()}
    for t in specs:
        expected = by_hand(y, scores["day"], t)
        assert metrics[t]["accuracy"] == pytest.approx(expected["accuracy"])
        assert metrics[t]["f1"] == pytest.approx(expected["f1"])
    assert metrics[THRESHOLD]["accuracy"] != pytest.approx(metrics[0.5]["accuracy"])
    assert metrics[THRESHOLD]["f1"] != pytest.approx(metrics[0.5]["f1"])
    assert metrics[THRESHOLD]["roc_auc"] == metrics[0.5]["roc_auc"]  # threshold-free metrics do not move


def test_monitoring_baseline_estimate_and_realised_accuracy_decide_at_the_spec_threshold(setup):
    specs, pipeline, train_frame, validation, day, scores = setup
    y_val, y_day = labels(specs[0.5], validation), labels(specs[0.5], day)
    figures = {}
    for t, spec in specs.items():
        reference = build_reference(spec, pipeline, train_frame, validation, latency_ms_per_1k=1.0)
        baseline = reference.baseline
        assert baseline["accuracy_at_threshold"] == pytest.approx(by_hand(y_val, scores["validation"], t)["accuracy"])
        assert baseline["accuracy"] == pytest.approx(baseline["accuracy_at_threshold"])
        assert baseline["f1"] == pytest.approx(by_hand(y_val, scores["validation"], t)["f1"])

        estimated = performance_day(spec, reference, scores["day"], None, len(day), spec.monitoring)
        realised = performance_day(spec, reference, scores["day"], y_day, len(day), spec.monitoring)
        p = reference.calibrator(scores["day"])
        decided = scores["day"] >= t
        estimated_accuracy = estimated.details["estimated"]["accuracy"]
        realised_accuracy = realised.details["realised"]["accuracy"]
        assert estimated_accuracy == pytest.approx(np.mean(np.where(decided, p, 1 - p)))  # expected accuracy
        assert realised_accuracy == pytest.approx(by_hand(y_day, scores["day"], t)["accuracy"])
        assert realised.details["realised"]["threshold"] == estimated.details["estimated"]["threshold"] == t
        figures[t] = (baseline["accuracy_at_threshold"], estimated_accuracy, realised_accuracy)
    for before, after in zip(figures[THRESHOLD], figures[0.5]):
        assert before != pytest.approx(after)


def test_serving_decides_at_the_spec_threshold_and_its_metrics_agree_with_monitoring(setup):
    specs, pipeline, train_frame, validation, day, scores = setup
    y_day = labels(specs[0.5], day)
    decisions = {}
    for t, spec in specs.items():
        ledger = score_batch(day, spec, ServingModel("v1", pipeline))
        np.testing.assert_array_equal(ledger["decision"], (ledger["score"] >= t).astype(float))
        assert (ledger["threshold"] == t).all()
        decisions[t] = ledger["decision"].to_numpy()
        # the ledger's decisions are the ones monitoring and evaluation count as right or wrong
        reference = build_reference(spec, pipeline, train_frame, validation, latency_ms_per_1k=1.0)
        realised = performance_day(spec, reference, ledger["score"].to_numpy(), y_day, len(day), spec.monitoring)
        realised_accuracy = realised.details["realised"]["accuracy"]
        assert realised_accuracy == pytest.approx(np.mean(decisions[t] == y_day))
        evaluated = evaluate(spec, pipeline, None, day, make_plots=False).candidate.metrics["accuracy"]
        assert evaluated == pytest.approx(realised_accuracy)
        # a shadow report on those ledger rows computes its metrics at the threshold the rows were decided by
        shadow = ledger.assign(route="shadow", model_version="v2", acted_on=False)
        report = shadow_comparison(ledger, shadow, ledger_labels(day, spec))
        assert report["metrics"]["champion"]["accuracy"] == pytest.approx(np.mean(decisions[t] == y_day))
    assert (decisions[THRESHOLD] != decisions[0.5]).any()
