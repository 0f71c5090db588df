import json
import math
import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from mlops_assets.core.evaluation import report as ev
from mlops_assets.core.training import trainer as training
from mlops_assets.core.config.spec import GatePolicy, TrainingPolicy, spec_from_dict


def small_spec(task="binary_classification"):
    return spec_from_dict({
        "dataset": {"name": "tiny", "timestamp": "ts", "entity_id": "id", "target": "y", "task": task,
                    "start_date": "2025-01-01", "slices": ["seg"]},
        "features": {"x1": {"type": "numeric"}, "x2": {"type": "numeric"},
                     "seg": {"type": "categorical", "categories": ["a", "b"]}},
        "training": {"estimator": "logistic_regression" if task != "regression" else "ridge", "seed": 3},
        "gates": {"bootstrap_samples": 60},
    })


def labeled(spec, rows, seed):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    seg = rng.choice(["a", "b"], size=rows)
    signal = 2 * x1 - x2
    y = (rng.random(rows) < 1 / (1 + np.exp(-signal))).astype(int) if spec.is_classification \
        else 3.0 * signal + rng.normal(scale=0.5, size=rows)
    return pd.DataFrame({"ts": pd.date_range("2025-02-01", periods=rows, freq="min"),
                         "id": [f"c{i}" for i in range(rows)], "x1": x1, "x2": x2, "seg": seg, "y": y})


# ------------------------------------------------------------------------------------------ metrics


def test_classification_metrics_match_hand_computed_values():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.6, 0.4, 0.8])
    m = ev.classification_metrics(y, s, threshold=0.5)
    assert m["roc_auc"] == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ordered correctly
    assert m["accuracy"] == pytest.approx(0.5)  # predictions 0,1,0,1
    assert m["f1"] == pytest.approx(0.5)  # tp=1, fp=1, fn=1
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.04) / 4)
    assert m["log_loss"] == pytest.approx(-(np.log(0.9) + np.log(0.4) + np.log(0.4) + np.log(0.8)) / 4)
    assert m["ece"] == pytest.approx((0.1 + 0.6 + 0.6 + 0.2) / 4)  # each score alone in its bin
    # 10 equal-width bins: 0.12 and 0.18 share [0.1, 0.2); 0.21 and 0.31 do not
    assert ev.expected_calibration_error(np.array([0, 1]), np.array([0.12, 0.18])) == pytest.approx(0.35)
    assert ev.expected_calibration_error(np.array([0, 1]), np.array([0.21, 0.31])) == pytest.approx(0.45)
    # equal-mass bins: two rows each, whereas two equal-width bins would put all four in [0, 0.5)
    y4, s4 = np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])
    assert ev.expected_calibration_error(y4, s4, n_bins=2, strategy="quantile") == pytest.approx(0.4)
    assert ev.expected_calibration_error(y4, s4, n_bins=2, strategy="uniform") == pytest.approx(0.25)
    assert ev.roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5  # ties count half


def test_classification_metrics_agree_with_scikit_learn_on_random_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 2)  # rounded, so there are ties
    m = ev.classification_metrics(y, s, threshold=0.5)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["log_loss"] == pytest.approx(log_loss(y, np.clip(s, 1e-15, 1 - 1e-15)))
    assert m["brier"] == pytest.approx(brier_score_loss(y, s))


def test_regression_metrics_match_hand_computed_values():
    m = ev.regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert m["r2"] == pytest.approx(1 - 4 / 2)
    assert math.isnan(ev.regression_metrics(np.ones(3), np.array([1.0, 2.0, 3.0]))["r2"])


def test_ece_is_zero_when_calibrated_and_large_when_not():
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    calibrated = np.array([0.25] * 4 + [0.75] * 4)  # 1 of 4 and 3 of 4 positives
    assert ev.expected_calibration_error(y, calibrated) == pytest.approx(0.0)
    overconfident = np.array([0.05] * 4 + [0.95] * 4)
    assert ev.expected_calibration_error(y, overconfident) == pytest.approx(0.2)

    rng = np.random.default_rng(1)
    p = rng.random(20_000)
    outcomes = (rng.random(20_000) < p).astype(int)
    for strategy in ("uniform", "quantile"):
        assert ev.expected_calibration_error(outcomes, p, strategy=strategy) < 0.02
        assert ev.expected_calibration_error(outcomes, p ** 3, strategy=strategy) > 0.15
    with pytest.raises(ValueError, match="quantile"):
        ev.expected_calibration_error(outcomes, p, strategy="kmeans")


# ------------------------------------------------------------------------------------------ bootstrap


def test_paired_bootstrap_ci_contains_the_true_auc_difference():
    rng = np.random.default_rng(2)
    n = 2000
    y = rng.integers(0, 2, n)
    strong = rng.normal(size=n) + 2.0 * y  # true AUC = Phi(2 / sqrt 2)
    weak = rng.normal(size=n) + 0.5 * y  # true AUC = Phi(0.5 / sqrt 2)
    true_diff = norm.cdf(2 / math.sqrt(2)) - norm.cdf(0.5 / math.sqrt(2))
    b = ev.paired_bootstrap(y, strong, weak, ev.roc_auc, n_samples=200, seed=0)
    lo, hi = b.difference_ci
    assert lo <= true_diff <= hi and lo > 0.2
    assert b.candidate_ci[0] < norm.cdf(2 / math.sqrt(2)) < b.candidate_ci[1]
    again = ev.paired_bootstrap(y, strong, weak, ev.roc_auc, n_samples=200, seed=0)
    assert again.difference_ci == b.difference_ci  # seeded


def test_paired_bootstrap_shares_resamples_between_models():
    rng = np.random.default_rng(3)
    y, s = rng.integers(0, 2, 200), rng.random(200)
    b = ev.paired_bootstrap(y, s, s.copy(), ev.roc_auc, n_samples=50, seed=1)
    assert b.difference_ci == (0.0, 0.0) and b.difference == 0.0
    assert b.candidate_ci[1] - b.candidate_ci[0] > 0.05  # each model's own CI is wide; the paired diff is not


# ------------------------------------------------------------------------------------------ evaluate


@pytest.fixture(scope="module")
def classification_models():
    spec = small_spec()
    good = training.train(spec, spec.training, labeled(spec, 800, 10), git_commit="x").pipeline
    train_weak = labeled(spec, 800, 11).assign(x1=0.0)  # the weak model never sees the main signal
    weak = training.train(spec, spec.training, train_weak, git_commit="x").pipeline
    return spec, good, weak


def test_evaluate_reports_candidate_and_champion_side_by_side(classification_models):
    spec, good, weak = classification_models
    bench = labeled(spec, 600, 12)
    report = ev.evaluate(spec, good, weak, bench)
    assert report.key_metric == "roc_auc" and report.higher_is_better and report.n_rows == 600
    assert report.candidate.metrics["roc_auc"] > report.champion.metrics["roc_auc"] + 0.1
    assert report.bootstrap.difference_ci[0] > 0 and report.bootstrap.n_samples == 60
    assert report.candidate.artifact_bytes == len(pickle.dumps(good, protocol=pickle.HIGHEST_PROTOCOL))
    assert report.candidate.latency_ms_per_1k > 0
    seg = report.candidate.slices["seg"]
    assert set(seg) == {"a", "b"} and seg["a"]["n"] + seg["b"]["n"] == 600
    assert seg["a"]["roc_auc"] == pytest.approx(
        ev.roc_auc(training.labels(spec, bench)[bench.seg.to_numpy() == "a"],
                   training.predict_scores(good, spec, bench[bench.seg == "a"])))

    table = report.metrics_table()
    assert list(table.columns) == ["metric", "candidate", "champion", "difference", "higher_is_better"]
    auc = table.set_index("metric").loc["roc_auc"]
    assert auc.difference == pytest.approx(auc.candidate - auc.champion)
    assert "latency_ms_per_1k" in set(table.metric) and "artifact_mb" in set(table.metric)
    assert set(report.plots) == {"roc_curve", "calibration_curve"}
    assert all("data:image/png;base64," in md for md in report.plots.values())
    json.dumps(report.to_dict(), allow_nan=False)
    assert "| roc_auc |" in report.markdown()


def test_one_class_benchmark_gives_nan_auc_and_a_note_not_a_crash(classification_models):
    spec, good, weak = classification_models
    bench = labeled(spec, 200, 13).assign(y=1)
    report = ev.evaluate(spec, good, weak, bench)
    assert math.isnan(report.candidate.metrics["roc_auc"]) and math.isnan(report.bootstrap.difference_ci[0])
    assert report.candidate.metrics["accuracy"] == pytest.approx(
        (training.predict_scores(good, spec, bench) >= 0.5).mean())
    assert any("only one class" in n for n in report.notes)
    assert "roc_curve" not in report.plots and "calibration_curve" in report.plots
    d = report.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["candidate"]["metrics"]["roc_auc"] is None


def test_evaluate_without_champion_and_with_an_unknown_key_metric(classification_models):
    spec, good, _ = classification_models
    bench = labeled(spec, 100, 14)
    report = ev.evaluate(spec, good, None, bench, make_plots=False)
    assert report.champion is None and report.bootstrap.difference_ci is None
    assert report.metrics_table()["champion"].isna().all()
    with pytest.raises(ValueError, match="'rmse' is not defined for task 'binary_classification'"):
        ev.evaluate(spec, good, None, bench, GatePolicy(key_metric="rmse"))
    with pytest.raises(ValueError, match="empty"):
        ev.evaluate(spec, good, None, bench.iloc[:0])


def test_regression_evaluation_uses_rmse_and_draws_residuals():
    spec = small_spec("regression")
    model = training.train(spec, TrainingPolicy(estimator="ridge"), labeled(spec, 300, 20), git_commit="x")
    bench = labeled(spec, 200, 21)
    report = ev.evaluate(spec, model.pipeline, None, bench)
    assert report.key_metric == "rmse" and not report.higher_is_better
    assert set(report.candidate.metrics) == {"mae", "rmse", "r2"}
    y, pred = training.labels(spec, bench), training.predict_scores(model.pipeline, spec, bench)
    assert report.candidate.metrics["rmse"] == pytest.approx(np.sqrt(np.mean((y - pred) ** 2)))
    assert report.candidate.metrics["r2"] > 0.9
    assert set(report.plots) == {"residuals"}
