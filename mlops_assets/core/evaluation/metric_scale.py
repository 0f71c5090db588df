"""How much worse one model is than another on a metric: orientation and scale in one place, with its interval.

A *drop* is oriented so that positive means "the new model is worse", whichever way the metric points.
- Bounded scores (roc_auc, accuracy, f1, brier, ece, r2 ≤ 1) compare in absolute units: a drop of 0.02 AUC means
  the same on any dataset.
- Unbounded error metrics (mae, rmse, log_loss) carry the target's units, so a fixed allowance would be huge for
  one target and nothing for another: their drop is relative to the old model's value (0.05 = 5 % more error).

`paired_drop` gives the drop's point estimate and paired bootstrap interval on the same rows (reusing
`paired_bootstrap`). A relative drop is bootstrapped as the log of the metric, whose difference is the log of
the ratio, so the percentile interval maps exactly onto ratio - 1.

Rows of one day are rarely independent (Elec2's half-hours follow one another; a day's mix shifts all its rows
together): a row bootstrap then gives intervals that are too narrow. Given each row's timestamp, the bootstrap
resamples whole days when there are MIN_BLOCK_DAYS of them, else contiguous runs of rows in time within each day
(about n^(1/3) rows: the usual block length for a block bootstrap), and `resampling` says which was used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from mlops_assets.core.features.engineering import as_category_strings
from mlops_assets.core.evaluation.report import CI_LEVEL, HIGHER_IS_BETTER, metric_function, paired_bootstrap

RELATIVE_METRICS = frozenset({"mae", "rmse", "log_loss"})  # unbounded, in the target's (or nats') units
# A rate measured on n rows resolves differences no finer than about 3/n (the rule of three: an event never seen
# in n rows may still occur at a rate up to 3/n, at 95 %). A bootstrap on a handful of rows where both models are
# right everywhere gives the interval [0, 0]; widening bounded drops to ±3/n keeps that from passing as proof.
RESOLUTION_EVENTS = 3.0
_TINY = 1e-300  # a zero error's log: keeps a perfect model comparable instead of -inf
# Days below which resampling days says little about the spread (a percentile interval from a handful of blocks
# is itself a guess): contiguous time blocks within days are resampled instead.
MIN_BLOCK_DAYS = 10


def time_blocks(timestamps) -> tuple[list[np.ndarray], str]:
    """Row indices per bootstrap block, and the scheme in words: whole days when there are MIN_BLOCK_DAYS of
    them, else runs of about n^(1/3) consecutive rows (by time) within each day."""
    ts = pd.to_datetime(pd.Series(np.asarray(timestamps)), utc=True).reset_index(drop=True)
    if ts.isna().any():
        raise ValueError("block bootstrap: every row needs a timestamp")
    days = ts.dt.strftime("%Y-%m-%d").to_numpy()
    order = np.lexsort((ts.to_numpy(), days))  # by day, then time within the day
    day_names, starts = np.unique(days[order], return_index=True)
    by_day = np.split(order, starts[1:])
    if len(day_names) >= MIN_BLOCK_DAYS:
        return by_day, f"days ({len(day_names)} resampled whole)"
    length = max(1, round(len(ts) ** (1 / 3)))
    blocks = [chunk for rows in by_day for chunk in np.array_split(rows, max(1, math.ceil(len(rows) / length)))]
    return blocks, (f"runs of ~{length} consecutive rows within each day ({len(blocks)} blocks): "
                    f"{len(day_names)} day(s), fewer than {MIN_BLOCK_DAYS} to resample whole days")


def is_relative(metric: str) -> bool:
    return metric in RELATIVE_METRICS


def drop_of(metric: str, new: float, old: float) -> float:
    """How much worse `new` is than `old` (positive = worse): absolute for bounded scores, relative to `old`
    for error metrics."""
    if is_relative(metric):
        return (new - old) / old if old > 0 else (math.inf if new > old else 0.0)
    return (old - new) if HIGHER_IS_BETTER[metric] else (new - old)


def drop_units(metric: str) -> str:
    return "relative to the champion's value" if is_relative(metric) else "absolute"


@dataclass(frozen=True)
class DropInterval:
    metric: str
    new_value: float  # the metric of the new model (candidate, canary) on the rows
    old_value: float  # the metric of the model it is compared with
    estimate: float  # drop_of(metric, new_value, old_value)
    low: float
    high: float
    rows: int
    level: float
    relative: bool
    undefined_resamples: int = 0
    resampling: str = "rows"  # what the bootstrap resampled: rows, days, or runs of rows in time

    def beyond(self, limit: float) -> bool:
        """The whole interval lies beyond the allowed drop: worse beyond the noise."""
        return self.low > limit

    def within(self, limit: float) -> bool:
        """The whole interval lies within the allowed drop: shown to be no worse than allowed."""
        return self.high <= limit

    def rows_needed(self, limit: float) -> int | None:
        """Rows for the interval (its width shrinking as 1/sqrt(rows)) to clear `limit` on the estimate's side;
        None when the estimate sits on the limit (no sample size decides it)."""
        return rows_to_clear(self.estimate, self.low, self.high, limit, self.rows)

    def describe(self) -> str:
        unit = " (relative)" if self.relative else ""
        return (f"{self.metric} {self.new_value:.4f} vs {self.old_value:.4f}: drop{unit} {self.estimate:+.4f} "
                f"({self.level:.0%} CI {self.low:+.4f} .. {self.high:+.4f}, {self.rows} rows; "
                f"resampled {self.resampling})")


def rows_to_clear(estimate: float, low: float, high: float, limit: float, rows: int) -> int | None:
    """Rows at which an interval around `estimate` (half-widths shrinking as 1/sqrt(rows)) no longer straddles
    `limit`; None when the estimate is on the limit or a bound is not finite."""
    if not all(math.isfinite(v) for v in (estimate, low, high)) or estimate == limit or rows <= 0:
        return None
    half = (high - estimate) if estimate < limit else (estimate - low)
    gap = abs(limit - estimate)
    return max(rows, math.ceil(rows * (half / gap) ** 2 - 1e-9))  # - 1e-9: float noise is no extra row


def paired_drop(metric: str, task: str, y, new_scores, old_scores, *, threshold: float, n_samples: int,
                seed: int, level: float = CI_LEVEL, timestamps=None) -> DropInterval:
    """The drop of `new_scores` against `old_scores` on the same labelled rows, with its paired bootstrap
    interval (NaN bounds when the metric is undefined on every resample). With the rows' `timestamps`, a block
    bootstrap (see `time_blocks`); without, rows are resampled as if independent."""
    y, new, old = np.asarray(y, dtype=float), np.asarray(new_scores, dtype=float), np.asarray(old_scores, dtype=float)
    base = metric_function(task, metric, threshold=threshold)
    new_value, old_value = float(base(y, new)), float(base(y, old))
    relative = is_relative(metric)
    blocks, resampling = time_blocks(timestamps) if timestamps is not None and len(y) else (None, "rows")
    if relative:
        boot = paired_bootstrap(y, new, old, lambda yy, ss: math.log(max(base(yy, ss), _TINY)), n_samples, seed,
                                level=level, name=metric, blocks=blocks)
        low, high = (math.expm1(v) for v in boot.difference_ci)
    else:
        boot = paired_bootstrap(y, new, old, base, n_samples, seed, level=level, name=metric, blocks=blocks)
        sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0  # drop = old - new for a higher-is-better score
        low, high = sorted(sign * v for v in boot.difference_ci)
    estimate = drop_of(metric, new_value, old_value)
    if not relative and math.isfinite(estimate) and len(y):
        resolution = RESOLUTION_EVENTS / len(y)
        low, high = min(low, estimate - resolution), max(high, estimate + resolution)
    return DropInterval(metric, new_value, old_value, estimate, low, high, len(y), level, relative, boot.n_undefined,
                        resampling)


def slice_drop_intervals(spec, frame, y, new_scores, old_scores, metric: str, *, n_samples: int,
                         seed: int) -> dict[str, dict[str, dict]]:
    """Per slice of the spec's slice columns: the drop of `new_scores` against `old_scores` on that slice's rows,
    with its paired bootstrap interval, as plain dicts (slice column -> value -> DropInterval fields)."""
    y, new, old = np.asarray(y), np.asarray(new_scores), np.asarray(old_scores)
    # rows of a slice are resampled in blocks of time too (a weekday slice is one day of autocorrelated rows)
    stamps = frame[spec.timestamp].to_numpy() if spec.timestamp in frame.columns else None
    out: dict[str, dict[str, dict]] = {}
    for col in spec.slices:
        values = as_category_strings(frame[col].reset_index(drop=True)).fillna("<missing>").to_numpy()
        out[col] = {}
        for value in sorted(set(values)):
            m = values == value
            drop = paired_drop(metric, spec.task, y[m], new[m], old[m], threshold=spec.deployment.decision_threshold,
                               n_samples=n_samples, seed=seed, timestamps=stamps[m] if stamps is not None else None)
            out[col][str(value)] = asdict(drop)
    return out
