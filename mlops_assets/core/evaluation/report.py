"""Evaluation of a candidate against the champion on the fixed benchmark: metrics, slices, cost, uncertainty.

Conventions, stated once:
- Classification scores are the probability of the positive class; hard predictions (F1, accuracy) decide
  "positive" at or above the spec's [deployment] decision_threshold, the threshold serving decides by.
- Expected calibration error (ECE) uses 10 *equal-width* bins on [0, 1] (`strategy="quantile"` gives
  equal-mass bins): sum over bins of (bin share of rows) * |observed positive rate - mean score|.
- Uncertainty comes from a paired, seeded bootstrap: both models are scored on the *same* resampled rows,
  so the CI of the difference candidate - champion excludes the benchmark-sampling noise they share.
- Undefined metrics (ROC AUC on a one-class benchmark, R² on a constant target) are NaN plus a note.
"""

from __future__ import annotations

import math
import pickle
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_curve

from mlops_assets.core.io import plots
from mlops_assets.core.io.json_safe import json_safe
from mlops_assets.core.features.engineering import as_category_strings
from mlops_assets.core.config.spec import DatasetSpec, GatePolicy
from mlops_assets.core.config.tasks import METRICS
from mlops_assets.core.training.trainer import labels, predict_scores

CLASSIFICATION_METRICS = METRICS["binary_classification"]
REGRESSION_METRICS = METRICS["regression"]
HIGHER_IS_BETTER = {"roc_auc": True, "f1": True, "accuracy": True, "log_loss": False, "brier": False,
                    "ece": False, "mae": False, "rmse": False, "r2": True}
CALIBRATION_BINS = 10
LATENCY_REPEATS = 5
CI_LEVEL = 0.95
_EPS = 1e-15  # log-loss clipping, as scikit-learn does

# --------------------------------------------------------------------------------------------- metrics


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney form (ties count half); NaN when the rows hold only one class."""
    y = np.asarray(y)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def expected_calibration_error(y: np.ndarray, s: np.ndarray, n_bins: int = CALIBRATION_BINS,
                               strategy: str = "uniform") -> float:
    bins = _calibration_bins(s, n_bins, strategy)
    y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
    total = 0.0
    for b in np.unique(bins):
        m = bins == b
        total += m.mean() * abs(y[m].mean() - s[m].mean())
    return float(total)


def _calibration_bins(s: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    s = np.asarray(s, dtype=float)
    if strategy == "uniform":
        return np.minimum((s * n_bins).astype(int), n_bins - 1)
    if strategy == "quantile":
        order = np.argsort(s, kind="mergesort")
        bins = np.empty(len(s), dtype=int)
        bins[order] = np.arange(len(s)) * n_bins // max(len(s), 1)
        return bins
    raise ValueError(f"unknown binning strategy {strategy!r}; expected 'uniform' or 'quantile'")


def classification_metrics(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, float]:
    """Threshold-free metrics (ROC AUC, log loss, Brier, ECE) and F1/accuracy of the decisions s >= threshold."""
    y, s = np.asarray(y, dtype=int), np.asarray(s, dtype=float)
    pred = (s >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    p = np.clip(s, _EPS, 1 - _EPS)
    return {
        "roc_auc": roc_auc(y, s),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        "accuracy": float((pred == y).mean()),
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "brier": float(np.mean((s - y) ** 2)),
        "ece": expected_calibration_error(y, s),
    }


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    err = pred - y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err ** 2).mean())),
        "r2": 1.0 - float((err ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
    }


def compute_metrics(task: str, y: np.ndarray, s: np.ndarray, *, threshold: float) -> dict[str, float]:
    """The task's metrics; `threshold` is the decision threshold (spec.deployment.decision_threshold), which
    regression ignores."""
    if task == "binary_classification":
        return classification_metrics(y, s, threshold)
    return regression_metrics(y, s)


def metric_function(task: str, name: str, *, threshold: float):
    """One metric as a function (y, scores) -> float, for the bootstrap (decisions at `threshold`)."""
    known = CLASSIFICATION_METRICS if task == "binary_classification" else REGRESSION_METRICS
    if name not in known:
        raise ValueError(f"metric {name!r} is not defined for task {task!r}; choices: {list(known)}")
    if name == "roc_auc":
        return roc_auc
    if name == "ece":
        return expected_calibration_error
    return lambda y, s: compute_metrics(task, y, s, threshold=threshold)[name]


# ------------------------------------------------------------------------------------------- bootstrap


@dataclass
class BootstrapResult:
    metric: str
    n_samples: int
    level: float
    candidate_ci: tuple[float, float]
    champion_ci: tuple[float, float] | None = None
    difference: float | None = None  # point estimate, candidate - champion
    difference_ci: tuple[float, float] | None = None
    n_undefined: int = 0  # resamples where the metric was undefined (e.g. one class) and were dropped


def paired_bootstrap(y: np.ndarray, candidate: np.ndarray, champion: np.ndarray | None, metric,
                     n_samples: int, seed: int, level: float = CI_LEVEL, name: str = "",
                     blocks: list[np.ndarray] | None = None) -> BootstrapResult:
    """Percentile CIs of the metric for each model and of candidate - champion, on the same resamples.
    `blocks` (row indices per block, e.g. per day): resample whole blocks, so rows that move together (one
    day's rows) count as the one observation they are; default: rows."""
    y, candidate = np.asarray(y), np.asarray(candidate)
    rng = np.random.default_rng(seed)
    cand, champ = np.empty(n_samples), np.empty(n_samples)
    for i in range(n_samples):
        if blocks is None:
            idx = rng.integers(0, len(y), size=len(y))
        else:
            idx = np.concatenate([blocks[b] for b in rng.integers(0, len(blocks), size=len(blocks))])
        cand[i] = metric(y[idx], candidate[idx])
        champ[i] = metric(y[idx], champion[idx]) if champion is not None else np.nan
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    ok = ~np.isnan(cand) & (~np.isnan(champ) if champion is not None else True)
    undefined = int((~ok).sum())

    def ci(values):
        return tuple(float(v) for v in np.percentile(values[ok], q)) if ok.any() else (math.nan, math.nan)

    out = BootstrapResult(name, n_samples, level, ci(cand), n_undefined=undefined)
    if champion is not None:
        out.champion_ci = ci(champ)
        out.difference = float(metric(y, candidate) - metric(y, champion))
        out.difference_ci = ci(cand - champ)
    return out


# ------------------------------------------------------------------------------------------ cost probes


def latency_ms_per_1k(pipeline, spec: DatasetSpec, frame: pd.DataFrame, repeats: int = LATENCY_REPEATS) -> float:
    """Median wall time of scoring `frame`, scaled to 1,000 rows (one warm-up call first)."""
    predict_scores(pipeline, spec, frame)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict_scores(pipeline, spec, frame)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000.0 * 1000.0 / max(len(frame), 1)


def artifact_bytes(pipeline) -> int:
    return len(pickle.dumps(pipeline, protocol=pickle.HIGHEST_PROTOCOL))


# -------------------------------------------------------------------------------------------- reporting


@dataclass
class ModelEvaluation:
    metrics: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]]  # slice column -> value -> metric -> value (+ "n")
    latency_ms_per_1k: float
    artifact_bytes: int


@dataclass
class EvaluationReport:
    task: str
    key_metric: str
    higher_is_better: bool
    n_rows: int
    candidate: ModelEvaluation
    champion: ModelEvaluation | None
    bootstrap: BootstrapResult
    notes: list[str] = field(default_factory=list)
    plots: dict[str, str] = field(default_factory=dict)  # name -> Markdown with an embedded PNG
    # slice column -> value -> the key metric's drop vs the champion there, with its paired bootstrap interval
    # (metric_scale.DropInterval as a dict); empty without a champion
    slice_drops: dict[str, dict[str, dict]] = field(default_factory=dict)

    def to_dict(self, include_plots: bool = False) -> dict:
        out = {k: getattr(self, k) for k in ("task", "key_metric", "higher_is_better", "n_rows", "notes")}
        for side in ("candidate", "champion"):
            ev = getattr(self, side)
            out[side] = None if ev is None else {
                "metrics": ev.metrics, "slices": ev.slices,
                "latency_ms_per_1k": ev.latency_ms_per_1k, "artifact_bytes": ev.artifact_bytes,
            }
        out["bootstrap"] = vars(self.bootstrap)
        out["slice_drops"] = self.slice_drops
        if include_plots:
            out["plots"] = self.plots
        return json_safe(out)

    def metrics_table(self) -> pd.DataFrame:
        """One row per metric: candidate, champion, candidate - champion, which direction is better."""
        rows = []
        for name in list(self.candidate.metrics) + ["latency_ms_per_1k", "artifact_mb"]:
            cand, champ = self._value(self.candidate, name), self._value(self.champion, name)
            rows.append({"metric": name, "candidate": cand, "champion": champ,
                         "difference": cand - champ if champ is not None else None,
                         "higher_is_better": HIGHER_IS_BETTER.get(name, False)})
        return pd.DataFrame(rows)

    def slice_table(self) -> pd.DataFrame:
        rows = []
        for col, values in self.candidate.slices.items():
            for value, m in values.items():
                champ = self.champion.slices[col][value][self.key_metric] if self.champion else None
                rows.append({"slice": col, "value": value, "n": m["n"], f"candidate_{self.key_metric}":
                             m[self.key_metric], f"champion_{self.key_metric}": champ})
        return pd.DataFrame(rows)

    @staticmethod
    def _value(ev: ModelEvaluation | None, name: str):
        if ev is None:
            return None
        if name == "latency_ms_per_1k":
            return ev.latency_ms_per_1k
        if name == "artifact_mb":
            return ev.artifact_bytes / 1e6
        return ev.metrics[name]

    def markdown(self) -> str:
        """The metrics table, the notes and the plots, ready for a Dagster MetadataValue.md."""
        rows = ["| metric | candidate | champion | candidate - champion |", "|---|---|---|---|"]
        for r in self.metrics_table().itertuples():
            rows.append(f"| {r.metric} | {_fmt(r.candidate)} | {_fmt(r.champion)} | {_fmt(r.difference)} |")
        return "\n\n".join(["\n".join(rows)] + [f"- {n}" for n in self.notes] + list(self.plots.values()))


def evaluate(spec: DatasetSpec, candidate_pipeline, champion_pipeline, benchmark_frame: pd.DataFrame,
             policy: GatePolicy | None = None, *, make_plots: bool = True) -> EvaluationReport:
    policy = policy or spec.gates
    if benchmark_frame.empty:
        raise ValueError("benchmark frame is empty: nothing to evaluate on")
    key = policy.key_metric or ("roc_auc" if spec.is_classification else "rmse")
    threshold = spec.deployment.decision_threshold
    key_fn = metric_function(spec.task, key, threshold=threshold)
    y = labels(spec, benchmark_frame)
    notes: list[str] = []
    if spec.is_classification and len(np.unique(y)) < 2:
        notes.append(f"benchmark holds only one class ({'positive' if y[0] == 1 else 'negative'}, "
                     f"{len(y)} rows): ROC AUC and its confidence interval are undefined (NaN)")
    if not spec.is_classification and np.all(y == y[0]):
        notes.append("benchmark target is constant: R² is undefined (NaN)")

    scores = {"candidate": predict_scores(candidate_pipeline, spec, benchmark_frame)}
    if champion_pipeline is not None:
        scores["champion"] = predict_scores(champion_pipeline, spec, benchmark_frame)
    evals = {}
    for side, pipe in (("candidate", candidate_pipeline), ("champion", champion_pipeline)):
        if pipe is None:
            continue
        evals[side] = ModelEvaluation(
            metrics=compute_metrics(spec.task, y, scores[side], threshold=threshold),
            slices=slice_metrics(spec, benchmark_frame, y, scores[side]),
            latency_ms_per_1k=latency_ms_per_1k(pipe, spec, benchmark_frame),
            artifact_bytes=artifact_bytes(pipe),
        )
    boot = paired_bootstrap(y, scores["candidate"], scores.get("champion"), key_fn, policy.bootstrap_samples,
                            seed=spec.training.seed, name=key)
    if boot.n_undefined:
        notes.append(f"{boot.n_undefined} of {boot.n_samples} bootstrap resamples left {key} undefined "
                     "and were dropped")
    report = EvaluationReport(spec.task, key, HIGHER_IS_BETTER[key], len(y), evals["candidate"],
                              evals.get("champion"), boot, notes)
    if "champion" in scores:
        # metric_scale builds on this module's bootstrap, so it is imported here rather than at the top
        from mlops_assets.core.evaluation.metric_scale import slice_drop_intervals

        report.slice_drops = slice_drop_intervals(spec, benchmark_frame, y, scores["candidate"], scores["champion"],
                                                  key, n_samples=policy.bootstrap_samples, seed=spec.training.seed)
    if make_plots:
        report.plots = _plots(spec, y, scores, notes)
    return report


def slice_metrics(spec: DatasetSpec, frame: pd.DataFrame, y: np.ndarray, s: np.ndarray) -> dict:
    out, threshold = {}, spec.deployment.decision_threshold
    for col in spec.slices:
        values = as_category_strings(frame[col].reset_index(drop=True)).fillna("<missing>").to_numpy()
        out[col] = {}
        for value in sorted(set(values)):
            m = values == value
            out[col][str(value)] = {**compute_metrics(spec.task, y[m], s[m], threshold=threshold), "n": int(m.sum())}
    return out


# ------------------------------------------------------------------------------------------------ plots


def _plots(spec: DatasetSpec, y: np.ndarray, scores: dict[str, np.ndarray], notes: list[str]) -> dict[str, str]:
    out = {}
    if spec.is_classification:
        if len(np.unique(y)) == 2:
            fig, ax = plots.new_figure()
            for side, s in scores.items():
                fpr, tpr, _ = roc_curve(y, s)
                ax.plot(fpr, tpr, label=f"{side} (AUC {roc_auc(y, s):.3f})")
            ax.plot([0, 1], [0, 1], "k:", lw=1)
            ax.set(xlabel="false positive rate", ylabel="true positive rate")
            ax.legend(loc="lower right")
            out["roc_curve"] = plots.figure_to_markdown(fig, "ROC curve")
        else:
            notes.append("ROC curve not drawn: one class only")
        fig, ax = plots.new_figure()
        for side, s in scores.items():
            bins = _calibration_bins(s, CALIBRATION_BINS, "uniform")
            xs = [s[bins == b].mean() for b in np.unique(bins)]
            ys = [y[bins == b].mean() for b in np.unique(bins)]
            ax.plot(xs, ys, "o-", label=f"{side} (ECE {expected_calibration_error(y, s):.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set(xlabel="mean predicted probability", ylabel="observed positive rate", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left")
        out["calibration_curve"] = plots.figure_to_markdown(fig, "Calibration (10 equal-width bins)")
    else:
        fig, ax = plots.new_figure()
        for side, s in scores.items():
            ax.scatter(s, y - s, s=6, alpha=0.5, label=side)
        ax.axhline(0, color="k", lw=1, ls=":")
        ax.set(xlabel="prediction", ylabel="residual (actual - prediction)")
        ax.legend(loc="best")
        out["residuals"] = plots.figure_to_markdown(fig, "Residuals")
    return out


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}"
