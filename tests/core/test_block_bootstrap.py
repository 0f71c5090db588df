"""Intervals over rows that move together by day: the block bootstrap of metric_scale, and the canary's metric
verdict built on it (rows of one day are not independent evidence)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_assets.core.evaluation.metric_scale import MIN_BLOCK_DAYS, paired_drop, time_blocks
from mlops_assets.core.evaluation.report import paired_bootstrap
from mlops_assets.core.serving.canary import CanaryCriteria, metric_verdict
from mlops_assets.core.serving.canary_evidence import WindowEvidence


def correlated_days(rng, days: int, rows: int, day_effect: float, mean_gain: float = 0.0):
    """Labels and two models' scores over `days` days: each day the new model is right more or less often than
    the old one by a day-level amount (mean `mean_gain`, spread `day_effect`), as when a day's conditions favour
    one model; the old model is right 70 % of the time."""
    y, new, old, stamps = [], [], [], []
    for d in range(days):
        gain = rng.normal(mean_gain, day_effect)
        labels = (rng.random(rows) < 0.5).astype(float)
        old_right = rng.random(rows) < 0.7
        new_right = rng.random(rows) < np.clip(0.7 + gain, 0.05, 0.95)
        y.append(labels)
        old.append(np.where(old_right, labels, 1 - labels) * 0.8 + 0.1)
        new.append(np.where(new_right, labels, 1 - labels) * 0.8 + 0.1)
        start = pd.Timestamp("2025-03-01") + pd.Timedelta(days=d)
        stamps.append(start + pd.to_timedelta(np.arange(rows) * 30, unit="min"))
    return np.concatenate(y), np.concatenate(new), np.concatenate(old), np.concatenate(stamps)


def accuracy(y, s):
    return float(np.mean((s >= 0.5) == y))


def test_days_are_the_blocks_when_there_are_enough_else_runs_of_rows_within_days_and_it_says_so():
    rng = np.random.default_rng(0)
    _, _, _, stamps = correlated_days(rng, MIN_BLOCK_DAYS, 48, 0.0)
    blocks, how = time_blocks(stamps[::-1])  # any row order: blocks follow the timestamps
    assert len(blocks) == MIN_BLOCK_DAYS and "days" in how
    assert sorted(np.concatenate(blocks)) == list(range(len(stamps)))
    assert all(len(set(pd.to_datetime(stamps[::-1][b]).date)) == 1 for b in blocks)
    few, how = time_blocks(stamps[: 48 * 3])
    assert "fewer than" in how and "3 day(s)" in how
    assert all(np.all(np.diff(pd.to_datetime(stamps[: 48 * 3][b]).to_numpy()) > np.timedelta64(0)) for b in few)
    assert 3 < len(few) < 48 * 3  # runs of several consecutive rows, never crossing a day


def test_day_blocks_keep_nominal_coverage_where_the_row_bootstrap_does_not():
    # The true drop is 0 (day effects average out); each window of 12 days holds strong day effects. A 95 %
    # interval should contain 0 about 95 % of the time: resampling days does, resampling rows misses often.
    rng = np.random.default_rng(1)
    covered = {"rows": 0, "days": 0}
    trials = 80
    for t in range(trials):
        y, new, old, stamps = correlated_days(rng, 12, 40, day_effect=0.25)
        blocks, _ = time_blocks(stamps)
        for name, b in (("rows", None), ("days", blocks)):
            low, high = paired_bootstrap(y, new, old, accuracy, 150, seed=t, blocks=b).difference_ci
            covered[name] += low <= 0.0 <= high
    assert covered["days"] / trials >= 0.85
    assert covered["rows"] / trials <= 0.75


def criteria(limit=0.02):
    return CanaryCriteria(steps=(0.5, 1.0), window_days=12, key_metric="accuracy", higher_is_better=True,
                          max_metric_drop=limit, max_score_shift=0.3, max_latency_ratio=3.0, min_rows_per_step=50)


def test_a_canary_is_held_where_the_row_bootstrap_would_have_passed_it_on_correlated_days():
    # 12 days of 48 rows: the canary is better on average in this sample, but its days swing widely, so
    # 12 days cannot show it is within 0.02 of the champion; rows resampled as independent would say it is.
    rng = np.random.default_rng(4)
    y, new, old, stamps = correlated_days(rng, 12, 48, day_effect=0.15, mean_gain=0.03)
    args = dict(threshold=0.5, n_samples=400, seed=0)
    by_rows = paired_drop("accuracy", "binary_classification", y, new, old, **args)
    by_days = paired_drop("accuracy", "binary_classification", y, new, old, timestamps=stamps, **args)
    assert by_rows.resampling == "rows" and by_days.resampling.startswith("days")
    assert by_days.high - by_days.low > 1.5 * (by_rows.high - by_rows.low)
    rows_verdict = metric_verdict(criteria(), WindowEvidence(share=0.5, days=12, rows=len(y), metric=by_rows))
    days_verdict = metric_verdict(criteria(), WindowEvidence(share=0.5, days=12, rows=len(y), metric=by_days))
    assert rows_verdict.outcome == "pass"
    assert days_verdict.outcome == "hold" and "resampled days" in days_verdict.message


def test_the_score_shift_band_counts_correlated_rows_at_their_effective_size():
    from mlops_assets.core.serving.canary_evidence import effective_rows

    rng = np.random.default_rng(7)
    _, _, _, stamps = correlated_days(rng, 12, 48, 0.0)
    independent = rng.random(len(stamps))
    assert effective_rows(independent, stamps) > 0.8 * len(stamps)
    # each day's scores share a level: 12 days are worth little more than 12 rows
    by_day = np.repeat(rng.normal(0, 1, 12), 48) + rng.normal(0, 0.1, len(stamps))
    assert effective_rows(by_day, stamps) < 3 * 12
