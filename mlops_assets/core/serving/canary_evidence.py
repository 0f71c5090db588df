"""A canary step's evidence, each guardrail's figure with a confidence interval and the rows it rests on.

- Quality: the realised key metric of canary and champion on the same labelled rows (the canary scores every
  row as a shadow while it serves, so all labelled rows count, not only its share), as the drop's paired
  bootstrap interval (`metric_scale.paired_drop`: absolute for bounded scores, relative for error metrics),
  resampling whole days, or runs of consecutive rows when the window has few days: rows of one day move
  together, and a row bootstrap would pass or roll back on intervals too narrow for the evidence.
- Latency: CPU time per row, canary / champion, from the interleaved timings `score_batch_timed` stored in each
  day's scoring stats; the interval is a bootstrap of the median per-repeat ratio (taken on the log scale).
- Score shift: KS of the canary's live scores against its own training scores. Its interval is the
  Dvoretzky-Kiefer-Wolfowitz band: each empirical CDF lies within sqrt(ln(2/a) / 2k) of the true one, so the
  true distance lies within the sum of both bands around the observed statistic. The band assumes independent
  rows; rows of one day move together, so the live side's k is its effective size, the rows over the design
  effect 1 + (m - 1) ICC of the scores in the same time blocks as the metric's bootstrap (m rows a block).
  Breaching needs the whole band above the limit.

No Dagster here; `advance` in canary.py turns these into a decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops_assets.core.evaluation.metric_scale import DropInterval, paired_drop, rows_to_clear, time_blocks
from mlops_assets.core.evaluation.report import CI_LEVEL, paired_bootstrap
from mlops_assets.core.monitoring.drift import prediction_drift
from mlops_assets.core.monitoring.drift_profile import ReferenceProfile
from mlops_assets.core.serving.scoring import CpuLatency
from mlops_assets.core.serving.shadow import finite_or_none, ks_statistic, paired_rows, task_of, threshold_of

BOOTSTRAP_SAMPLES = 400  # paired resamples per interval: percentile bounds stable to a few hundredths of the width
# Labelled rows the metric's bootstrap uses at most (a seeded sample beyond it): bounds the cost at 5 million rows a
# day, where the interval on this many rows is already far narrower than any sensible allowance.
MAX_BOOTSTRAP_ROWS = 10_000


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval and the sample size behind it."""

    estimate: float
    low: float
    high: float
    rows: int  # observations behind it: scored rows (score shift) or timed repeats (latency)
    level: float = CI_LEVEL
    effective_rows: int | None = None  # score shift: rows worth of independent evidence (None: all of them)

    def describe(self, fmt: str = ".3f", of: str = "rows") -> str:
        worth = (f", worth ~{self.effective_rows} independent" if self.effective_rows is not None
                 and self.effective_rows < self.rows else "")
        return (f"{self.estimate:{fmt}} ({self.level:.0%} CI {self.low:{fmt}} .. {self.high:{fmt}}, "
                f"{self.rows} {of}{worth})")


@dataclass(frozen=True)
class WindowEvidence:
    """The evidence of one step of canary traffic at one share, compared with the champion on the same rows."""

    share: float  # the canary share served during the window
    days: int  # days of traffic in the window
    rows: int  # rows both models scored
    labelled_rows: int = 0  # of those, rows with a label
    metric: DropInterval | None = None  # the key metric's drop, canary vs champion; None: labels not in
    latency_ratio: Interval | None = None  # canary / champion CPU time per row; rows = timed repeats
    score_shift: Interval | None = None  # KS, canary's live scores vs its own training scores
    score_shift_vs_champion: float | None = None  # KS, canary vs champion scores on the same rows (evidence only)
    reference_rows: int = 0  # training rows behind the canary's score reference


def plan_seed(sha256: str) -> int:
    """A bootstrap seed fixed by the plan, so judging the same window twice gives the same interval."""
    return int(sha256[:8], 16) if sha256 else 0


def window_evidence(rows: pd.DataFrame, version: str, champion_version: str, key_metric: str, share: float,
                    labels: pd.DataFrame | None = None, score_reference: ReferenceProfile | None = None,
                    latency: tuple[CpuLatency, ...] = (), *, seed: int = 0) -> WindowEvidence:
    """Evidence from one window's ledger rows: every row the canary scored (acting or as a shadow) paired with the
    champion's score of the same row; `latency` the window's batch timings; `score_reference` the canary's
    monitoring reference profile (without it, score shift is not judged)."""
    canary = rows[rows["model_version"] == version]
    champion = rows[(rows["model_version"] == champion_version) & (rows["route"] != "canary")]
    pairs = paired_rows(canary, champion, labels)
    days = pd.to_datetime(rows["timestamp"]).dt.date.nunique() if len(rows) else 0
    canary_scores = pairs["score_a"].to_numpy(float)
    evidence = dict(share=share, days=int(days), rows=len(pairs), latency_ratio=latency_interval(latency, seed),
                    score_shift_vs_champion=ks_statistic(canary_scores, pairs["score_b"].to_numpy(float)))
    if score_reference is not None and score_reference.prediction is not None and len(pairs):
        evidence["score_shift"] = score_shift_interval(score_reference, canary_scores,
                                                       timestamps=pairs["timestamp"].to_numpy())
        evidence["reference_rows"] = score_reference.prediction.count
    if labels is not None:
        known = pairs[pairs["label"].notna()]
        evidence["labelled_rows"] = len(known)
        if len(known) > MAX_BOOTSTRAP_ROWS:
            known = known.sample(MAX_BOOTSTRAP_ROWS, random_state=seed).sort_index()
        if len(known):
            evidence["metric"] = paired_drop(
                key_metric, task_of(rows), known["label"].to_numpy(float), known["score_a"].to_numpy(float),
                known["score_b"].to_numpy(float), threshold=threshold_of(rows), n_samples=BOOTSTRAP_SAMPLES,
                seed=seed, timestamps=known["timestamp"].to_numpy())
    return WindowEvidence(**evidence)


def latency_interval(timings: tuple[CpuLatency, ...], seed: int = 0, level: float = CI_LEVEL) -> Interval | None:
    """Canary / champion CPU time per row: the median of the paired repeats' ratios with a bootstrap interval,
    taken on the log scale (a ratio of 2 and one of 1/2 are equally far from 1). None without timings."""
    logs = np.array([math.log(c / h) for t in timings for c, h in zip(t.canary_ms_per_1k, t.champion_ms_per_1k)
                     if c > 0 and h > 0])
    if not len(logs):
        return None
    boot = paired_bootstrap(np.zeros(len(logs)), logs, None, lambda _y, x: float(np.median(x)), BOOTSTRAP_SAMPLES,
                            seed, level=level, name="log_cpu_ratio")
    low, high = boot.candidate_ci
    return Interval(math.exp(float(np.median(logs))), math.exp(low), math.exp(high), len(logs), level)


def _dkw_band(rows: int, level: float) -> float:
    """Half-width of the DKW band of an empirical CDF of `rows` values, at half the miss rate (two CDFs)."""
    alpha = (1 - level) / 2
    return math.sqrt(math.log(2 / alpha) / (2 * rows)) if rows else math.inf


def score_shift_interval(reference: ReferenceProfile, live_scores: np.ndarray, level: float = CI_LEVEL,
                         timestamps=None) -> Interval | None:
    """KS of the live scores against the reference's training scores, with the DKW interval of the distance;
    with the rows' `timestamps`, the live band is taken at the effective number of rows (`effective_rows`)."""
    statistic = finite_or_none(prediction_drift(reference, live_scores).statistic)
    if statistic is None:
        return None
    finite = np.isfinite(live_scores)
    n = int(finite.sum())
    effective = n if timestamps is None else effective_rows(live_scores[finite], np.asarray(timestamps)[finite])
    band = _dkw_band(effective, level) + _dkw_band(reference.prediction.count, level)
    return Interval(statistic, max(0.0, statistic - band), min(1.0, statistic + band), n, level,
                    effective_rows=effective if timestamps is not None else None)


def effective_rows(values: np.ndarray, timestamps) -> int:
    """Rows over the design effect 1 + (m - 1) ICC, with m the mean rows per time block (metric_scale.time_blocks)
    and ICC the one-way ANOVA intraclass correlation of `values` across those blocks (0 when negative)."""
    n = len(values)
    if n < 3:
        return n
    blocks, _ = time_blocks(timestamps)
    k = len(blocks)
    if k < 2 or k == n:
        return n
    means = np.array([values[b].mean() for b in blocks])
    sizes = np.array([len(b) for b in blocks], dtype=float)
    between = float(np.sum(sizes * (means - values.mean()) ** 2) / (k - 1))
    within = float(sum(np.sum((values[b] - m) ** 2) for b, m in zip(blocks, means)) / (n - k))
    m0 = (n - float(np.sum(sizes ** 2)) / n) / (k - 1)  # the ANOVA's mean block size for unequal blocks
    icc = (between - within) / (between + (m0 - 1) * within) if between + (m0 - 1) * within > 0 else 0.0
    design_effect = 1.0 + (n / k - 1.0) * max(0.0, icc)
    return max(1, int(n / design_effect))


def score_rows_needed(shift: Interval, limit: float, reference_rows: int) -> int | None:
    """Live rows for the DKW interval to clear `limit` (effective rows scaled back to rows at the same ratio);
    None when the reference's own band alone is too wide, or the statistic sits on the limit."""
    room = abs(limit - shift.estimate) - _dkw_band(reference_rows, shift.level)
    if room <= 0:
        return None
    alpha = (1 - shift.level) / 2
    per_effective = shift.rows / shift.effective_rows if shift.effective_rows else 1.0
    return max(shift.rows, math.ceil(per_effective * math.log(2 / alpha) / (2 * room ** 2)))


def repeats_needed(ratio: Interval, limit: float) -> int | None:
    """Timed repeats for the latency interval to clear `limit` (width shrinking as 1/sqrt(repeats))."""
    return rows_to_clear(math.log(ratio.estimate), math.log(ratio.low), math.log(ratio.high), math.log(limit),
                         ratio.rows)
