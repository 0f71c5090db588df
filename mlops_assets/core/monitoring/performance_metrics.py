"""The figure performance monitoring follows, its direction, and how rows are grouped into windows.

One metric per model: the spec's key metric when monitoring can both measure it on labelled rows and estimate
it without labels (classification: ROC AUC, accuracy or F1, which confidence-based estimation covers), else
ROC AUC; for regression the key metric itself (MAE, RMSE or R²; no label-free estimate). The same window rule
groups served days (monitoring) and reference days (the limits' chunks), so both are judged at the same size.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.evaluation.report import HIGHER_IS_BETTER
from mlops_assets.core.monitoring.performance_estimation import estimate_performance, realised_performance

ESTIMABLE = ("roc_auc", "accuracy", "f1")  # classification figures both realised and estimated here
REGRESSION = ("mae", "rmse", "r2")
BOOTSTRAP_ROWS = 20_000  # the sampling std scales as 1/sqrt(n): a subsample this size measures it well enough
BOOTSTRAP_RESAMPLES = 40


def monitored_metric(spec: DatasetSpec) -> str:
    if spec.is_classification:
        return spec.key_metric if spec.key_metric in ESTIMABLE else "roc_auc"
    return spec.key_metric if spec.key_metric in REGRESSION else "rmse"


def higher_is_better(metric: str) -> bool:
    return HIGHER_IS_BETTER[metric]


def realised_metric(metric: str, scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """The metric on labelled rows (NaN with no rows, or AUC with one class)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if not len(scores):
        return math.nan
    if metric in ESTIMABLE:
        return float(getattr(realised_performance(scores, labels, threshold), metric))
    err = scores - labels
    if metric == "mae":
        return float(np.mean(np.abs(err)))
    if metric == "rmse":
        return float(np.sqrt(np.mean(err ** 2)))
    total = float(np.sum((labels - labels.mean()) ** 2))
    return 1.0 - float(np.sum(err ** 2)) / total if total > 0 else math.nan


def estimated_metric(metric: str, probabilities: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """The label-free (CBPE) figure from calibrated probabilities; NaN for metrics it does not cover."""
    if metric not in ESTIMABLE or not len(scores):
        return math.nan
    return float(getattr(estimate_performance(probabilities, threshold, scores=scores), metric))


def sampling_unit_std(figure: Callable[[np.ndarray], float], n_rows: int, seed: int = 0) -> float:
    """std of a metric over n rows resampled with replacement, times sqrt(n): the std at m rows is this over
    sqrt(m). `figure(index)` computes the metric on the rows `index`; at most BOOTSTRAP_ROWS are resampled."""
    if n_rows < 2:
        return math.nan
    rng = np.random.default_rng(seed)
    size = min(n_rows, BOOTSTRAP_ROWS)
    values = [figure(rng.integers(0, n_rows, size)) for _ in range(BOOTSTRAP_RESAMPLES)]
    values = [v for v in values if not math.isnan(v)]
    return float(np.std(values, ddof=1) * math.sqrt(size)) if len(values) > 2 else math.nan


def disjoint_chunks(rows: Sequence[int], min_rows: int, max_days: int) -> list[list[int]]:
    """Consecutive days cut into non-overlapping chunks by the window rule (newest first, so the newest
    chunk is a full window; a short oldest remainder is dropped): NannyML's chunks, at the window's size."""
    chunks, i = [], len(rows) - 1
    while i >= 0:
        window, total = [], 0
        while i >= 0 and len(window) < max_days and total < min_rows:
            window.append(i)
            total += rows[i]
            i -= 1
        if total >= min_rows or len(window) == max_days:
            chunks.append(sorted(window))
    return chunks[::-1]
