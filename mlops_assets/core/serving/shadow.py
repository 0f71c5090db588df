"""Two models' opinions on the same ledger rows: the pairing shared by the shadow report and the canary's
evidence, and the shadow report itself (a shadow model is scored on every row but never acted on)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from mlops_assets.core.evaluation.report import compute_metrics

_KEY = ["entity", "timestamp"]


def paired_rows(left: pd.DataFrame, right: pd.DataFrame, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows of two models on the same (entity, timestamp), as columns score_a / decision_a (left) and
    score_b / decision_b (right), with `label` when a labels table (see `ledger_labels`) is given."""
    def keyed(frame, suffix):
        # One model scores a row once; a duplicate (the champion passed as shadow too) says the same thing.
        out = frame[_KEY + ["score", "decision"]].drop_duplicates(_KEY).copy()
        out["timestamp"] = pd.to_datetime(out["timestamp"]).astype("datetime64[us]")
        return out.rename(columns={"score": f"score{suffix}", "decision": f"decision{suffix}"})

    pairs = keyed(left, "_a").merge(keyed(right, "_b"), on=_KEY, how="inner", validate="one_to_one")
    if labels is not None:
        lab = labels[_KEY + ["label"]].copy()
        lab["timestamp"] = pd.to_datetime(lab["timestamp"]).astype("datetime64[us]")
        pairs = pairs.merge(lab, on=_KEY, how="left", validate="many_to_one")
    return pairs


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sample KS statistic between two score samples; None when either is empty."""
    return float(stats.ks_2samp(a, b, method="asymp").statistic) if len(a) and len(b) else None


def finite_or_none(value) -> float | None:
    """A float, or None for a missing or non-finite figure (JSON and the audit log take no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def task_of(rows: pd.DataFrame) -> str:
    """The task of ledger rows: a decision threshold means classification."""
    return "binary_classification" if rows["threshold"].notna().any() else "regression"


def threshold_of(rows: pd.DataFrame) -> float:
    """The decision threshold score_batch recorded on the rows (the last row's; NaN for regression)."""
    recorded = rows["threshold"].dropna()
    return float(recorded.iloc[-1]) if len(recorded) else math.nan


def shadow_comparison(champion_rows: pd.DataFrame, shadow_rows: pd.DataFrame, labels: pd.DataFrame | None = None,
                      *, task: str | None = None) -> dict:
    """How a shadow model's opinions compare with the decisions served, on the rows both scored.

    Agreement is the share of equal decisions (classification only); correlation is Pearson's on scores;
    KS is the two-sample statistic between the two score distributions. With `labels` (see `ledger_labels`)
    both models' realised metrics are computed on the labelled rows. The task is read from the rows
    (a threshold means classification) unless given.
    """
    task = task_of(champion_rows) if task is None else task
    pairs = paired_rows(champion_rows, shadow_rows, labels)
    a, b = pairs["score_a"].to_numpy(float), pairs["score_b"].to_numpy(float)
    corr = None
    if len(a) > 1 and a.std() > 0 and b.std() > 0:
        corr = float(np.corrcoef(a, b)[0, 1])
    report = {
        "task": task,
        "champion_versions": sorted(set(champion_rows["model_version"])),
        "shadow_versions": sorted(set(shadow_rows["model_version"])),
        "rows": len(pairs),
        "unmatched_champion_rows": len(champion_rows) - len(pairs),
        "unmatched_shadow_rows": len(shadow_rows) - len(pairs),
        "agreement_rate": (float((pairs["decision_a"] == pairs["decision_b"]).mean())
                           if task == "binary_classification" and len(pairs) else None),
        "score_correlation": corr,
        "mean_abs_score_difference": float(np.abs(a - b).mean()) if len(a) else None,
        "ks_statistic": ks_statistic(a, b),
        "labelled_rows": 0,
        "metrics": None,
    }
    if labels is not None:
        known = pairs["label"].notna().to_numpy()
        report["labelled_rows"] = int(known.sum())
        if known.any():
            y = pairs.loc[known, "label"].to_numpy(float)
            report["metrics"] = {
                side: {k: finite_or_none(v) for k, v in compute_metrics(task, y, s[known],
                                                                         threshold=threshold_of(champion_rows)).items()}
                for side, s in (("champion", a), ("shadow", b))
            }
    return report
