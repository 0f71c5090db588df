"""The monitoring reference of one model version: what daily monitoring compares a served day with.

Fitted once, when the version is trained (as a NannyML estimator is fitted on its reference period), then
stored beside the model's artifact and recorded with the version in the registry, so each version is
monitored against its own reference (`ModelRegistry.load_reference`). It holds:

- `profile`: the drift profile of the training rows and of the model's scores on them (with each feature's
  day-to-day spread, which sets its drift floor), with the model's permutation importances (on the
  validation rows) as feature weights;
- `performance`: the monitored metric's level and its spread over reference chunks of a monitoring window's
  size, from which performance limits follow, and the label-free estimate's measured bias
  (performance_reference.py);
- `calibrator`: isotonic calibration fitted on held-out rows (validation, plus out-of-fold training days when
  validation is short), so label-free performance estimates start from calibrated probabilities (binary
  classification with both classes among those rows, else None);
- `baseline`: the version's validation metrics (plus accuracy at the decision threshold, classification);
- `cost`: the benchmark scoring latency and the pickled model's size.

`to_dict` / `from_dict` carry `format_version`. Format 1 (before `performance`) is still read, with
`performance` None: monitoring then judges by the sampling interval around the validation baseline and says
so, so an upgrade does not stop the monitoring of versions already serving. Any other format is refused.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.ingestion.volume import VolumeBaseline
from mlops_assets.core.evaluation.report import compute_metrics
from mlops_assets.core.features.engineering import model_input_columns
from mlops_assets.core.monitoring.drift_profile import ReferenceProfile
from mlops_assets.core.monitoring.performance_estimation import Calibrator
from mlops_assets.core.monitoring.performance_reference import PerformanceReference, fit_performance_reference
from mlops_assets.core.training import trainer as training

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # 1: no `performance` (see the module's docstring)


@dataclass(frozen=True)
class CostBaseline:
    """What the cost report shows next to a day's scoring cost."""

    latency_ms_per_1k: float  # benchmark scoring latency on the validation rows when the version was trained
    artifact_bytes: int  # size of the pickled pipeline

    def to_dict(self) -> dict:
        return {"latency_ms_per_1k": self.latency_ms_per_1k, "artifact_bytes": self.artifact_bytes}

    @classmethod
    def from_dict(cls, raw: dict) -> "CostBaseline":
        return cls(float(raw["latency_ms_per_1k"]), int(raw["artifact_bytes"]))


@dataclass(frozen=True)
class MonitoringReference:
    profile: ReferenceProfile
    baseline: dict[str, float]  # validation metrics (compute_metrics), + accuracy_at_threshold (classification)
    cost: CostBaseline
    unmonitored: tuple[str, ...] = ()  # features the spec does not monitor (weight 0 in the profile)
    calibrator: Calibrator | None = None
    performance: PerformanceReference | None = None  # None: read from a format-1 document
    volume: VolumeBaseline | None = None  # rows per day of the training window (ingestion's volume check)

    @classmethod
    def fit(cls, spec: DatasetSpec, pipeline, train_frame: pd.DataFrame, validation_frame: pd.DataFrame, *,
            latency_ms_per_1k: float, decision_threshold: float) -> "MonitoringReference":
        """Fit the reference of `pipeline`, trained on `train_frame`: profile the training rows and scores,
        weigh features by permutation importance on `validation_frame`, take its metrics as the baseline
        (`decision_threshold` for accuracy_at_threshold), and fit the performance limits and the calibrator
        on held-out rows."""
        # every model input is passed (derived calendar columns too: the pipeline needs them), the spec's
        # features are the ones weighed
        cols = model_input_columns(spec)
        y_val = training.labels(spec, validation_frame)
        importances = permutation_importance(
            _FeatureScorer(pipeline, spec), validation_frame[cols], y_val, n_repeats=3,
            random_state=spec.training.seed, scoring=_score_fn(spec),
        ).importances_mean
        monitored = {f.name for f in spec.features if f.monitor}
        weights = {c: float(w) if c in monitored else 0.0 for c, w in zip(cols, importances)
                   if c in spec.feature_names}
        train_scores = training.predict_scores(pipeline, spec, train_frame)
        profile = ReferenceProfile.build(train_frame, spec, importances=weights, scores=train_scores)
        val_scores = training.predict_scores(pipeline, spec, validation_frame)
        baseline = {k: float(v) for k, v in compute_metrics(spec.task, y_val, val_scores, threshold=decision_threshold).items()}
        if spec.is_classification:
            baseline["accuracy_at_threshold"] = float(np.mean((val_scores >= decision_threshold) == y_val))
        performance, calibrator = fit_performance_reference(spec, pipeline, train_frame, validation_frame)
        return cls(profile=profile, baseline=baseline,
                   cost=CostBaseline(float(latency_ms_per_1k), len(pickle.dumps(pipeline))),
                   unmonitored=tuple(sorted(set(cols) - monitored)), calibrator=calibrator, performance=performance)

    def baseline_metric(self, name: str) -> float:
        """A validation metric of the version; NaN when it was not measured (e.g. one class in validation)."""
        return float(self.baseline.get(name, math.nan))

    def to_dict(self) -> dict:
        """JSON-safe; what the artifact store keeps beside the model."""
        return {
            "format_version": FORMAT_VERSION,
            "profile": self.profile.to_dict(),
            "baseline": dict(self.baseline),
            "cost": self.cost.to_dict(),
            "unmonitored": list(self.unmonitored),
            "calibrator": self.calibrator.to_dict() if self.calibrator is not None else None,
            "performance": self.performance.to_dict() if self.performance is not None else None,
            "volume": self.volume.to_dict() if self.volume is not None else None,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> "MonitoringReference":
        if not isinstance(raw, dict) or raw.get("format_version") not in READABLE_FORMATS:
            found = raw.get("format_version") if isinstance(raw, dict) else type(raw).__name__
            raise ValueError(f"monitoring reference format {found!r}, expected one of {READABLE_FORMATS}")
        calibrator, performance = raw.get("calibrator"), raw.get("performance")
        return cls(
            profile=ReferenceProfile.from_dict(raw["profile"]),
            baseline={k: float(v) for k, v in raw["baseline"].items()},
            cost=CostBaseline.from_dict(raw["cost"]),
            unmonitored=tuple(raw.get("unmonitored", ())),
            calibrator=Calibrator.from_dict(calibrator) if calibrator is not None else None,
            performance=PerformanceReference.from_dict(performance) if performance is not None else None,
            volume=VolumeBaseline.from_dict(raw["volume"]) if raw.get("volume") else None,
        )


class _FeatureScorer:
    """Lets permutation_importance permute the spec's raw features while the pipeline does the rest."""

    def __init__(self, pipeline, spec):
        self.pipeline, self.spec = pipeline, spec

    def fit(self, *_):
        return self


def _score_fn(spec: DatasetSpec):
    key = "roc_auc" if spec.is_classification else "r2"

    def score(estimator: _FeatureScorer, x: pd.DataFrame, y) -> float:
        s = training.predict_scores(estimator.pipeline, spec, x)
        value = compute_metrics(spec.task, np.asarray(y), s, threshold=spec.deployment.decision_threshold)[key]
        return 0.0 if math.isnan(value) else value

    return score
