"""Drift floors from the reference's own day-to-day spread, measured once when the profile is fitted.

A served day is judged against the whole reference, but even ordinary days differ from it: by sampling noise
(a few dozen rows) and, far more in real data, because rows of one day are alike (48 consecutive half-hours of
prices, one day's weather). Neither shrinks as the reference grows, and a p-value alone cannot tell them from
drift: a test of 48 autocorrelated rows against an 8-week reference is significant on most ordinary days.

So, per feature, each reference day (or, without enough days, each contiguous chunk) is compared with the rest
of the reference using the same effect measure the daily report uses (Wasserstein distance in reference
standard deviations for numeric features, Jensen-Shannon distance for categorical ones), leaving the day out
as a served day is left out. The floor is `FLOOR_MARGIN` times the `FLOOR_QUANTILE` of those effects:
- a quantile, not the maximum, so the floor does not creep up with the number of reference days;
- the 95th, because with the 15-60 days of a usual training window it is still an observed value
  (interpolated between the two largest days at 20), not an extrapolation;
- a margin of 2, because the quantile itself comes from few days and a served day lies outside the
  reference in time. For effects like a folded normal (the mean of a day that wanders) the 95th percentile
  is 1.96 sigma, so twice it would be 3.9 sigma if the quantile were known; estimated from 28 days of 48
  autocorrelated rows (tests/core/test_drift.py's stream, 20 seeds x 60 served days x 6 features), 0.6 % of
  ordinary feature-days exceeded 1.5 x the quantile (a WARN on 3.3 % of days) and 0.06 % exceeded 2 x
  (0.3 % of days), while a shift of a few day-to-day spreads still clears it at once.

The effects are computed on the profile's grid, coarsened to `SPREAD_CELLS` cells (a cell is about 1/170 of
a reference standard deviation for a bell-shaped feature), so fitting stays one pass over the rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

FLOOR_QUANTILE = 0.95
FLOOR_MARGIN = 2.0
MIN_UNITS = 10  # fewer reference days than this: measure contiguous chunks instead (see reference_units)
SPREAD_CELLS = 1024


@dataclass(frozen=True)
class DaySpread:
    """How far single reference days (or chunks) sit from the rest of the reference, and the floor it gives."""

    unit: str  # "day" (calendar days of the timestamp) or "chunk" (contiguous runs of rows)
    units: int  # how many days or chunks were measured
    quantile: float  # their FLOOR_QUANTILE effect against the rest of the reference
    largest: float  # their largest effect
    floor: float  # FLOOR_MARGIN x quantile, as decided when the profile was fitted

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict | None) -> "DaySpread | None":
        if raw is None:
            return None
        return cls(str(raw["unit"]), int(raw["units"]), float(raw["quantile"]), float(raw["largest"]),
                   float(raw["floor"]))


@dataclass(frozen=True)
class ReferenceUnits:
    """The reference's rows grouped into days or chunks: `order` sorts rows by unit, `starts` bounds each unit."""

    unit: str
    order: np.ndarray
    starts: np.ndarray  # unit i is order[starts[i]:starts[i + 1]]

    def slices(self):
        return zip(self.starts[:-1], self.starts[1:])

    def __len__(self) -> int:
        return len(self.starts) - 1


def reference_units(frame: pd.DataFrame, timestamp: str | None) -> ReferenceUnits:
    """Calendar days of the `timestamp` column when the reference holds at least MIN_UNITS of them; otherwise
    MIN_UNITS contiguous chunks in the frame's order. A chunk is then shorter than a day, so its effects are
    noisier and the floor errs high: fewer alarms rather than alarms on ordinary days."""
    n = len(frame)
    if timestamp and timestamp in frame.columns:
        days = pd.to_datetime(frame[timestamp]).to_numpy().astype("datetime64[D]")
        labels, codes = np.unique(days, return_inverse=True)
        if len(labels) >= MIN_UNITS:
            order = np.argsort(codes, kind="stable")
            starts = np.searchsorted(codes[order], np.arange(len(labels) + 1))
            return ReferenceUnits("day", order, starts)
    starts = np.unique(np.linspace(0, n, MIN_UNITS + 1).round().astype(int))
    return ReferenceUnits("chunk", np.arange(n), starts)


def spread_of(effects: np.ndarray, unit: str) -> DaySpread | None:
    """The floor from the units' effects; None when fewer than MIN_UNITS could be measured."""
    x = np.asarray(effects, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < MIN_UNITS // 2:
        return None
    q = float(np.quantile(x, FLOOR_QUANTILE))
    return DaySpread(unit, len(x), q, float(x.max()), FLOOR_MARGIN * q)


def numeric_unit_effects(profile, values: np.ndarray, units: ReferenceUnits, scale: float) -> np.ndarray:
    """Each unit's Wasserstein distance to the rest of the reference, in `scale` units, on the coarsened grid
    (plus the parts beyond the grid from the rows' overshoots, as the daily report computes it)."""
    lo, hi, cells = profile.grid
    step = max(cells // SPREAD_CELLS, 1)
    width = (hi - lo) / cells * step
    x = values[units.order]
    counts, n, below, above, sums = [], [], [], [], []
    for a, b in units.slices():
        chunk = x[a:b]
        chunk = chunk[np.isfinite(chunk)]  # NaN carries no distance; +-inf are out of the profile too
        scan = profile.scan(chunk) if len(chunk) else None
        counts.append(scan.cells.reshape(-1, step).sum(axis=1) if scan else np.zeros(cells // step, np.int64))
        n.append(len(chunk))
        below.append(scan.below * len(chunk) if scan else 0.0)
        above.append(scan.above * len(chunk) if scan else 0.0)
        sums.append(float(chunk.sum()))
    counts, n = np.asarray(counts), np.asarray(n, dtype=float)
    below, above, sums = np.asarray(below), np.asarray(above), np.asarray(sums)
    rest_n = n.sum() - n
    effects = np.full(len(n), np.nan)
    ok = (n > 0) & (rest_n > 0)
    if not ok.any() or not scale:
        return effects
    cdf = np.cumsum(counts[ok], axis=1) / n[ok, None]
    rest_cdf = np.cumsum(counts.sum(axis=0) - counts[ok], axis=1) / rest_n[ok, None]
    w = np.abs(cdf - rest_cdf).sum(axis=1) * width
    w += np.abs(below[ok] / n[ok] - (below.sum() - below[ok]) / rest_n[ok])
    w += np.abs(above[ok] / n[ok] - (above.sum() - above[ok]) / rest_n[ok])
    w = np.maximum(w, np.abs(sums[ok] / n[ok] - (sums.sum() - sums[ok]) / rest_n[ok]))
    effects[ok] = w / scale
    return effects


def categorical_unit_effects(counts: np.ndarray) -> np.ndarray:
    """Each unit's Jensen-Shannon distance to the rest of the reference, from per-unit category counts."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=1)
    rest = counts.sum(axis=0) - counts
    effects = np.full(len(n), np.nan)
    for i in np.flatnonzero((n > 0) & (rest.sum(axis=1) > 0)):
        effects[i] = jensen_shannon(rest[i] / rest[i].sum(), counts[i] / n[i])
    return effects


def jensen_shannon(ref: np.ndarray, cur: np.ndarray) -> float:
    """Jensen-Shannon distance in base 2 (in [0, 1]) between two proportion vectors."""
    m = (ref + cur) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = lambda a: np.sum(np.where(a > 0, a * np.log2(a / m), 0.0))  # noqa: E731
        return math.sqrt(max(0.5 * (kl(ref) + kl(cur)), 0.0))
