"""Reproducible retrains: rebuild a model from its lineage and compare the two, naming what differs.

A rebuild uses the lineage's train partitions (from its manifest), estimator, parameters and seed; training
fits with one BLAS/OpenMP thread, so the same data gives bit-identical predictions, and a difference is
explained by the lineage fields that differ (library versions, data versions, parameters, ...).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.training.trainer import Lineage, TrainedModel, pipeline_scores, require_columns, train


def retrain_from_lineage(spec: DatasetSpec, lineage: Lineage,
                         frames_loader: Callable[[list[dt.date]], pd.DataFrame], *,
                         git_commit: str | None = None) -> TrainedModel:
    """Rebuild a model from its lineage: the same train partitions, estimator, parameters and seed.

    `frames_loader(days)` returns the labeled examples of those days. Returns the rebuilt model with a
    fresh lineage (its `.pipeline` is the rebuilt Pipeline) so `compare_predictions` can say what differs.
    """
    if lineage.manifest is None:
        raise ValueError("lineage has no manifest: the training partitions are unknown, cannot retrain")
    if lineage.task != spec.task:
        raise ValueError(f"lineage is for task {lineage.task!r} but the spec's task is {spec.task!r}")
    frame = frames_loader(lineage.manifest.days("train"))
    return train(spec, lineage.policy(spec.training), frame, manifest=lineage.manifest, git_commit=git_commit)


@dataclass
class ReproducibilityResult:
    identical: bool
    max_abs_diff: float
    n_rows: int
    differences: list[str] = field(default_factory=list)  # lineage fields that differ, "field: a -> b"

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        head = ("predictions bit-identical" if self.identical
                else f"predictions differ (max abs diff {self.max_abs_diff:.3g} over {self.n_rows} rows)")
        if not self.differences:
            return head + ("" if self.identical else "; lineage identical, so the cause is outside it")
        return head + "; lineage differs in: " + "; ".join(self.differences)


_COMPARED_FIELDS = ("estimator", "params", "seed", "estimator_params", "feature_columns", "feature_code_version",
                    "library_versions", "data_fingerprint", "n_rows", "git_commit")


def compare_predictions(a: TrainedModel | Pipeline, b: TrainedModel | Pipeline, frame: pd.DataFrame
                        ) -> ReproducibilityResult:
    """Score `frame` with both models; when both carry lineage, name every lineage field that differs."""
    pa, pb = (m.pipeline if isinstance(m, TrainedModel) else m for m in (a, b))
    cols = list(pa.feature_names_in_)
    require_columns(frame, cols, "comparison frame")
    sa, sb = pipeline_scores(pa, frame[cols]), pipeline_scores(pb, frame[cols])
    same_shape = sa.shape == sb.shape
    max_diff = float(np.max(np.abs(sa - sb))) if same_shape and sa.size else (0.0 if same_shape else float("inf"))
    diffs = []
    if isinstance(a, TrainedModel) and isinstance(b, TrainedModel):
        diffs = lineage_differences(a.lineage, b.lineage)
    return ReproducibilityResult(bool(same_shape and np.array_equal(sa, sb)), max_diff, len(frame), diffs)


def lineage_differences(a: Lineage, b: Lineage) -> list[str]:
    out = []
    for name in _COMPARED_FIELDS:
        va, vb = getattr(a, name), getattr(b, name)
        if va == vb:
            continue
        if isinstance(va, dict) and isinstance(vb, dict):
            keys = sorted(set(va) | set(vb))
            parts = [f"{k}: {va.get(k, '<absent>')!r} -> {vb.get(k, '<absent>')!r}"
                     for k in keys if va.get(k, "<absent>") != vb.get(k, "<absent>")]
            out.append(f"{name} ({', '.join(parts)})")
        else:
            out.append(f"{name}: {_short(va)} -> {_short(vb)}")
    ma, mb = a.manifest, b.manifest
    if (ma and ma.data_versions) != (mb and mb.data_versions):
        va, vb = (ma.data_versions if ma else {}), (mb.data_versions if mb else {})
        changed = sorted(d for d in set(va) | set(vb) if va.get(d) != vb.get(d))
        out.append(f"manifest data versions ({len(changed)} partitions: {', '.join(changed[:5])})")
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
