"""Data and prediction drift of a day's rows against a reference profile stored with the model.

The test depends on the type and the size of the current sample:
- numeric, current rows <= the profile's stored sample: exact two-sample KS against that sorted sample;
- numeric, more rows: KS on the binned CDFs against the full reference (a lower bound of the exact
  statistic, so the test is conservative), the p-value from the reference's and the batch's sizes;
- categorical: chi-square on the reference-vs-current table over the spec's categories, "other", "missing".
A feature drifts when its test is significant after Benjamini-Hochberg across features AND its effect size
exceeds its floor: Wasserstein distance in reference standard deviations for numeric features,
Jensen-Shannon distance (base 2, in [0, 1]) for categorical ones (Evidently's conventions). PSI is reported
alongside, for people used to it.

The floor is how far the reference's own single days sit from the rest of it (measured when the profile was
fitted, drift_floors.py), so a day of strongly autocorrelated rows is judged against ordinary days, not
against random rows; never below `drift_min_effect`, so a million quiet rows do not alarm on a shift nobody
cares about. A feature constant in the reference has `constant_min_effect` (relative to its value); the
spec's `drift_floors` overrides a feature's floor by name.

Status: ERROR when the drifting monitored features carry at least `error_drift_share` of the importance
weight on this day, and one of those features also drifted on one of the CONFIRM_DAYS previous days with rows
(the model leans on what moved, and it had already moved: retrain); otherwise WARN as soon as any monitored
feature drifts, even one the model ignores (what it ignores today may matter to the next model, or reveal a
broken pipeline). An ERROR-level day whose features were quiet before is a WARN that says so: an ERROR
requests a retrain, and a retrain on one atypical day (Elec2's 1997-01-22: nswprice 2.41 against its floor of
2.37, the days before quiet) learns that day rather than a new world. Asking for the same features rather
than ERROR-level weight twice keeps a real shift whose weight flickers around error_drift_share from waiting
(a synthetic prior shift: ERROR 10-25 days after the onset the other way). The earlier days are judged
against the same profile (`confirm_drift`), so the verdict does not depend on which report was computed first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from mlops_assets.core.monitoring.drift_floors import jensen_shannon
from mlops_assets.core.monitoring.drift_profile import (CategoricalProfile, NumericProfile, ReferenceProfile,
                                                      category_counts, numeric_values)
from mlops_assets.core.config.spec import MonitoringPolicy
from mlops_assets.core.io.json_safe import json_safe

_PSI_FLOOR = 1e-4  # keeps PSI finite when a bin is empty on one side
CONFIRM_DAYS = 2  # an ERROR-level day needs one of its features drifting on one of this many previous days


def benjamini_hochberg(p_values) -> np.ndarray:
    """BH-adjusted p-values (reject where adjusted <= alpha controls the FDR at alpha); NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    if len(valid):
        order = valid[np.argsort(p[valid], kind="stable")]
        ranked = p[order] * len(valid) / np.arange(1, len(valid) + 1)
        out[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return out


@dataclass
class FeatureDrift:
    feature: str
    kind: str
    test: str  # "ks", "binned_ks", "chi2" or "none" (no rows to test)
    statistic: float
    p_value: float
    p_adjusted: float
    effect_name: str  # "wasserstein_std" or "jensen_shannon"
    effect_size: float
    psi: float
    drifted: bool
    weight: float
    n_current: int
    null_share_reference: float
    null_share_current: float
    mean_reference: float | None = None
    mean_current: float | None = None
    floor: float = math.nan  # the effect above which this feature drifts
    floor_source: str = ""  # where the floor came from (FLOOR_SOURCES)
    monitored: bool = True  # False: reported, never counted in the status

    def to_dict(self) -> dict:
        return json_safe(asdict(self))


def _divergences(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """(PSI, Jensen-Shannon distance in base 2) between two proportion vectors."""
    p, q = np.maximum(ref, _PSI_FLOOR), np.maximum(cur, _PSI_FLOOR)
    psi = float(np.sum((q - p) * np.log(q / p)))
    return psi, jensen_shannon(ref, cur)


FLOOR_SOURCES = {
    "day_spread": "the reference's day-to-day spread (drift_floors.FLOOR_MARGIN x its FLOOR_QUANTILE)",
    "chunk_spread": "the spread of contiguous chunks of the reference (too few days to measure days)",
    "minimum": "monitoring.drift_min_effect: the reference's spread is below it",
    "constant": "monitoring.constant_min_effect, relative to the reference's constant value",
    "spec": "monitoring.drift_floors in the spec",
    "policy": "monitoring.drift_min_effect: no spread measured (too few rows, or a profile older than floors)",
}


def drift_floor(prof, policy: MonitoringPolicy) -> tuple[float, str]:
    """The floor of one profiled feature (or of the scores) and its source, a key of FLOOR_SOURCES."""
    if prof.name in policy.drift_floors:
        return float(policy.drift_floors[prof.name]), "spec"
    if prof.is_constant:
        return policy.constant_min_effect, "constant"
    if prof.spread is None:
        return policy.drift_min_effect, "policy"
    if prof.spread.floor < policy.drift_min_effect:
        return policy.drift_min_effect, "minimum"
    return prof.spread.floor, f"{prof.spread.unit}_spread"


def _numeric_drift(prof: NumericProfile, values: np.ndarray) -> FeatureDrift:
    scan = prof.scan(values)
    counts = prof.to_bins(scan.cells)
    n, n_nan, mean = int(counts.sum()), scan.n_nan, scan.mean
    ref = np.asarray(prof.proportions)
    null_share = n_nan / len(values) if len(values) else math.nan
    drift = FeatureDrift(prof.name, "numeric", "none", math.nan, math.nan, math.nan, "wasserstein_std", math.nan,
                         math.nan, False, 0.0, n, prof.null_share, null_share, prof.mean, mean)
    if n == 0 or prof.count == 0:
        return drift
    cur = counts / n
    constant = prof.is_constant
    scale = (abs(prof.mean) or 1.0) if constant else prof.std  # a constant reference: relative to its value
    drift.psi, _ = _divergences(ref, cur)
    if n <= len(prof.sample):  # small batch: exact KS against the stored sorted sample
        # (evenly spaced order statistics vary less than the m random draws the test assumes: p errs large)
        x = values[np.isfinite(values)]
        sample = np.asarray(prof.sample)
        res = stats.ks_2samp(x, sample)
        drift.test, drift.statistic, drift.p_value = "ks", float(res.statistic), float(res.pvalue)
        drift.effect_size = float(stats.wasserstein_distance(x, sample)) / scale if len(x) else math.nan
        return drift
    gap = np.concatenate([[0.0], np.cumsum(ref - cur)[:-1], [0.0]])  # CDF difference at each bin edge
    d = float(np.abs(gap).max())
    en = n * prof.count / (n + prof.count)
    p = float(stats.kstwobign.sf(d * (math.sqrt(en) + 0.12 + 0.11 / math.sqrt(en))))  # Stephens (1970)
    # Wasserstein distance = the integral of |F_ref - F_cur|: summed over the grid's cells, plus the parts
    # beyond either end of the grid from the mean overshoots (exact unless the CDFs cross out there).
    lo, hi, n_cells = prof.grid
    current_cdf = np.concatenate([[0.0], np.cumsum(scan.cells)]) / n
    w = float(np.abs(prof.cell_cdf() - current_cdf).sum()) * (hi - lo) / n_cells
    if mean is not None:
        w += abs(scan.below - prof.tails[0]) + abs(scan.above - prof.tails[1])
        w = max(w, abs(mean - prof.mean))  # a lower bound too
    # a plain float, as the exact path gives: the report's metadata cannot serialise numpy.float64 (the
    # scan's mean and tails are numpy scalars), and only batches above the stored sample take this path
    drift.test, drift.statistic, drift.p_value, drift.effect_size = "binned_ks", d, p, float(w / scale)
    return drift


def _categorical_drift(prof: CategoricalProfile, column: pd.Series) -> FeatureDrift:
    counts = category_counts(column, prof.categories)
    n = int(counts.sum())
    ref = np.asarray(prof.proportions)
    drift = FeatureDrift(prof.name, "categorical", "none", math.nan, math.nan, math.nan, "jensen_shannon",
                         math.nan, math.nan, False, 0.0, n, float(ref[-1]),
                         counts[-1] / n if n else math.nan)
    if n == 0 or prof.count == 0:
        return drift
    cur = counts / n
    drift.psi, drift.effect_size = _divergences(ref, cur)
    table = np.vstack([ref * prof.count, counts.astype(float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        stat, p = 0.0, 1.0
    else:
        expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
        stat = float(np.sum((table - expected) ** 2 / expected))
        p = float(stats.chi2.sf(stat, table.shape[1] - 1))
    drift.test, drift.statistic, drift.p_value = "chi2", stat, p
    return drift


def _feature_drift(prof, column: pd.Series) -> FeatureDrift:
    if prof.kind == "numeric":
        return _numeric_drift(prof, numeric_values(column))
    return _categorical_drift(prof, column)


@dataclass
class DriftReport:
    features: list[FeatureDrift]
    drift_share: float  # importance weight carried by the drifting monitored features
    status: str  # "OK", "WARN" or "ERROR"
    n_rows: int
    policy: MonitoringPolicy
    reason: str = ""  # why the status is what it is, in one sentence
    day_status: str = ""  # this day's own verdict before the previous day is consulted (`confirm_drift`)
    previous_day: str | None = None  # the earlier day that confirmed or did not confirm an ERROR-level day
    previous_drift_share: float | None = None

    @property
    def drifted_features(self) -> list[str]:
        """Monitored features drifting beyond their floors: what the status counts."""
        return [f.feature for f in self.features if f.drifted and f.monitored]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(f) for f in self.features])

    def to_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "drift_share": self.drift_share,
                "n_rows": self.n_rows, "drifted_features": self.drifted_features,
                "drift_alpha": self.policy.drift_alpha, "error_drift_share": self.policy.error_drift_share,
                "day_status": self.day_status or self.status, "previous_day": self.previous_day,
                "previous_drift_share": self.previous_drift_share,
                "features": [f.to_dict() for f in self.features]}


def drift_status(share: float, policy: MonitoringPolicy, any_drifted: bool = False) -> str:
    """ERROR once the drifting features' weight reaches error_drift_share; WARN when any monitored feature
    drifts (`any_drifted`) or carries weight; OK with no drift whatever the threshold, even at 0."""
    if share > 0 and share >= policy.error_drift_share:
        return "ERROR"
    return "WARN" if share > 0 or any_drifted else "OK"


def _status_reason(status: str, share: float, drifted: list[FeatureDrift], policy: MonitoringPolicy) -> str:
    if status == "OK":
        return "no monitored feature drifted beyond its floor"
    names = ", ".join(f"{f.feature} ({f.effect_size:.3g} > {f.floor:.3g}, weight {f.weight:.2f})"
                      for f in sorted(drifted, key=lambda f: -f.weight))
    if status == "ERROR":
        return (f"the drifting features carry {share:.2f} of the importance weight, at least error_drift_share "
                f"{policy.error_drift_share:g}: {names}")
    return (f"drifted beyond their floors, carrying {share:.2f} of the importance weight (ERROR at "
            f"{policy.error_drift_share:g}): {names}")


def drift_report(profile: ReferenceProfile, current: pd.DataFrame, policy: MonitoringPolicy) -> DriftReport:
    """Per-feature drift tests with FDR control across features, and the dataset-level verdict."""
    missing = [p.name for p in profile.features if p.name not in current.columns]
    if missing:
        raise KeyError(f"the current rows lack the profiled features {missing}")
    results = [_feature_drift(p, current[p.name]) for p in profile.features]
    adjusted = benjamini_hochberg([r.p_value for r in results])
    for prof, r, q in zip(profile.features, results, adjusted):
        r.p_adjusted = float(q)
        r.monitored = r.feature not in profile.unmonitored
        r.weight = float(profile.weights.get(r.feature, 0.0)) if r.monitored else 0.0
        r.floor, r.floor_source = drift_floor(prof, policy)
        r.drifted = bool(q <= policy.drift_alpha and r.effect_size > r.floor)
    drifted = [r for r in results if r.drifted and r.monitored]
    share = float(sum(r.weight for r in drifted))
    status = drift_status(share, policy, any_drifted=bool(drifted))
    return DriftReport(results, share, status, len(current), policy, _status_reason(status, share, drifted, policy),
                       day_status=status)


def earlier_days(day: str, available) -> list[str]:
    """The days `confirm_drift` consults: the CONFIRM_DAYS latest of `available` (ISO dates with rows) before
    `day`, newest first, however far back: data delivered weekly or after a gap must still be able to reach
    ERROR, and an earlier delivery still drifting against the same profile is the drift persisting."""
    return sorted((d for d in available if d < day), reverse=True)[:CONFIRM_DAYS]


def earlier_reports(profile: ReferenceProfile, days: list[str], read_day, policy: MonitoringPolicy
                    ) -> list[tuple[str, DriftReport]]:
    """Each of `days` (`read_day(day)` gives its rows) judged against `profile`, for `confirm_drift`. A day that
    cannot be read or judged (a damaged file, a feature table from before the spec gained a column) is left out:
    it confirms nothing, and must not stop today's report."""
    out = []
    for day in days:
        try:
            out.append((day, drift_report(profile, read_day(day), policy)))
        except Exception:  # noqa: BLE001 - any failure of an earlier day only means no confirmation from it
            continue
    return out


def confirm_drift(today: DriftReport, earlier: list[tuple[str, DriftReport]]) -> DriftReport:
    """`today` with its ERROR kept only when one of its drifting features also drifted on one of `earlier` (up
    to CONFIRM_DAYS previous days with rows, newest first, each judged against the same profile): what moved
    today had already moved. Otherwise WARN, saying why. Below ERROR level the earlier days change nothing."""
    if today.day_status != "ERROR":
        return today
    moved = set(today.drifted_features)
    confirming = next(((day, r) for day, r in earlier if moved & set(r.drifted_features)), None)
    if confirming is not None:
        day, report = confirming
        today.previous_day, today.previous_drift_share = day, report.drift_share
        again = ", ".join(sorted(moved & set(report.drifted_features)))
        today.reason += f"; {again} drifted on {day} too: the drift persists"
        return today
    if earlier:
        today.previous_day, today.previous_drift_share = earlier[0][0], earlier[0][1].drift_share
    seen = ", ".join(earlier_day for earlier_day, _ in earlier) or "no earlier day with rows within reach"
    today.status = "WARN"
    today.reason = (f"ERROR-level drift on this day only (none of its drifting features drifted on {seen}): "
                    f"ERROR when they drift again within the next {CONFIRM_DAYS} days with rows; " + today.reason)
    return today


def prediction_drift(profile: ReferenceProfile, scores, policy: MonitoringPolicy | None = None) -> FeatureDrift:
    """The score distribution against the training scores: one test, so no multiple-testing correction."""
    if profile.prediction is None:
        raise ValueError("the reference profile was built without scores")
    policy = policy or MonitoringPolicy()
    result = _numeric_drift(profile.prediction, np.asarray(scores, dtype=np.float64))
    result.p_adjusted, result.weight = result.p_value, 0.0
    result.floor, result.floor_source = drift_floor(profile.prediction, policy)
    result.drifted = bool(result.p_value <= policy.drift_alpha and result.effect_size > result.floor)
    return result
