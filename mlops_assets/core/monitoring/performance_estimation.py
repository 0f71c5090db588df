"""Label-free performance estimation for binary classifiers (confidence-based, CBPE, as in NannyML).

If a model's probabilities are calibrated, each row's label is a coin flip with probability p, so the
expected confusion matrix of a day's predictions follows from the scores alone: a row predicted positive
contributes p to the true positives and 1 - p to the false positives, and so on. The expected ROC AUC is
the expected Mann-Whitney count of correctly ordered (positive, negative) pairs over the expected number of
such pairs, summed over score-sorted groups in O(n log n). Ratios of expectations are consistent: on a
large batch they are within sampling noise of the realised metrics.

The same formulas with p replaced by the 0/1 labels give the realised metrics, so estimate and truth are
computed by one piece of code. `calibrate` fits isotonic or Platt scaling on labelled reference rows when
the raw scores are not calibrated; `recalibrate` adjusts a calibrator fitted on other models' scores (cross-fitted
fold models) to the scores of the model actually served, on that model's own held-out rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special
from sklearn.isotonic import IsotonicRegression

from mlops_assets.core.io.json_safe import json_safe

METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1")


@dataclass(frozen=True)
class PerformanceEstimate:
    roc_auc: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    threshold: float
    n: int
    predicted_positive_rate: float
    positive_rate: float  # expected (estimate) or actual (realised) share of positive labels

    def to_dict(self) -> dict:
        return json_safe(asdict(self))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else math.nan


def _roc_auc(scores: np.ndarray, p: np.ndarray) -> float:
    """Expected correctly-ordered pairs / expected pairs, with ties counted half; exact AUC if p is 0/1."""
    if scores is p:  # ranked by the probabilities themselves: a plain sort is several times faster
        s = p = np.sort(p)
    else:
        order = np.argsort(scores)  # ties are grouped below, so the sort need not be stable
        s, p = scores[order], p[order]
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    pos = np.add.reduceat(p, starts)  # expected positives per tied-score group
    neg = np.add.reduceat(1.0 - p, starts)
    own = np.add.reduceat(p * (1.0 - p), starts)  # a row cannot pair with itself
    below = np.cumsum(neg) - neg  # expected negatives scored strictly lower
    correct = float(np.sum(pos * below) + 0.5 * np.sum(pos * neg - own))
    # E[P * N] = E[P] E[N] - Var(P), and Var(P) = sum p (1 - p) for independent rows
    pairs = float(p.sum() * (1.0 - p).sum() - own.sum())
    return _ratio(correct, pairs)


def _performance(scores: np.ndarray, p: np.ndarray, threshold: float) -> PerformanceEstimate:
    n = len(scores)
    if n == 0:
        return PerformanceEstimate(*(math.nan,) * 5, threshold, 0, math.nan, math.nan)
    predicted = scores >= threshold
    n_predicted = int(predicted.sum())
    tp = float(p[predicted].sum())
    positives = float(p.sum())
    fp, fn = n_predicted - tp, positives - tp
    tn = n - n_predicted - fn
    return PerformanceEstimate(
        roc_auc=_roc_auc(scores, p), accuracy=(tp + tn) / n, precision=_ratio(tp, n_predicted),
        recall=_ratio(tp, positives), f1=_ratio(2 * tp, 2 * tp + fp + fn), threshold=threshold, n=n,
        predicted_positive_rate=n_predicted / n, positive_rate=positives / n,
    )


def _check(name: str, values, n: int | None = None) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite numbers (drop or impute missing scores first)")
    if n is not None and len(x) != n:
        raise ValueError(f"{name} has {len(x)} values, expected {n}")
    return x


def estimate_performance(probabilities, threshold: float, scores=None) -> PerformanceEstimate:
    """Expected ROC AUC, accuracy, precision, recall and F1 from calibrated probabilities, without labels.

    A row is predicted positive when its score is at or above `threshold`: the decision threshold serving uses
    (the spec's [deployment] decision_threshold). `scores` are what the model ranks and thresholds by (default:
    the probabilities themselves); pass them when the probabilities come from a calibrator applied to the scores.
    """
    p = _check("probabilities", probabilities)
    if ((p < 0) | (p > 1)).any():
        raise ValueError("probabilities must lie in [0, 1]; calibrate raw scores first")
    s = p if scores is None else _check("scores", scores, len(p))
    return _performance(s, p, threshold)


def realised_performance(scores, labels, threshold: float) -> PerformanceEstimate:
    """The same metrics from the actual 0/1 labels, for comparison once labels arrive (same `threshold`)."""
    s = _check("scores", scores)
    y = _check("labels", labels, len(s))
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return _performance(s, y, threshold)


def expected_roc_auc(probabilities, scores=None) -> float:
    p = _check("probabilities", probabilities)
    return _roc_auc(p if scores is None else _check("scores", scores, len(p)), p)


@dataclass(frozen=True)
class Calibrator:
    """Maps raw scores to probabilities; JSON-safe via to_dict/from_dict so it can be stored with a model."""

    method: str  # "isotonic" (piecewise linear through the fitted steps) or "platt" (sigmoid(a * s + b))
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 0.0
    b: float = 0.0
    # Logistic recalibration on top (sigmoid(slope * logit(p) + intercept)); 1 and 0 leave p as it is.
    slope: float = 1.0
    intercept: float = 0.0

    def __call__(self, scores) -> np.ndarray:
        p = self._base(scores)
        if self.slope == 1.0 and self.intercept == 0.0:
            return p
        return special.expit(self.slope * _logit(p) + self.intercept)

    def _base(self, scores) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(s, self.x, self.y)  # constant beyond the fitted range
        return special.expit(self.a * s + self.b)

    def to_dict(self) -> dict:
        return {"method": self.method, "x": list(self.x), "y": list(self.y), "a": self.a, "b": self.b,
                "slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_dict(cls, raw: dict) -> "Calibrator":  # documents stored before recalibration have no slope
        return cls(raw["method"], tuple(raw.get("x", ())), tuple(raw.get("y", ())), float(raw.get("a", 0.0)),
                   float(raw.get("b", 0.0)), float(raw.get("slope", 1.0)), float(raw.get("intercept", 0.0)))


# The recalibration's pull toward "leave the calibrator as it is", in rows: keeps slope and intercept finite
# when a small held-out sample is separable, and is negligible against hundreds of rows.
RECALIBRATION_PRIOR_ROWS = 10.0
# Isotonic steps reach 0 and 1 exactly; the logit of a probability is taken this far inside (0, 1).
_LOGIT_EDGE = 1e-3


def _logit(p: np.ndarray) -> np.ndarray:
    return special.logit(np.clip(p, _LOGIT_EDGE, 1.0 - _LOGIT_EDGE))


def _fit_logistic(x: np.ndarray, y: np.ndarray, start: tuple[float, float], ridge: float = 0.0) -> tuple[float, float]:
    """(a, b) minimising the mean log-loss of sigmoid(a x + b) against 0/1 labels, plus `ridge` / n times the
    squared distance from `start` (a prior worth about `ridge` rows: finite even when the rows are separable)."""
    center = np.array(start, dtype=np.float64)
    weight = ridge / max(len(x), 1)

    def loss(ab):
        z = ab[0] * x + ab[1]
        err = special.expit(z) - y
        pull = ab - center
        value = float(np.mean(np.logaddexp(0.0, z) - y * z) + weight * pull @ pull)
        return value, np.array([np.mean(err * x), np.mean(err)]) + 2 * weight * pull

    fit = optimize.minimize(loss, np.array(start, dtype=np.float64), jac=True, method="BFGS")
    return float(fit.x[0]), float(fit.x[1])


def calibrate(scores, labels, method: str = "isotonic") -> Calibrator:
    """Fit a calibrator on labelled reference rows (not the training rows, whose scores are optimistic)."""
    s = _check("scores", scores)
    y = _check("labels", labels, len(s))
    if not np.isin(y, (0.0, 1.0)).all() or len(np.unique(y)) < 2:
        raise ValueError("calibration needs 0/1 labels with both classes present")
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
        steps_x, steps_y = tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_))
        return Calibrator("isotonic", x=steps_x, y=steps_y)
    if method == "platt":
        a, b = _fit_logistic(s, y, (0.0, 0.0))
        return Calibrator("platt", a=a, b=b)
    raise ValueError(f"unknown calibration method {method!r} (expected 'isotonic' or 'platt')")


def recalibrate(calibrator: Calibrator, scores, labels) -> Calibrator:
    """`calibrator` with a logistic recalibration (slope and intercept on the logit of its probabilities) fitted
    on labelled rows of the model being served.

    A calibrator fitted on fold models' scores carries their ranking: where a fold model ranks worse than the
    final model, its probabilities are too flat for the final model's scores, and the estimate runs low. Two
    parameters fitted on the final model's own held-out rows sharpen (slope > 1) or flatten it and shift its
    level, while the isotonic shape still comes from the many pooled rows."""
    s = _check("scores", scores)
    y = _check("labels", labels, len(s))
    if not np.isin(y, (0.0, 1.0)).all() or len(np.unique(y)) < 2:
        raise ValueError("recalibration needs 0/1 labels with both classes present")
    plain = Calibrator(calibrator.method, calibrator.x, calibrator.y, calibrator.a, calibrator.b)
    slope, intercept = _fit_logistic(_logit(plain(s)), y, (1.0, 0.0), ridge=RECALIBRATION_PRIOR_ROWS)
    return Calibrator(plain.method, plain.x, plain.y, plain.a, plain.b, slope=slope, intercept=intercept)
