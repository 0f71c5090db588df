"""Training: the data window, the manifest of exactly what was used, the estimator, and reproducible retrains.

Plain functions over DataFrames; the Dagster shell loads the labeled-examples partitions and stores results.
A trained model carries a `Lineage`: everything needed to rebuild it bit for bit (seed, parameters, library
and code versions, the exact partitions and their data versions) and to say *why* a rebuild differs.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import scipy
import sklearn
from sklearn.base import is_classifier
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from mlops_assets.core.features import engineering as features
from mlops_assets.core.config.spec import DatasetSpec, TrainingPolicy
from mlops_assets.core.io.storage import frame_fingerprint

SPLITS = ("train", "validation", "benchmark")

# name -> (estimator class, defaults that differ from scikit-learn's), per task.
ESTIMATORS: dict[str, dict[str, tuple[type, dict]]] = {
    "binary_classification": {
        "logistic_regression": (LogisticRegression, {"max_iter": 1000}),
        "hist_gradient_boosting": (HistGradientBoostingClassifier, {}),
        "random_forest": (RandomForestClassifier, {"n_estimators": 100}),
    },
    "regression": {
        "ridge": (Ridge, {}),
        "hist_gradient_boosting_regressor": (HistGradientBoostingRegressor, {}),
        "random_forest_regressor": (RandomForestRegressor, {"n_estimators": 100}),
    },
}


class InsufficientDataError(ValueError):
    """Too few labeled days for the training window; `needed` and `missing` say what to backfill."""

    def __init__(self, as_of: dt.date, needed: int, missing: list[dt.date]):
        self.as_of, self.needed, self.missing = as_of, needed, missing
        shown = ", ".join(d.isoformat() for d in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        super().__init__(
            f"training as of {as_of.isoformat()} needs {needed} labeled days "
            f"({(as_of - dt.timedelta(days=needed - 1)).isoformat()} .. {as_of.isoformat()}); "
            f"{len(missing)} missing: {shown}{more}"
        )


# ------------------------------------------------------------------------------------------------ window


@dataclass(frozen=True)
class TrainingWindow:
    as_of: dt.date
    train_days: tuple[dt.date, ...]
    validation_days: tuple[dt.date, ...]
    benchmark_days: tuple[dt.date, ...]

    @property
    def all_days(self) -> tuple[dt.date, ...]:
        return self.train_days + self.validation_days + self.benchmark_days

    def days(self, split: str) -> tuple[dt.date, ...]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        return getattr(self, f"{split}_days")

    def manifest(self, data_versions: dict[dt.date | str, str]) -> "TrainingManifest":
        return TrainingManifest.from_window(self, data_versions)


def plan_training_window(as_of: dt.date, available_days: list[dt.date], policy: TrainingPolicy) -> TrainingWindow:
    """The `window_days` calendar days ending at `as_of` (inclusive), split by time.

    Oldest days train, the next `validation_days` validate, the most recent `benchmark_days` are the fixed
    benchmark. Every day in the window must be labeled: a silent gap would change what "the last 28 days"
    means from one run to the next, so a gap is an error that names the days to backfill.
    """
    n, n_val, n_bench = policy.window_days, policy.validation_days, policy.benchmark_days
    if n_val + n_bench >= n:
        raise ValueError(
            f"window_days ({n}) must exceed validation_days ({n_val}) + benchmark_days ({n_bench}) "
            "so at least one day is left to train on"
        )
    window = [as_of - dt.timedelta(days=n - 1 - i) for i in range(n)]
    have = set(available_days)
    missing = [d for d in window if d not in have]
    if missing:
        raise InsufficientDataError(as_of, n, missing)
    n_train = n - n_val - n_bench
    return TrainingWindow(
        as_of=as_of,
        train_days=tuple(window[:n_train]),
        validation_days=tuple(window[n_train:n_train + n_val]),
        benchmark_days=tuple(window[n_train + n_val:]),
    )


# ---------------------------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class TrainingManifest:
    """Which partitions (day keys) went into each split and the data version of each: references, not data."""

    as_of: str
    splits: dict[str, list[str]]
    data_versions: dict[str, str]

    @classmethod
    def from_window(cls, window: TrainingWindow, data_versions: dict[dt.date | str, str]) -> "TrainingManifest":
        versions = {_day_key(k): str(v) for k, v in data_versions.items()}
        splits = {s: [d.isoformat() for d in window.days(s)] for s in SPLITS}
        missing = [d for days in splits.values() for d in days if d not in versions]
        if missing:
            raise ValueError(f"no data version given for partitions: {', '.join(missing)}")
        used = {d for days in splits.values() for d in days}
        return cls(window.as_of.isoformat(), splits, {d: versions[d] for d in sorted(used)})

    def days(self, split: str) -> list[dt.date]:
        return [dt.date.fromisoformat(d) for d in self.splits[split]]

    def to_dict(self) -> dict:
        return {"as_of": self.as_of, "splits": {k: list(v) for k, v in self.splits.items()},
                "data_versions": dict(self.data_versions)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainingManifest":
        return cls(str(raw["as_of"]), {k: [str(d) for d in v] for k, v in raw["splits"].items()},
                   {str(k): str(v) for k, v in raw["data_versions"].items()})

    @classmethod
    def from_json(cls, text: str) -> "TrainingManifest":
        return cls.from_dict(json.loads(text))


def _day_key(day: dt.date | str) -> str:
    return day.isoformat() if isinstance(day, dt.date) else dt.date.fromisoformat(str(day)).isoformat()


# --------------------------------------------------------------------------------------------- estimator


def build_estimator(spec: DatasetSpec, policy: TrainingPolicy):
    choices = ESTIMATORS[spec.task]
    if policy.estimator not in choices:
        other = next((t for t, names in ESTIMATORS.items() if policy.estimator in names), None)
        why = f"it is a {other} estimator" if other else "unknown estimator"
        raise ValueError(
            f"training.estimator {policy.estimator!r} cannot be used for task {spec.task!r} ({why}); "
            f"choices: {sorted(choices)}"
        )
    cls, defaults = choices[policy.estimator]
    params = dict(policy.params)
    if "random_state" in params:
        raise ValueError("training.params must not set random_state; set training.seed instead")
    valid = set(cls().get_params())
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(
            f"training.params {unknown} are not parameters of {policy.estimator} ({cls.__name__}); "
            f"valid: {sorted(valid)}"
        )
    return cls(**{**defaults, **params, "random_state": policy.seed})


def build_pipeline(spec: DatasetSpec, policy: TrainingPolicy) -> Pipeline:
    return Pipeline([("preprocess", features.make_preprocessor(spec)), ("model", build_estimator(spec, policy))])


# ------------------------------------------------------------------------------------------------- train


@dataclass(frozen=True)
class Lineage:
    """Everything needed to rebuild a model and to explain a rebuild that differs."""

    task: str
    target: str
    estimator: str
    params: dict
    seed: int
    estimator_params: dict  # the full effective parameters, so a changed library default shows up
    feature_columns: list[str]
    feature_code_version: str
    library_versions: dict[str, str]
    git_commit: str
    data_fingerprint: str
    n_rows: int
    manifest: TrainingManifest | None = None

    def policy(self, base: TrainingPolicy | None = None) -> TrainingPolicy:
        base = base or TrainingPolicy()
        return replace(base, estimator=self.estimator, params=dict(self.params), seed=self.seed)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["manifest"] = self.manifest.to_dict() if self.manifest else None
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict) -> "Lineage":
        raw = dict(raw)
        raw["manifest"] = TrainingManifest.from_dict(raw["manifest"]) if raw.get("manifest") else None
        return cls(**raw)

    @classmethod
    def from_json(cls, text: str) -> "Lineage":
        return cls.from_dict(json.loads(text))


@dataclass
class TrainedModel:
    pipeline: Pipeline
    lineage: Lineage


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "sklearn": sklearn.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "scipy": scipy.__version__}


def current_git_commit(repo_dir: Path | None = None) -> str:
    """HEAD of the repository holding this package, or "unknown" (installed package, no git, timeout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir or Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def labels(spec: DatasetSpec, frame: pd.DataFrame) -> np.ndarray:
    """The target as the model learns it: 1/0 for "is the positive label" (classification), floats otherwise."""
    if spec.target not in frame.columns:
        raise ValueError(f"frame has no target column {spec.target!r}; join the labels first")
    raw = frame[spec.target]
    if raw.isna().any():
        raise ValueError(f"{int(raw.isna().sum())} rows have no {spec.target!r} label")
    if spec.is_classification:
        return (features.as_category_strings(raw) == str(spec.positive_label)).to_numpy(dtype=np.int64)
    return raw.to_numpy(dtype=np.float64)


def canonical_frame(spec: DatasetSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a model trains on, sorted by key: training must not depend on how days were concatenated."""
    cols = list(dict.fromkeys(spec.key_columns + features.model_input_columns(spec) + [spec.target]))
    _require_columns(frame, cols, "training frame")
    return frame[cols].sort_values(spec.key_columns, kind="mergesort").reset_index(drop=True)


# sha256 over column names, dtypes and row-ordered cell hashes: the same content hash the stored tables use.
data_fingerprint = frame_fingerprint


def train(spec: DatasetSpec, policy: TrainingPolicy, train_frame: pd.DataFrame, *,
          manifest: TrainingManifest | None = None, git_commit: str | None = None) -> TrainedModel:
    frame = canonical_frame(spec, train_frame)
    if frame.empty:
        raise ValueError("training frame is empty")
    y = labels(spec, frame)
    if spec.is_classification and len(np.unique(y)) < 2:
        raise ValueError(
            f"training frame holds only one class of {spec.target!r} "
            f"({'all positive' if y[0] == 1 else 'no positive label ' + repr(spec.positive_label)}); cannot fit"
        )
    pipeline = build_pipeline(spec, policy)
    # One thread for BLAS/OpenMP during fit: reductions then add in one fixed order, so a rebuild of the
    # same data is bit-identical whatever machine or core count it runs on.
    with threadpool_limits(limits=1):
        pipeline.fit(frame[features.model_input_columns(spec)], y)
    lineage = Lineage(
        task=spec.task, target=spec.target, estimator=policy.estimator, params=dict(policy.params),
        seed=policy.seed, estimator_params=_json_params(pipeline.named_steps["model"].get_params()),
        feature_columns=features.model_input_columns(spec), feature_code_version=features.FEATURE_CODE_VERSION,
        library_versions=library_versions(), git_commit=git_commit or current_git_commit(),
        data_fingerprint=data_fingerprint(frame), n_rows=len(frame), manifest=manifest,
    )
    return TrainedModel(pipeline, lineage)


def _json_params(params: dict) -> dict:
    plain = (bool, int, float, str, type(None))
    return {k: v if isinstance(v, plain) else repr(v) for k, v in sorted(params.items())}


# ------------------------------------------------------------------------------------------- prediction


def predict_scores(pipeline: Pipeline, spec: DatasetSpec, frame: pd.DataFrame) -> np.ndarray:
    """Probability of the positive class (classification) or the prediction (regression), one per row."""
    cols = features.model_input_columns(spec)
    _require_columns(frame, cols, "scoring frame")
    return _scores(pipeline, frame[cols])


def _scores(pipeline: Pipeline, x: pd.DataFrame) -> np.ndarray:
    if is_classifier(pipeline):
        classes = list(pipeline.classes_)
        return np.asarray(pipeline.predict_proba(x)[:, classes.index(1)], dtype=np.float64)
    return np.asarray(pipeline.predict(x), dtype=np.float64)


def _require_columns(frame: pd.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing} (has {list(frame.columns)})")


# -------------------------------------------------------------------------------------- reproducibility


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
    _require_columns(frame, cols, "comparison frame")
    sa, sb = _scores(pa, frame[cols]), _scores(pb, frame[cols])
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
