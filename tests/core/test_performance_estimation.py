import itertools
import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from mlops_assets.core.monitoring.performance_estimation import (METRICS, Calibrator, calibrate, estimate_performance,
                                                                 expected_roc_auc, realised_performance, recalibrate)


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


# ------------------------------------------------------------- limits from the reference's own variability

import pandas as pd  # noqa: E402

from mlops_assets.core.config.policies import MonitoringPolicy  # noqa: E402
from mlops_assets.core.monitoring.performance_reference import (  # noqa: E402
    MIN_CHUNKS,
    PerformanceReference,
    reference_from_rows,
)
from mlops_assets.core.monitoring.performance_window import collect_window  # noqa: E402


def reference_rows(days: int, rows_per_day: int, day_effect_std: float, seed: int, trend: float = 0.0):
    """Scores whose labels follow them, a day's share of labels flipped around 10 % with a per-day spread (the
    day-to-day variation a single window's rows cannot show), and an optional trend in the base rate."""
    rng = np.random.default_rng(seed)
    out = []
    for d in range(days):
        p = rng.beta(0.5, 0.5, rows_per_day)
        y = (rng.random(rows_per_day) < np.clip(p + trend * (d / days - 0.5), 0, 1)).astype(float)
        flipped = rng.random(rows_per_day) < np.clip(rng.normal(0.1, day_effect_std), 0, 0.5)
        y = np.where(flipped, 1 - y, y)
        out.append(pd.DataFrame({"day": f"2025-{1 + d // 28:02d}-{1 + d % 28:02d}", "score": p, "label": y}))
    return pd.concat(out, ignore_index=True)


def fit_rows(pool, **kw):
    args = dict(threshold=0.5, min_rows=200, max_days=14, seed=0, source="test")
    return reference_from_rows("accuracy", pool, **{**args, **kw})


def test_limits_widen_with_the_reference_chunk_spread():
    calm, _ = fit_rows(reference_rows(60, 100, 0.0, seed=1))
    noisy, _ = fit_rows(reference_rows(60, 100, 0.2, seed=1))
    assert calm.n_chunks == noisy.n_chunks == 30 and calm.chunk_rows == 200
    assert noisy.chunk_std > 2 * calm.chunk_std
    calm_limits, noisy_limits = calm.limits(200, 2.0, 3.0), noisy.limits(200, 2.0, 3.0)
    assert "chunk-to-chunk" in noisy_limits.source
    assert (noisy_limits.center - noisy_limits.error) > 1.8 * (calm_limits.center - calm_limits.error)
    # accuracy: higher is better, so both limits sit below the level, ERROR further out than WARN
    assert noisy_limits.error < noisy_limits.warn < noisy_limits.center
    # a window smaller than a chunk is noisier; a larger one keeps at least the chunks' spread
    assert noisy.limits(50, 2.0, 3.0).std > noisy_limits.std >= noisy.limits(5000, 2.0, 3.0).std >= noisy.chunk_std


def test_too_few_chunks_fall_back_to_the_sampling_interval():
    few, _ = fit_rows(reference_rows(4, 100, 0.0, seed=2))
    assert few.n_chunks < MIN_CHUNKS
    limits = few.limits(400, 2.0, 3.0)
    assert "sampling interval" in limits.source
    # binomial std of accuracy at 400 rows, from the bootstrap (within its own noise), plus the level's own
    expected = np.hypot(np.sqrt(few.center * (1 - few.center) / 400), few.center_std)
    assert limits.std == pytest.approx(expected, rel=0.3)


def test_with_few_chunks_a_window_is_judged_with_the_reference_days_own_spread():
    """24 rows a day over 23 reference days: one chunk of 500 rows, so the sampling interval, plus the spread
    between the days beyond their row counts, shrinking with the days the window spans."""
    ref, _ = fit_rows(reference_rows(23, 24, 0.1, seed=4), min_rows=500)
    assert ref.n_chunks < MIN_CHUNKS and ref.spread_days == 23 and ref.between_day_std > 0
    fortnight = ref.limits(336, 2.0, 3.0, n_days=14)
    expected = np.sqrt(ref.unit_std ** 2 / 336 + ref.between_day_std ** 2 / 14 + ref.center_std ** 2)
    assert fortnight.std == pytest.approx(expected) and "between-day std of 23 reference days" in fortnight.source
    assert ref.limits(336, 2.0, 3.0, n_days=1).std > fortnight.std > ref.unit_std / np.sqrt(336)
    # the level's own error counts the days too: wider than the rows alone would make it
    assert ref.center_std > ref.unit_std / np.sqrt(23 * 24)
    # a reference stored before the spread was measured reads as unknown: the rows alone, as it was judged then
    old = PerformanceReference.from_dict({k: v for k, v in ref.to_dict().items()
                                          if k not in ("between_day_std", "spread_days")})
    assert np.isnan(old.between_day_std) and old.limits(336, 2.0, 3.0, n_days=14).std < fortnight.std


def test_stable_worlds_whose_days_differ_raise_warnings_at_the_designed_rate():
    """200 stable worlds, each day's error rate drawn anew: a 14-day window of the same process after 23
    reference days. Judged with the days' spread, WARN (2 std, one-sided 2.3 % by design) and ERROR keep their
    rates; judged as if rows were independent, WARN fires four times as often."""
    import dataclasses

    from mlops_assets.core.monitoring import performance_metrics as pm

    warn = {"days": 0, "rows": 0}
    errors = 0
    for seed in range(200):
        rows = reference_rows(37, 24, 0.1, seed=seed)
        days = sorted(rows["day"].unique())
        reference, window = rows[rows["day"].isin(days[:23])], rows[rows["day"].isin(days[23:])]
        ref, _ = fit_rows(reference, min_rows=500)
        value = pm.realised_metric("accuracy", window["score"].to_numpy(), window["label"].to_numpy(), 0.5)
        limits = ref.limits(len(window), 2.0, 3.0, n_days=14)
        rows_only = dataclasses.replace(ref, between_day_std=float("nan"),
                                        center_std=ref.unit_std / np.sqrt(len(reference)))
        warn["days"] += value < limits.warn
        warn["rows"] += value < rows_only.limits(len(window), 2.0, 3.0, n_days=14).warn
        errors += value < limits.error
    assert warn["days"] <= 8 and errors == 0  # ~4.6 expected at 2.3 %
    assert warn["rows"] >= 15 and warn["rows"] >= 3 * max(warn["days"], 1)


def test_the_estimates_bias_is_measured_on_blocks_it_was_not_calibrated_on():
    pool = reference_rows(40, 100, 0.0, seed=3)
    steady, calibrator = fit_rows(pool, calibration_pool=pool)
    assert calibrator is not None and steady.calibration_rows == steady.bias_rows == len(pool)
    assert abs(steady.estimate_bias) < 0.02 and steady.estimate_error_std < 0.03
    assert steady.bias_correction == steady.estimate_bias
    # labels drifting across the reference: a calibrator fitted in-sample would show no error at all, the
    # held-out blocks show how far the estimate can be off
    drifting = reference_rows(40, 100, 0.0, seed=3, trend=1.0)
    moving, _ = fit_rows(drifting, calibration_pool=drifting)
    assert moving.estimate_error_std > 3 * steady.estimate_error_std


def test_the_window_reaches_back_whole_days_until_enough_rows_capped_in_days():
    day_rows = {f"2025-03-{d:02d}": 30 for d in range(1, 21)}
    del day_rows["2025-03-17"]  # nothing served that day: it still counts toward the cap

    def read_day(day):
        n = day_rows.get(day)
        return None if n is None else pd.DataFrame({"score": np.full(n, 0.5), "label": np.full(n, np.nan)})

    window = collect_window("2025-03-20", read_day, MonitoringPolicy(performance_min_rows=100,
                                                                     performance_max_days=14))
    assert sorted(window["day"].unique()) == ["2025-03-16", "2025-03-18", "2025-03-19", "2025-03-20"]
    assert len(window) == 120
    capped = collect_window("2025-03-20", read_day, MonitoringPolicy(performance_min_rows=10_000,
                                                                     performance_max_days=4))
    assert sorted(capped["day"].unique()) == ["2025-03-18", "2025-03-19", "2025-03-20"]  # 4 days: 03-17 to 03-20
    assert window["label"].isna().all()


def test_a_calibrator_fitted_on_worse_ranking_fold_scores_is_recalibrated_on_the_versions_own_rows():
    # Fold models rank worse than the version (their scores carry extra noise), as on Elec2: isotonic on their
    # scores is too flat for the version's scores and the estimate runs low; recalibrated on the version's own
    # validation days, it follows the version's realised AUC on later rows.
    rng = np.random.default_rng(5)

    def days(first, count, noise, rows=300):
        out = []
        for d in range(first, first + count):
            z = rng.normal(0, 1.5, rows)
            y = (rng.random(rows) < 1 / (1 + np.exp(-2 * z))).astype(float)
            score = 1 / (1 + np.exp(-(z + rng.normal(0, noise, rows))))
            out.append(pd.DataFrame({"day": f"2025-01-{d:02d}", "score": score, "label": y}))
        return pd.concat(out, ignore_index=True)

    fold_scores, own = days(1, 20, noise=1.5), days(21, 5, noise=0.0)
    later = days(26, 5, noise=0.0, rows=20_000)
    pool = pd.concat([fold_scores, own], ignore_index=True)
    s, y = later["score"].to_numpy(), later["label"].to_numpy()
    realised = realised_performance(s, y, threshold=0.5).roc_auc
    args = dict(threshold=0.5, min_rows=200, max_days=14, seed=0, source="test")
    _, flat = reference_from_rows("roc_auc", pool, calibration_pool=pool, own_rows=pool, **args)
    fixed_ref, fixed = reference_from_rows("roc_auc", pool, calibration_pool=pool, own_rows=own, **args)
    assert flat.slope == 1.0 and fixed.slope > 1.2 and fixed_ref.recalibrated_on_rows == len(own)
    low = expected_roc_auc(flat(s), s) - realised
    assert low < -0.05  # the failure this fixes
    # most of it is gone (isotonic steps still hide the version's finer ranking within a step)
    assert abs(expected_roc_auc(fixed(s), s) - realised) < abs(low) / 2
    # its bias is measured on the version's own days, each held out of both fits, with an interval that holds 0
    assert fixed_ref.bias_rows == len(own) and fixed_ref.bias_blocks == 5
    low_bound, high_bound = fixed_ref.estimate_bias_interval()
    assert low_bound < fixed_ref.estimate_bias < high_bound and high_bound - low_bound < 0.1


def test_a_recalibrated_calibrator_round_trips_and_an_old_document_reads_as_not_recalibrated():
    rng = np.random.default_rng(6)
    scores = rng.random(3000)
    labels = (rng.random(3000) < scores ** 2).astype(int)
    base = calibrate(scores, labels, "isotonic")
    sharper = recalibrate(base, scores, (rng.random(3000) < np.where(scores > 0.5, 0.9, 0.1)).astype(int))
    assert sharper.slope > 1.0
    loaded = Calibrator.from_dict(json.loads(json.dumps(sharper.to_dict())))
    np.testing.assert_allclose(loaded(scores), sharper(scores))
    old = {k: v for k, v in base.to_dict().items() if k not in ("slope", "intercept")}
    np.testing.assert_allclose(Calibrator.from_dict(old)(scores), base(scores))
    # separable rows keep the slope finite
    separable = recalibrate(base, scores, (scores > 0.5).astype(int))
    assert np.isfinite(separable.slope) and separable.slope < 100
