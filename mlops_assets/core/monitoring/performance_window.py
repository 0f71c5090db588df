"""Performance over a trailing window of days, judged against limits from the reference's own variability.

A day of 24 rows says almost nothing about accuracy; a window does. The window ends on the reported day and
reaches back, whole day by whole day, until it holds `performance_min_rows` rows or spans
`performance_max_days` calendar days, so a report reads at most that many days however long the history.
The realised figure is taken on the window's labelled rows; the label-free estimate (classification) on all
of them, less the bias measured on held-out rows when the reference was fitted
(`PerformanceReference.bias_correction`). The realised figure decides once any labels are in; before, the
estimate does. Limits: `PerformanceReference.limits` (chunk spread at the
window's row count, or the sampling interval).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec, MonitoringPolicy
from mlops_assets.core.io.json_safe import json_safe
from mlops_assets.core.monitoring import performance_metrics as pm
from mlops_assets.core.monitoring.performance_estimation import estimate_performance, realised_performance
from mlops_assets.core.monitoring.performance_reference import Limits, sampling_limits
from mlops_assets.core.monitoring.reference import MonitoringReference
from mlops_assets.core.monitoring.status import status_for

WINDOW_COLUMNS = ("day", "score", "label")  # label NaN: not landed (yet)


def collect_window(day: str, read_day: Callable[[str], pd.DataFrame | None], policy: MonitoringPolicy) -> pd.DataFrame:
    """The window's rows (WINDOW_COLUMNS), newest day first: `read_day(d)` gives day d's monitored rows with
    `score` and `label` (NaN where missing), or None when nothing was served that day (the day still counts
    toward the cap: the cap is in calendar days)."""
    frames, total = [], 0
    start = dt.date.fromisoformat(day)
    for back in range(policy.performance_max_days):
        key = (start - dt.timedelta(days=back)).isoformat()
        rows = read_day(key)
        if rows is None or rows.empty:
            continue
        frames.append(pd.DataFrame({"day": key, "score": rows["score"].to_numpy(np.float64),
                                    "label": rows["label"].to_numpy(np.float64)}))
        total += len(rows)
        if total >= policy.performance_min_rows:
            break
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(WINDOW_COLUMNS))


@dataclass
class PerformanceReport:
    metric: str
    higher_is_better: bool
    window_first_day: str | None
    window_last_day: str | None
    window_days: int  # days with rows in the window
    window_rows: int
    labelled_rows: int
    label_coverage: float
    realised: float | None
    estimated: float | None  # the label-free figure as computed
    estimate_bias: float | None  # measured when the reference was fitted (on held-out blocks)
    judged: str | None  # "realised", "estimated" or None (nothing to judge)
    value: float | None  # the figure judged (estimated less its bias when judged is "estimated")
    reference_level: float | None
    limit_std: float | None
    warn_limit: float | None
    error_limit: float | None
    limits_source: str
    worse_by: float  # how far the judged figure is on the worse side of the reference level (negative: better)
    status: str
    message: str
    baseline: float | None = None  # the version's validation figure of the metric, for comparison
    details: dict = field(default_factory=dict)
    # the bias's 95 % interval across the held-out blocks it was measured on, e.g. "-0.031 .. +0.012 (5 blocks)"
    estimate_bias_interval: str | None = None
    estimate_correction: float = 0.0  # what was subtracted from the estimate (the measured bias)

    @property
    def drop(self) -> float:  # the name the detection benchmark reads
        return self.worse_by

    def to_dict(self) -> dict:
        return json_safe({k: getattr(self, k) for k in self.__dataclass_fields__})


def judge_performance(spec: DatasetSpec, reference: MonitoringReference, window: pd.DataFrame,
                      policy: MonitoringPolicy) -> PerformanceReport:
    """The window's realised and estimated figures of the monitored metric, judged against the reference."""
    metric, threshold = pm.monitored_metric(spec), spec.deployment.decision_threshold
    up_is_good = pm.higher_is_better(metric)
    scores = window["score"].to_numpy(np.float64)
    labels = window["label"].to_numpy(np.float64)
    labelled = ~np.isnan(labels)
    details: dict = {}
    realised = estimated = corrected = None
    if labelled.any():
        realised = _finite_or_none(pm.realised_metric(metric, scores[labelled], labels[labelled], threshold))
        if spec.is_classification:
            details["realised"] = realised_performance(scores[labelled], labels[labelled], threshold).to_dict()
    perf_ref = reference.performance
    bias = perf_ref.estimate_bias if perf_ref is not None else math.nan
    correction = perf_ref.bias_correction if perf_ref is not None else 0.0
    if spec.is_classification and reference.calibrator is not None and len(scores):
        probabilities = reference.calibrator(scores)
        estimated = _finite_or_none(pm.estimated_metric(metric, probabilities, scores, threshold))
        details["estimated"] = estimate_performance(probabilities, threshold, scores=scores).to_dict()
        if estimated is not None:
            corrected = estimated - correction
    judged, value, n = (("realised", realised, int(labelled.sum())) if realised is not None
                        else ("estimated", corrected, len(scores)) if corrected is not None else (None, None, 0))
    limits = _limits(spec, reference, metric, window, labelled, judged, n, policy)
    baseline = reference.baseline_metric("accuracy_at_threshold" if metric == "accuracy" else metric)
    worse_by, status = 0.0, "OK"
    if value is not None and limits is not None and math.isfinite(limits.std):
        worse_by = (limits.center - value) if up_is_good else (value - limits.center)
        status = status_for(value, limits.warn, limits.error, higher_is_worse=not up_is_good)
    days = sorted(window["day"].unique()) if len(window) else []
    report = PerformanceReport(
        metric=metric, higher_is_better=up_is_good, window_first_day=days[0] if days else None,
        window_last_day=days[-1] if days else None, window_days=len(days), window_rows=len(window),
        labelled_rows=int(labelled.sum()), label_coverage=float(labelled.mean()) if len(window) else 0.0,
        realised=realised, estimated=estimated, estimate_bias=bias if math.isfinite(bias) else None, judged=judged,
        value=value, reference_level=limits.center if limits else None, limit_std=limits.std if limits else None,
        warn_limit=limits.warn if limits else None, error_limit=limits.error if limits else None,
        limits_source=limits.source if limits else "no figure to judge", worse_by=float(worse_by), status=status,
        message="", baseline=_finite_or_none(baseline), details=details,
        estimate_bias_interval=_bias_interval(perf_ref) if spec.is_classification else None,
        estimate_correction=correction if corrected is not None else 0.0)
    report.message = describe(report)
    return report


def _limits(spec, reference, metric, window, labelled, judged, n, policy) -> Limits | None:
    if judged is None:
        return None
    if reference.performance is not None:
        judged_days = window["day"][labelled] if judged == "realised" else window["day"]
        return reference.performance.limits(n, policy.performance_warn_std, policy.performance_error_std,
                                            n_days=int(judged_days.nunique()))
    # A format-1 reference stored no spread: the validation baseline, and the window's own sampling interval.
    center = reference.baseline_metric("accuracy_at_threshold" if metric == "accuracy" else metric)
    threshold = spec.deployment.decision_threshold
    s, y = window["score"].to_numpy(np.float64), window["label"].to_numpy(np.float64)
    if judged == "realised":
        s, y = s[labelled], y[labelled]
        figure = lambda i: pm.realised_metric(metric, s[i], y[i], threshold)  # noqa: E731
    else:
        p = reference.calibrator(s)  # the estimate's own sampling std: narrower than the realised one's
        figure = lambda i: pm.estimated_metric(metric, p[i], s[i], threshold)  # noqa: E731
    unit = pm.sampling_unit_std(figure, len(s), seed=spec.training.seed)
    return sampling_limits(metric, center, unit, n, policy.performance_warn_std, policy.performance_error_std,
                           "format-1 reference: no chunk spread stored; retrain for limits from the reference")


def describe(report: PerformanceReport) -> str:
    """One line a person reads: what was measured over what, against what, and whether that is worse."""
    if report.judged is None:
        return f"{report.metric}: no rows to judge in the window"
    if report.window_first_day != report.window_last_day:
        span = f"{report.window_first_day}..{report.window_last_day}"
    else:
        span = report.window_last_day
    rows = report.labelled_rows if report.judged == "realised" else report.window_rows
    head = (f"{report.metric} {report.judged} {report.value:.4f} over {rows} rows of {report.window_days} "
            f"day(s) ({span})")
    if report.reference_level is None or report.limit_std is None or not math.isfinite(report.limit_std):
        return f"{head}; no limits (the reference has no level for {report.metric})"
    moved = "down" if report.value < report.reference_level else "up"
    verdict = "worse" if report.worse_by > 0 else "better" if report.worse_by < 0 else "level"
    limit = {"ERROR": report.error_limit, "WARN": report.warn_limit}.get(report.status, report.warn_limit)
    where = "beyond" if report.status != "OK" else "within"
    return (f"{head}: {moved} {abs(report.value - report.reference_level):.4f} ({verdict}) from the reference "
            f"level {report.reference_level:.4f}, {where} the {report.status if report.status != 'OK' else 'WARN'} "
            f"limit {limit:.4f}")


def _bias_interval(perf_ref) -> str | None:
    interval = perf_ref.estimate_bias_interval() if perf_ref is not None else None
    return None if interval is None else f"{interval[0]:+.3f} .. {interval[1]:+.3f} ({perf_ref.bias_blocks} blocks)"


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None
