"""Target leakage: features that predict the target (near-)deterministically, alone or combined.

Every score here is fitted on the candidate's training rows and judged on its benchmark rows (held out by time),
in the task's unit: ROC AUC for binary classification, R² for regression. So an honest feature's score is what
it would deliver in production, and overfitting a small window can only lower it, never raise a false alarm.

- One feature at a time: a numeric feature is encoded by the target's mean in quantile bins of the training
  rows and, separately, as itself (monotone: oriented by its sign in training, or a straight-line fit for
  regression), and the better of the two counts; a categorical feature by the target's mean per category.
  "The label with a little noise" or a post-outcome field scores near 1.
- All numeric features together: a least-squares fit of the target on them. Two features that sum to the
  target are each unremarkable alone, but this fit is exact; each feature it cannot do without is named by
  refitting without it.

Each score carries a lower confidence bound, so a few dozen benchmark rows cannot make an honest feature look
deterministic by chance: ROC AUC by Hanley & McNeil's standard error, R² from the spread of squared errors.
Cost is bounded by sampling at most `sample_rows` rows of each side (seeded): a few least-squares fits and one
sort per feature, small next to training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.evaluation.report import roc_auc
from mlops_assets.core.training.trainer import labels

CONFIDENCE_Z = 1.96  # lower bound of a two-sided 95 % interval
MAX_BINS = 50
ROWS_PER_BIN = 30  # fewer training rows per bin and the bin means are mostly noise
DROP_ONE_CANDIDATES = 10  # the linear fit's largest coefficients refitted without, to name what it needs


@dataclass(frozen=True)
class HeldOutScore:
    score: float  # ROC AUC or R² on the benchmark rows; NaN when undefined there
    lower: float  # lower confidence bound of `score`
    encoding: str = ""  # how the feature was turned into a prediction (bins, monotone, categories, linear)


@dataclass(frozen=True)
class LinearFit:
    score: HeldOutScore
    features: tuple[str, ...]  # the numeric features fitted
    without: dict[str, float] = field(default_factory=dict)  # feature -> score refitted without it


@dataclass
class LeakageAnalysis:
    metric: str  # "roc_auc" | "r2"
    single: dict[str, HeldOutScore]
    linear: LinearFit | None
    train_rows: int
    benchmark_rows: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"metric": self.metric, "single": {k: asdict(v) for k, v in self.single.items()},
                "linear": asdict(self.linear) if self.linear else None, "train_rows": self.train_rows,
                "benchmark_rows": self.benchmark_rows, "notes": self.notes}


def analyse_target_leakage(spec: DatasetSpec, train: pd.DataFrame, benchmark: pd.DataFrame, *,
                           sample_rows: int = 20_000, seed: int = 0) -> LeakageAnalysis:
    """Held-out scores of every feature alone and of a linear fit of the numeric ones (see the module)."""
    metric = "roc_auc" if spec.is_classification else "r2"
    train, benchmark = _sample(train, sample_rows, seed), _sample(benchmark, sample_rows, seed + 1)
    y_train, y_bench = labels(spec, train).astype(float), labels(spec, benchmark).astype(float)
    analysis = LeakageAnalysis(metric, {}, None, len(train), len(benchmark))
    if _undefined(y_bench) or _undefined(y_train):
        analysis.notes.append(f"{metric} is undefined on these rows (one class, or a constant target): "
                              "target leakage cannot be measured")
        return analysis
    for f in spec.features:
        if f.is_numeric:
            x_train, x_bench = _numeric(train[f.name]), _numeric(benchmark[f.name])
            options = [_score(spec, y_bench, _binned(x_train, y_train, x_bench), "quantile bins"),
                       _score(spec, y_bench, _monotone(spec, x_train, y_train, x_bench), "monotone")]
            analysis.single[f.name] = max(options, key=lambda s: -math.inf if math.isnan(s.score) else s.score)
        else:
            pred = _category_means(train[f.name], y_train, benchmark[f.name])
            analysis.single[f.name] = _score(spec, y_bench, pred, "category means")
    if spec.numeric_features:
        analysis.linear = _linear_fit(spec, train, y_train, benchmark, y_bench)
    return analysis


# ---------------------------------------------------------------------------------------------- encodings


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(rows, random_state=seed)


def _undefined(y: np.ndarray) -> bool:
    return len(y) < 2 or (len(np.unique(y)) < 2)


def _numeric(values: pd.Series) -> np.ndarray:
    out = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, copy=True)
    out[~np.isfinite(out)] = np.nan
    return out


def _binned(x_train: np.ndarray, y_train: np.ndarray, x_bench: np.ndarray) -> np.ndarray:
    """The training target's mean in the quantile bin of each benchmark value (missing values: their own bin)."""
    prior = float(y_train.mean())
    known = ~np.isnan(x_train)
    n_bins = int(min(MAX_BINS, max(2, known.sum() // ROWS_PER_BIN)))
    edges = np.unique(np.quantile(x_train[known], np.linspace(0, 1, n_bins + 1)[1:-1])) if known.any() else []

    def bin_of(x):
        b = np.searchsorted(edges, x, side="right")
        return np.where(np.isnan(x), -1, b)

    train_bins, bench_bins = bin_of(x_train), bin_of(x_bench)
    means = pd.Series(y_train).groupby(train_bins).mean()
    return pd.Series(bench_bins).map(means).fillna(prior).to_numpy(dtype=float)


def _monotone(spec: DatasetSpec, x_train: np.ndarray, y_train: np.ndarray, x_bench: np.ndarray) -> np.ndarray:
    """The feature itself: oriented by its training correlation (a ranking) for classification, a straight
    line fitted on the training rows for regression; missing values at the training mean."""
    known = ~np.isnan(x_train)
    if known.sum() < 2 or np.std(x_train[known]) == 0:
        return np.full(len(x_bench), float(y_train.mean()))
    center = float(np.mean(x_train[known]))
    xt, xb = np.where(known, x_train, center), np.where(np.isnan(x_bench), center, x_bench)
    slope = float(np.mean((xt - center) * (y_train - y_train.mean())) / np.var(xt))
    if spec.is_classification:
        return np.sign(slope) * xb
    return y_train.mean() + slope * (xb - center)


def _category_means(train: pd.Series, y_train: np.ndarray, bench: pd.Series) -> np.ndarray:
    prior = float(y_train.mean())
    means = pd.Series(y_train).groupby(train.astype(str).to_numpy()).mean()
    return bench.astype(str).map(means).fillna(prior).to_numpy(dtype=float)


def _linear_fit(spec: DatasetSpec, train, y_train, benchmark, y_bench) -> LinearFit:
    names, train_cols, bench_cols = [], [], []
    for name in spec.numeric_features:
        xt, xb = _numeric(train[name]), _numeric(benchmark[name])
        known = ~np.isnan(xt)
        if known.sum() < 2 or np.std(xt[known]) == 0:
            continue  # constant in training: nothing to fit
        mean, std = float(np.mean(xt[known])), float(np.std(xt[known]))
        names.append(name)
        train_cols.append((np.where(known, xt, mean) - mean) / std)
        bench_cols.append((np.where(np.isnan(xb), mean, xb) - mean) / std)
    if not names:
        return LinearFit(HeldOutScore(math.nan, math.nan, "linear"), ())
    xt, xb = np.column_stack(train_cols), np.column_stack(bench_cols)
    coef = _least_squares(xt, y_train)
    full = _score(spec, y_bench, _predict(coef, xb), "linear")
    without = {}
    for j in np.argsort(-np.abs(coef[1:]))[:DROP_ONE_CANDIDATES]:
        keep = [k for k in range(len(names)) if k != j]
        if not keep:
            continue
        reduced = _least_squares(xt[:, keep], y_train)
        without[names[j]] = _score(spec, y_bench, _predict(reduced, xb[:, keep]), "linear").score
    return LinearFit(full, tuple(names), without)


def _least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    design = np.column_stack([np.ones(len(x)), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coef


def _predict(coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    return coef[0] + x @ coef[1:]


# ------------------------------------------------------------------------------------------------ scores


def _score(spec: DatasetSpec, y: np.ndarray, pred: np.ndarray, encoding: str) -> HeldOutScore:
    if spec.is_classification:
        auc = roc_auc(y.astype(int), pred)
        return HeldOutScore(auc, auc - CONFIDENCE_Z * _auc_standard_error(auc, y), encoding)
    errors = (y - pred) ** 2
    total = float(np.mean((y - y.mean()) ** 2))
    if total == 0:
        return HeldOutScore(math.nan, math.nan, encoding)
    mean_error = float(errors.mean())
    spread = float(errors.std(ddof=1)) / math.sqrt(len(errors)) if len(errors) > 1 else math.inf
    return HeldOutScore(1 - mean_error / total, 1 - (mean_error + CONFIDENCE_Z * spread) / total, encoding)


def _auc_standard_error(auc: float, y: np.ndarray) -> float:
    """Hanley & McNeil (1982): the standard error of a ROC AUC from its value and the two class counts."""
    if math.isnan(auc):
        return math.nan
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc ** 2) + (n_neg - 1) * (q2 - auc ** 2)) / (n_pos * n_neg)
    return math.sqrt(max(variance, 0.0))
