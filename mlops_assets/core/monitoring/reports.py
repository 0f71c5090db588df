"""Daily monitoring on four axes — data drift, prediction drift, performance, cost — against a reference
stored when the model was trained, so a day's cost depends on the day's rows, not on the training data.

The reference (`MonitoringReference`, reference.py) is the model version's own, loaded from the registry:
the drift profile (with the model's permutation importances as feature weights), a calibrator fitted on
held-out rows (so label-free performance estimates start from calibrated probabilities), the performance
limits from the reference's own chunk-to-chunk variability (performance_window.py), and the cost baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_assets.core.monitoring.drift_profile import ReferenceProfile
from mlops_assets.core.monitoring.performance_window import (PerformanceReport, collect_window,  # noqa: F401
                                                              judge_performance)
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


def performance_day(spec: DatasetSpec, reference: MonitoringReference, scores: np.ndarray, labels: np.ndarray | None,
                    n_rows: int, policy: MonitoringPolicy) -> PerformanceReport:
    """One day's rows judged as a window of their own (what callers holding a single day have); the daily
    report judges a trailing window (`collect_window` then `judge_performance`)."""
    del n_rows  # the rows are the window
    missing = np.full(len(scores), np.nan)
    window = pd.DataFrame({"day": "day", "score": np.asarray(scores, dtype=np.float64),
                           "label": missing if labels is None else np.asarray(labels, dtype=np.float64)})
    return judge_performance(spec, reference, window, policy)


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
