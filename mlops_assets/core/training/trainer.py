"""Training: the estimator, fitting, lineage and scoring. The data window and its manifest are in `manifest`,
rebuilding a model from its lineage in `reproducibility`.

Plain functions over DataFrames; the Dagster shell loads the labeled-examples partitions and stores results.
A trained model carries a `Lineage`: everything needed to rebuild it bit for bit (seed, parameters, library
and code versions, the exact partitions and their data versions) and to say *why* a rebuild differs.
"""

from __future__ import annotations

import json
import platform
import subprocess
import weakref
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
import sklearn
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
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
from mlops_assets.core.features.compiled_preprocessor import compile_preprocessor
from mlops_assets.core.config.spec import DatasetSpec, TrainingPolicy
from mlops_assets.core.config.tasks import ESTIMATOR_NAMES, estimator_problem
from mlops_assets.core.training.manifest import TrainingManifest
from mlops_assets.core.io.storage import frame_fingerprint

# name -> (estimator class, defaults that differ from scikit-learn's), per task; the names are config.tasks'.
_CLASSES: dict[str, tuple[type, dict]] = {
    "logistic_regression": (LogisticRegression, {"max_iter": 1000}),
    "hist_gradient_boosting": (HistGradientBoostingClassifier, {}),
    "random_forest": (RandomForestClassifier, {"n_estimators": 100}),
    "ridge": (Ridge, {}),
    "hist_gradient_boosting_regressor": (HistGradientBoostingRegressor, {}),
    "random_forest_regressor": (RandomForestRegressor, {"n_estimators": 100}),
}
ESTIMATORS: dict[str, dict[str, tuple[type, dict]]] = {
    task: {name: _CLASSES[name] for name in names} for task, names in ESTIMATOR_NAMES.items()
}


# --------------------------------------------------------------------------------------------- estimator


def params_problems(estimator: str, params: dict) -> list[str]:
    """What is wrong with `training.params` for a valid estimator name: the spec loader reports these too."""
    if "random_state" in params:
        return ["training.params must not set random_state; set training.seed instead"]
    cls = _CLASSES[estimator][0]
    valid = set(cls().get_params())
    unknown = sorted(set(params) - valid)
    if unknown:
        return [f"training.params {unknown} are not parameters of {estimator} ({cls.__name__}); "
                f"valid: {sorted(valid)}"]
    return []


def build_estimator(spec: DatasetSpec, policy: TrainingPolicy):
    problem = estimator_problem(spec.task, policy.estimator)
    if problem:
        raise ValueError(problem)
    params = dict(policy.params)
    if problems := params_problems(policy.estimator, params):
        raise ValueError(problems[0])
    cls, defaults = _CLASSES[policy.estimator]
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
    require_columns(frame, cols, "training frame")
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
    require_columns(frame, cols, "scoring frame")
    # A pipeline whose first step picks its columns by name (the project's ColumnTransformer) takes the feature
    # table as it is: selecting first copies the frame (~0.3 ms of a one-row online request) for the same scores.
    return pipeline_scores(pipeline, frame if _selects_by_name(pipeline, cols) else frame[cols])


def pipeline_scores(pipeline: Pipeline, x: pd.DataFrame) -> np.ndarray:
    """Scores of the model inputs `x` (columns already chosen), as `predict_scores` returns them."""
    positive = _positive_column(pipeline)
    model, inputs = pipeline, x
    compiled = _compiled_preprocessor(pipeline)
    if compiled is not None and isinstance(x, pd.DataFrame):
        matrix = compiled.transform(x)  # the same matrix as the pipeline's first step makes, ~10x cheaper
        if matrix is not None:
            model, inputs = pipeline.steps[-1][1], matrix
    if positive is not None:
        return np.asarray(model.predict_proba(inputs)[:, positive], dtype=np.float64)
    return np.asarray(model.predict(inputs), dtype=np.float64)


_PIPELINE_FACTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # fitted pipeline -> facts, computed once


def _facts(pipeline) -> dict:
    """The cache of one fitted pipeline; a refit (new fitted arrays in its first and last steps) empties it."""
    steps = pipeline.steps if isinstance(pipeline, Pipeline) and pipeline.steps else [(None, pipeline)]
    fitted = tuple(id(getattr(step, attr, None)) for (_, step), attr in
                   ((steps[0], "feature_names_in_"), (steps[-1], "classes_"), (steps[-1], "n_features_in_")))
    try:
        facts = _PIPELINE_FACTS.get(pipeline)
        if facts is None or facts.get("fitted") != fitted:
            facts = _PIPELINE_FACTS[pipeline] = {"fitted": fitted}
        return facts
    except TypeError:  # not weak-referenceable: no cache
        return {}


def _positive_column(pipeline) -> int | None:
    """The predict_proba column of class 1 for a classifier, None for a regressor (is_classifier walks the
    pipeline's tags: ~0.1 ms a call, so it is asked once per fitted pipeline)."""
    facts = _facts(pipeline)
    if "positive" not in facts:
        facts["positive"] = list(pipeline.classes_).index(1) if is_classifier(pipeline) else None
    return facts["positive"]


def prepare_for_scoring(pipeline):
    """`pipeline`, with what predict_scores learns of it once (its positive class, its compiled preprocessor)
    learnt now: a service calls this when it loads a version, so the first request does not pay for it."""
    if isinstance(pipeline, Pipeline):
        _positive_column(pipeline)
        _compiled_preprocessor(pipeline)
    return pipeline


def _compiled_preprocessor(pipeline):
    """The compiled first step of a two-step [ColumnTransformer, estimator] pipeline (None: call the pipeline)."""
    facts = _facts(pipeline)
    if "compiled" not in facts:
        two_steps = isinstance(pipeline, Pipeline) and len(pipeline.steps) == 2
        facts["compiled"] = compile_preprocessor(pipeline.steps[0][1]) if two_steps else None
    return facts["compiled"]


def _selects_by_name(pipeline, cols: list[str]) -> bool:
    """Whether the pipeline's first step is a ColumnTransformer fitted on exactly `cols`, by name (it then
    ignores any other column of a DataFrame)."""
    facts = _facts(pipeline)
    key = ("by_name", tuple(cols))
    if key not in facts:
        first = pipeline.steps[0][1] if isinstance(pipeline, Pipeline) and pipeline.steps else None
        names = getattr(first, "feature_names_in_", None)
        facts[key] = (isinstance(first, ColumnTransformer) and names is not None
                      and list(names) == list(cols))
    return facts[key]


def require_columns(frame: pd.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing} (has {list(frame.columns)})")


