"""Daily monitoring on four axes — data drift, prediction drift, performance, cost — against a reference
stored when the model was trained, so a day's cost depends on the day's rows, not on the training data.

The reference (`MonitoringReference`, reference.py) is the model version's own, loaded from the registry:
the drift profile (with the model's permutation importances as feature weights), a calibrator fitted on the
validation days (so label-free performance estimates start from calibrated probabilities), and the baselines
the relative thresholds compare with: validation metrics and cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops_assets.core.monitoring.drift_profile import ReferenceProfile
from mlops_assets.core.monitoring.performance_estimation import estimate_performance, realised_performance
from mlops_assets.core.monitoring.reference import MonitoringReference
from mlops_assets.core.monitoring.status import status_for
from mlops_assets.core.config.spec import DatasetSpec, MonitoringPolicy


def build_reference(spec: DatasetSpec, pipeline, train_frame: pd.DataFrame, validation_frame: pd.DataFrame,
                    latency_ms_per_1k: float) -> MonitoringReference:
    """The monitoring reference of one model version (see reference.py), at the spec's decision threshold."""
    return MonitoringReference.fit(spec, pipeline, train_frame, validation_frame, latency_ms_per_1k=latency_ms_per_1k,
                                   decision_threshold=spec.deployment.decision_threshold)


def profile_of(reference: MonitoringReference) -> ReferenceProfile:
    return reference.profile


# ------------------------------------------------------------------------------------------- performance


@dataclass
class PerformanceDay:
    key_metric: str
    baseline: float
    estimated: float | None  # label-free (classification)
    realised: float | None  # once labels have landed
    label_coverage: float
    drop: float  # baseline - best available figure (realised if any, else estimated); positive = worse
    status: str
    details: dict

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def performance_day(spec: DatasetSpec, reference: MonitoringReference, scores: np.ndarray, labels: np.ndarray | None,
                    n_rows: int, policy: MonitoringPolicy) -> PerformanceDay:
    """Realised metrics where labels exist, a confidence-based estimate before they do (classification); both
    decide at the spec's [deployment] decision_threshold, as serving does."""
    key = "accuracy_at_threshold" if spec.is_classification else "rmse"
    threshold = spec.deployment.decision_threshold
    baseline = reference.baseline_metric(key)
    details: dict = {}
    estimated = realised = None
    if spec.is_classification and reference.calibrator is not None and len(scores):
        probabilities = reference.calibrator(scores)
        estimate = estimate_performance(probabilities, threshold, scores=scores)
        estimated = estimate.accuracy
        details["estimated"] = estimate.to_dict()
    if labels is not None and len(labels):
        if spec.is_classification:
            actual = realised_performance(scores, labels, threshold)
            realised = actual.accuracy
            details["realised"] = actual.to_dict()
        else:
            realised = float(np.sqrt(np.mean((scores - labels) ** 2)))
            details["realised"] = {"rmse": realised}
    figure = realised if realised is not None else estimated
    if figure is None or math.isnan(baseline):
        drop = 0.0
    else:
        drop = (baseline - figure) if spec.is_classification else (figure - baseline) / max(baseline, 1e-9)
    status = status_for(drop, policy.warn_performance_drop, policy.error_performance_drop)
    coverage = (len(labels) / n_rows) if labels is not None and n_rows else 0.0
    return PerformanceDay(key, baseline, estimated, realised, coverage, float(drop), status, details)


# ----------------------------------------------------------------------------------------------- cost


BASELINE_DAYS = 3  # a champion's first served days set its own cost baseline


def cost_day(reference: MonitoringReference, today: dict, history: list[dict], retrains: int, retrain_seconds: float,
             policy: MonitoringPolicy) -> dict:
    """Scoring cost per 1,000 predictions against the same champion's first served days (same code path,
    same machine), plus model size and retraining so far. `today`/`history` are scoring stats
    ({rows, cpu_seconds, wall_seconds}); history is the champion's earlier days, oldest first."""
    def per_1k(stats, key):
        return 1000.0 * stats[key] / stats["rows"] if stats["rows"] else 0.0

    wall, cpu = per_1k(today, "wall_seconds"), per_1k(today, "cpu_seconds")
    earlier = [per_1k(s, "wall_seconds") for s in history[:BASELINE_DAYS] if s["rows"]]
    baseline = float(np.median(earlier)) if earlier else None
    ratio = wall / baseline if baseline else 1.0
    status = status_for(ratio, policy.warn_cost_ratio, policy.error_cost_ratio)
    return {
        "cpu_seconds_per_1k": cpu, "wall_seconds_per_1k": wall,
        "baseline_wall_seconds_per_1k": baseline, "baseline_days": len(earlier),
        "wall_ratio_to_baseline": ratio, "benchmark_latency_ms_per_1k": reference.cost.latency_ms_per_1k,
        "model_bytes": reference.cost.artifact_bytes, "retrains_to_date": retrains,
        "retrain_seconds_to_date": retrain_seconds, "status": status, "rows": today["rows"],
    }
