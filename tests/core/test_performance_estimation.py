import itertools
import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from mlops_assets.core.monitoring.performance_estimation import (METRICS, Calibrator, calibrate, estimate_performance,
                                                                 expected_roc_auc, realised_performance)


def test_estimates_match_realised_metrics_for_a_calibrated_model():
    # 200,000 rows: the realised AUC's sampling std is ~0.001, so a 0.01 bound is loose but never flaky.
    # (`make bench` prints the same comparison on 1,000,000 rows.)
    rng = np.random.default_rng(0)
    p = rng.beta(2.0, 3.0, 200_000)
    y = (rng.random(len(p)) < p).astype(int)
    estimate, realised = estimate_performance(p, threshold=0.4), realised_performance(p, y, threshold=0.4)
    for metric in METRICS:
        assert abs(getattr(estimate, metric) - getattr(realised, metric)) < 0.01, metric
    assert estimate.predicted_positive_rate == realised.predicted_positive_rate
    assert abs(estimate.positive_rate - y.mean()) < 0.01


def test_expected_auc_and_confusion_are_exact_expectations_on_an_enumerable_case():
    # Five rows, two of them tied on score: enumerate all 32 label outcomes with their probabilities.
    p = np.array([0.9, 0.6, 0.6, 0.3, 0.1])
    scores = np.array([0.8, 0.55, 0.55, 0.5, 0.2])  # ranks like p, thresholded at 0.52
    e_correct = e_pairs = e_accuracy = e_tp = 0.0
    for labels in itertools.product((0, 1), repeat=len(p)):
        y = np.array(labels)
        weight = np.prod(np.where(y == 1, p, 1 - p))
        for i, j in itertools.permutations(range(len(p)), 2):
            if y[i] == 1 and y[j] == 0:
                e_pairs += weight
                e_correct += weight * (1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0)
        predicted = scores >= 0.52
        e_accuracy += weight * np.mean(predicted == y)
        e_tp += weight * np.sum(predicted & (y == 1))
    estimate = estimate_performance(p, threshold=0.52, scores=scores)
    assert estimate.roc_auc == pytest.approx(e_correct / e_pairs)
    assert expected_roc_auc(p, scores) == pytest.approx(e_correct / e_pairs)
    assert estimate.accuracy == pytest.approx(e_accuracy)
    assert estimate.precision == pytest.approx(e_tp / 3)  # three rows predicted positive: exact expectation
    assert estimate.recall == pytest.approx(e_tp / p.sum())  # a ratio of expectations, as in CBPE


def test_realised_metrics_match_scikit_learn_including_tied_scores():
    rng = np.random.default_rng(1)
    scores = np.round(rng.random(5000), 2)  # many ties
    y = (rng.random(5000) < scores).astype(int)
    realised = realised_performance(scores, y, threshold=0.5)
    predicted = (scores >= 0.5).astype(int)
    assert realised.roc_auc == pytest.approx(roc_auc_score(y, scores))
    assert realised.accuracy == pytest.approx(accuracy_score(y, predicted))
    assert realised.precision == pytest.approx(precision_score(y, predicted))
    assert realised.recall == pytest.approx(recall_score(y, predicted))
    assert realised.f1 == pytest.approx(f1_score(y, predicted))


def test_isotonic_calibration_repairs_estimates_from_miscalibrated_scores():
    rng = np.random.default_rng(2)

    def draw(n):
        scores = rng.random(n)
        return scores, (rng.random(n) < scores**3).astype(int)  # true probability is score cubed

    ref_scores, ref_labels = draw(50_000)
    scores, labels = draw(100_000)
    realised = realised_performance(scores, labels, threshold=0.5)
    raw = estimate_performance(scores, threshold=0.5)
    # taken at face value the scores mislead: AUC 0.83 expected against 0.90 realised, precision 0.75 vs 0.47
    assert abs(raw.roc_auc - realised.roc_auc) > 0.05 and abs(raw.precision - realised.precision) > 0.2
    calibrator = calibrate(ref_scores, ref_labels, method="isotonic")
    fixed = estimate_performance(calibrator(scores), threshold=0.5, scores=scores)
    for metric in METRICS:
        assert abs(getattr(fixed, metric) - getattr(realised, metric)) < 0.015, metric


def test_platt_calibration_recovers_a_logistic_link():
    rng = np.random.default_rng(3)
    margin = rng.normal(size=50_000)
    labels = (rng.random(len(margin)) < 1 / (1 + np.exp(-(2.0 * margin - 1.0)))).astype(int)
    calibrator = calibrate(margin, labels, method="platt")
    assert calibrator.a == pytest.approx(2.0, abs=0.1) and calibrator.b == pytest.approx(-1.0, abs=0.1)


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrator_round_trips_through_json(method):
    rng = np.random.default_rng(4)
    scores = rng.random(2000)
    calibrator = calibrate(scores, (rng.random(2000) < scores).astype(int), method=method)
    loaded = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    np.testing.assert_array_equal(loaded(scores), calibrator(scores))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="calibrate"):
        estimate_performance([0.2, 1.7], threshold=0.5)
    with pytest.raises(ValueError, match="finite"):
        estimate_performance([0.2, np.nan], threshold=0.5)
    with pytest.raises(ValueError, match="0 or 1"):
        realised_performance([0.2, 0.4], [0, 2], threshold=0.5)
    with pytest.raises(ValueError, match="both classes"):
        calibrate([0.2, 0.4], [1, 1])
    empty = estimate_performance([], threshold=0.5)
    assert empty.n == 0 and np.isnan(empty.roc_auc)
