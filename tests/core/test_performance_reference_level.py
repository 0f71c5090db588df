"""The performance reference's level and spread when the pool mixes out-of-fold days with validation days, and
the sampling std of a metric whose rows are alike within a day."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mlops_assets.core.monitoring import performance_metrics as pm
from mlops_assets.core.monitoring.performance_reference import reference_from_rows


def _rows(days: int, rows_per_day: int, error_std: float, day_offset_std: float, seed: int, first: int = 0):
    """Regression rows: label 0, score = a per-day offset (one day's weather) + row noise."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0.0, day_offset_std, days)
    day = np.repeat([f"2025-01-{first + d + 1:02d}" for d in range(days)], rows_per_day)
    score = np.repeat(offsets, rows_per_day) + rng.normal(0.0, error_std, days * rows_per_day)
    return pd.DataFrame({"day": day, "score": score, "label": np.zeros(len(day))})


def _mae(rows: pd.DataFrame):
    s, y = rows["score"].to_numpy(), rows["label"].to_numpy()
    return lambda i: pm.realised_metric("mae", s[i], y[i], 0.5)


def test_resampling_whole_days_sees_the_spread_that_independent_rows_hide():
    rows = _rows(days=25, rows_per_day=24, error_std=0.5, day_offset_std=1.0, seed=1)
    iid = pm.sampling_unit_std(_mae(rows), len(rows), seed=3)
    by_day = pm.sampling_unit_std(_mae(rows), len(rows), seed=3, days=rows["day"].to_numpy())
    # std of the mean of 25 day offsets (~1/5) times sqrt(600) rows is about 4.9; iid rows see about 0.6-0.9
    assert by_day > 3 * iid
    assert 2.0 < by_day < 9.0


def test_without_a_day_effect_resampling_days_changes_little():
    rows = _rows(days=25, rows_per_day=24, error_std=1.0, day_offset_std=0.0, seed=2)
    iid = pm.sampling_unit_std(_mae(rows), len(rows), seed=3)
    by_day = pm.sampling_unit_std(_mae(rows), len(rows), seed=3, days=rows["day"].to_numpy())
    assert iid <= by_day < 1.6 * iid


def test_the_center_is_the_versions_own_validation_level_not_the_out_of_fold_days():
    # out-of-fold days (interpolated by fold models) are easier than the days the version serves after them
    out_of_fold = _rows(days=18, rows_per_day=24, error_std=1.0, day_offset_std=0.2, seed=4)
    validation = _rows(days=5, rows_per_day=24, error_std=1.5, day_offset_std=0.2, seed=5, first=18)
    pool = pd.concat([out_of_fold, validation], ignore_index=True)
    kwargs = dict(threshold=0.5, min_rows=500, max_days=14, seed=7, source="test")
    pooled, _ = reference_from_rows("mae", pool, **kwargs)
    own, _ = reference_from_rows("mae", pool, level_rows=validation, **kwargs)
    level = float(np.mean(np.abs(validation["score"])))
    assert math.isclose(own.center, level, rel_tol=1e-12)
    assert pooled.center < own.center - 0.1  # the pooled level sits on the easy side
    # the level of 120 rows is less certain than that of 552: its standard error says so
    assert own.center_std > pooled.center_std
    # a served window at the validation level is no alarm against the version's own level; it is against the pool's
    for ref, alarmed in ((own, False), (pooled, True)):
        limits = ref.limits(336, 2.0, 3.0)
        assert (level > limits.error) is alarmed
