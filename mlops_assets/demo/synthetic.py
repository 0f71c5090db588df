"""A seeded generator of daily batches with scripted drift and corruption, and the ground truth to score against.

The base process, for a binary-classification `DatasetSpec`: numeric features ~ Normal(0, 1), categoricals
from fixed, unequal probabilities over the spec's categories, y ~ Bernoulli(sigmoid(intercept + score)) with a
seeded coefficient vector that gives every feature some weight, scaled so a logistic model reaches a ROC AUC
near 0.80, and an intercept that puts the base rate near 30 %.

Every day draws its random numbers from its own stream, seeded by (seed, day index), and draws the same numbers
whatever the scenario, so days before the onset are identical across scenarios and a day can be generated
alone (`generate_day`) without generating the days before it. A scenario only changes how those numbers
become rows:

- stable: nothing changes.
- gradual_shift / abrupt_shift: covariate shift on the chosen features, P(y|x) unchanged. A numeric
  feature's mean moves by `magnitude` standard deviations; a categorical feature's log-probabilities move
  by `magnitude` * linspace(-1, 1) over its categories (mass moves towards the later ones). Gradual
  reaches the full shift on day onset + ramp_days - 1; abrupt on the onset day.
- concept_drift: P(x) unchanged, the chosen features' coefficients flip sign from the onset.
- prior_shift: the base rate's log-odds move by `magnitude` from the onset, P(x|y) unchanged: a pool is
  drawn from the stable process and resampled by class. Predictive features' marginals move as a
  consequence; the ground truth lists no drifting features and sets `prior_shift`.

Corruptions (`corruptions.py`) break only the written features file (`features_file_bytes`), never the clean
frames.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit, logit

from mlops_assets.core.io.atomic import write_atomic
from mlops_assets.core.ingestion.landing import features_file_name, labels_file_name
from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.demo.corruptions import CORRUPTIONS, DECIMALS, corruption_column, csv_bytes, features_file_bytes

SCENARIOS: tuple[str, ...] = ("stable", "gradual_shift", "abrupt_shift", "concept_drift", "prior_shift")
BASE_RATE = 0.30
SCORE_STD = 1.4  # std of the linear score: gives a logistic model a ROC AUC of about 0.80 on stable data
GROUND_TRUTH_FILE = "ground_truth.json"

_PROCESS_STREAM, _DAY_STREAM, _POOL_STREAM = 0, 1, 2


@dataclass(frozen=True)
class ScenarioConfig:
    scenario: str
    start: dt.date
    days: int
    onset_day: int = 30
    drift_features: tuple[str, ...] | None = None  # default: the spec's first two numeric features
    magnitude: float = 1.5
    ramp_days: int = 10
    rows_per_day: int = 500
    seed: int = 0
    corruptions: Mapping[int, str] = field(default_factory=dict)  # day index -> kind

    def __post_init__(self):
        problems = []
        if self.scenario not in SCENARIOS:
            problems.append(f"scenario must be one of {list(SCENARIOS)}, got {self.scenario!r}")
        if self.days < 1 or self.rows_per_day < 1 or self.ramp_days < 1 or self.onset_day < 0 or self.seed < 0:
            problems.append("days, rows_per_day and ramp_days must be >= 1, onset_day and seed >= 0")
        if not math.isfinite(self.magnitude):
            problems.append(f"magnitude must be finite, got {self.magnitude!r}")
        for index, kind in self.corruptions.items():
            if kind not in CORRUPTIONS:
                problems.append(f"corruption on day {index}: {kind!r} is not one of {list(CORRUPTIONS)}")
            if not isinstance(index, int) or not 0 <= index < self.days:
                problems.append(f"corruption day {index!r} is outside 0..{self.days - 1}")
        if problems:
            raise ValueError("invalid scenario config: " + "; ".join(problems))
        # Frozen in fact, not only in name: a caller's later edits to its dict or list cannot leak in.
        object.__setattr__(self, "corruptions", MappingProxyType(dict(sorted(self.corruptions.items()))))
        if self.drift_features is not None:
            object.__setattr__(self, "drift_features", tuple(self.drift_features))

    def day(self, index: int) -> dt.date:
        return self.start + dt.timedelta(days=index)


@dataclass(frozen=True, eq=False)
class DayBatch:
    day: dt.date
    index: int
    features: pd.DataFrame  # spec.batch_columns
    labels: pd.DataFrame  # spec.label_columns, target as 0/1


@dataclass(frozen=True)
class CorruptDay:
    index: int
    day: dt.date
    kind: str
    column: str | None  # the broken column, for column-level corruptions


@dataclass(frozen=True)
class GroundTruth:
    """What a scenario did, so drift detection and validation can be scored against it."""

    scenario: str
    seed: int
    start: dt.date
    days: int
    rows_per_day: int
    onset: dt.date | None  # first day the change is in effect; None for stable
    onset_day: int | None
    drifting_features: tuple[str, ...]  # covariate shift only
    concept: bool
    concept_features: tuple[str, ...]
    prior_shift: bool
    magnitude: float
    ramp_days: int
    base_rate: float
    shifted_base_rate: float | None
    corruptions: tuple[CorruptDay, ...]

    def drift_active(self, day: dt.date) -> bool:
        """True when the scenario's change is in effect on `day` (ramping days included)."""
        return self.onset is not None and day >= self.onset

    def corruption_on(self, day: dt.date) -> CorruptDay | None:
        return next((c for c in self.corruptions if c.day == day), None)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["start"] = self.start.isoformat()
        out["onset"] = self.onset.isoformat() if self.onset else None
        out["drifting_features"] = list(self.drifting_features)
        out["concept_features"] = list(self.concept_features)
        out["corruptions"] = [{**asdict(c), "day": c.day.isoformat()} for c in self.corruptions]
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> "GroundTruth":
        raw = dict(raw)
        raw["start"] = dt.date.fromisoformat(raw["start"])
        raw["onset"] = dt.date.fromisoformat(raw["onset"]) if raw["onset"] else None
        raw["drifting_features"] = tuple(raw["drifting_features"])
        raw["concept_features"] = tuple(raw["concept_features"])
        raw["corruptions"] = tuple(
            CorruptDay(c["index"], dt.date.fromisoformat(c["day"]), c["kind"], c["column"]) for c in raw["corruptions"]
        )
        return cls(**raw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> "GroundTruth":
        return cls.from_dict(json.loads(text))


# ------------------------------------------------------------------------------------------- the process


@dataclass(frozen=True)
class _Process:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    numeric_coef: np.ndarray  # one per numeric feature
    category_probs: tuple[np.ndarray, ...]  # one array per categorical feature
    category_effects: tuple[np.ndarray, ...]  # score contribution of each category, mean zero
    intercept: float


def _category_probs(k: int) -> np.ndarray:
    weights = np.arange(k + 1, 1, -1, dtype=float)  # unequal (k+1 : k : ... : 2), so a shift shows in them
    return weights / weights.sum()


def _build_process(spec: DatasetSpec, seed: int) -> _Process:
    rng = np.random.default_rng([seed, _PROCESS_STREAM])
    numeric, categorical = tuple(spec.numeric_features), tuple(spec.categorical_features)
    # Every feature gets a weight between 0.4 and 1.0 of the largest, with a random sign.
    weights = rng.uniform(0.4, 1.0, len(numeric) + len(categorical))
    signs = rng.choice([-1.0, 1.0], len(weights))
    probs, effects = [], []
    for i, name in enumerate(categorical):
        p = _category_probs(len(spec.feature(name).categories))
        e = rng.normal(size=len(p))
        e -= p @ e
        std = math.sqrt(p @ e**2)
        effects.append(e * weights[len(numeric) + i] / std if std > 0 else e)
        probs.append(p)
    scale = SCORE_STD / math.sqrt((weights**2).sum())
    coef = signs[: len(numeric)] * weights[: len(numeric)] * scale
    effects = [e * scale for e in effects]
    # Intercept for the base rate, found on a fixed sample of the stable process.
    n = 20_000
    score = rng.standard_normal((n, len(numeric))) @ coef
    for p, e in zip(probs, effects):
        score += e[rng.choice(len(p), size=n, p=p)]
    intercept = brentq(lambda b: expit(b + score).mean() - BASE_RATE, -30.0, 30.0)
    return _Process(numeric, categorical, coef, tuple(probs), tuple(effects), float(intercept))


def _resolved_drift_features(spec: DatasetSpec, cfg: ScenarioConfig) -> tuple[str, ...]:
    if cfg.scenario in ("stable", "prior_shift"):
        return ()
    chosen = cfg.drift_features if cfg.drift_features is not None else tuple(spec.numeric_features[:2])
    unknown = [f for f in chosen if f not in spec.feature_names]
    if unknown:
        raise ValueError(f"drift features {unknown} are not features of spec {spec.name!r}")
    if not chosen:
        raise ValueError(f"scenario {cfg.scenario!r} needs at least one drift feature")
    return tuple(dict.fromkeys(chosen))


def _shift_fraction(cfg: ScenarioConfig, index: int) -> float:
    """How much of the full covariate shift is in effect on day `index` (0 before the onset)."""
    if cfg.scenario not in ("gradual_shift", "abrupt_shift") or index < cfg.onset_day:
        return 0.0
    if cfg.scenario == "abrupt_shift":
        return 1.0
    return min(1.0, (index - cfg.onset_day + 1) / cfg.ramp_days)


def _draw_rows(spec, proc: _Process, rng, day: dt.date, n: int, shifted: Mapping[str, float],
               flipped: frozenset[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """n rows sorted by time and their 0/1 labels. Draws the same numbers whatever `shifted` and `flipped`."""
    seconds = np.sort(rng.integers(0, 86_400, n))
    ids = rng.choice(max(1_000_000, 10 * n), size=n, replace=False)
    z = rng.standard_normal((n, len(proc.numeric)))
    u_cat = rng.random((n, len(proc.categorical)))
    u_label = rng.random(n)

    columns: dict[str, object] = {}
    score = np.full(n, proc.intercept)
    for j, name in enumerate(proc.numeric):
        x = np.round(z[:, j] + shifted.get(name, 0.0), DECIMALS)
        columns[name] = x
        score += x * proc.numeric_coef[j] * (-1.0 if name in flipped else 1.0)
    for j, name in enumerate(proc.categorical):
        p = proc.category_probs[j]
        if shifted.get(name):
            p = np.exp(np.log(p) + shifted[name] * np.linspace(-1.0, 1.0, len(p)))
            p /= p.sum()
        codes = np.minimum(np.searchsorted(np.cumsum(p), u_cat[:, j], side="right"), len(p) - 1)
        columns[name] = np.asarray(spec.feature(name).categories, dtype=object)[codes]
        score += proc.category_effects[j][codes] * (-1.0 if name in flipped else 1.0)

    frame = pd.DataFrame({spec.timestamp: np.datetime64(day, "s") + seconds.astype("timedelta64[s]")})
    if spec.entity_id:
        width = len(str(max(1_000_000, 10 * n) - 1))
        frame[spec.entity_id] = [f"C{i:0{width}d}" for i in ids]
    for name in spec.feature_names:
        frame[name] = columns[name]
    return frame[spec.batch_columns], (u_label < expit(score)).astype("int64")


def _check(spec: DatasetSpec, cfg: ScenarioConfig) -> tuple[str, ...]:
    if not spec.is_classification:
        raise ValueError(f"the synthetic generator makes binary-classification data; {spec.name!r} is {spec.task}")
    for index, kind in cfg.corruptions.items():
        corruption_column(spec, kind)  # raises when the spec has no column to break
    return _resolved_drift_features(spec, cfg)


def generate_day(spec: DatasetSpec, cfg: ScenarioConfig, index: int) -> DayBatch:
    """Day `index` of the scenario (clean frames), without generating the days before it."""
    return _generate_day(spec, cfg, _build_process(spec, cfg.seed), _check(spec, cfg), index)


def _generate_day(spec, cfg: ScenarioConfig, proc: _Process, chosen: tuple[str, ...], index: int) -> DayBatch:
    day = cfg.day(index)
    flipped = frozenset(chosen) if cfg.scenario == "concept_drift" and index >= cfg.onset_day else frozenset()
    fraction = _shift_fraction(cfg, index)
    shifted = {name: fraction * cfg.magnitude for name in chosen} if fraction else {}

    if cfg.scenario == "prior_shift" and index >= cfg.onset_day:
        frame, y = _resample_by_class(spec, proc, cfg, day, index)
    else:
        frame, y = _draw_rows(spec, proc, np.random.default_rng([cfg.seed, _DAY_STREAM, index]), day,
                              cfg.rows_per_day, shifted, flipped)
    labels = frame[spec.key_columns].copy()
    labels[spec.target] = y
    return DayBatch(day=day, index=index, features=frame, labels=labels[spec.label_columns])


def _resample_by_class(spec, proc: _Process, cfg: ScenarioConfig, day: dt.date, index: int):
    """Rows with the shifted base rate, drawn by class from a pool of the stable process: P(x|y) is kept."""
    rng = np.random.default_rng([cfg.seed, _POOL_STREAM, index])
    rate = shifted_base_rate(cfg.magnitude)
    n = cfg.rows_per_day
    n_pos = int(rng.binomial(n, rate))
    pool_size = int(n * max(rate / BASE_RATE, (1 - rate) / (1 - BASE_RATE)) * 1.5) + 100
    while True:
        pool, y = _draw_rows(spec, proc, rng, day, pool_size, {}, frozenset())
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        if len(pos) >= n_pos and len(neg) >= n - n_pos:
            break
        pool_size *= 2  # rare: the pool fell short of one class; a bigger pool from the same stream
    keep = np.sort(np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n - n_pos, replace=False)]))
    # The pool is sorted by time, so sorted positions keep the day in time order.
    return pool.iloc[keep].reset_index(drop=True), y[keep]


def shifted_base_rate(magnitude: float) -> float:
    return float(expit(logit(BASE_RATE) + magnitude))


def generate_days(spec: DatasetSpec, cfg: ScenarioConfig) -> Iterator[DayBatch]:
    """The scenario's days in order, as clean frames; deterministic for (spec, cfg)."""
    chosen = _check(spec, cfg)
    proc = _build_process(spec, cfg.seed)
    for index in range(cfg.days):
        yield _generate_day(spec, cfg, proc, chosen, index)


def ground_truth(spec: DatasetSpec, cfg: ScenarioConfig) -> GroundTruth:
    chosen = _check(spec, cfg)
    changes = cfg.scenario != "stable"
    return GroundTruth(
        scenario=cfg.scenario, seed=cfg.seed, start=cfg.start, days=cfg.days, rows_per_day=cfg.rows_per_day,
        onset=cfg.day(cfg.onset_day) if changes else None, onset_day=cfg.onset_day if changes else None,
        drifting_features=chosen if cfg.scenario in ("gradual_shift", "abrupt_shift") else (),
        concept=cfg.scenario == "concept_drift",
        concept_features=chosen if cfg.scenario == "concept_drift" else (),
        prior_shift=cfg.scenario == "prior_shift", magnitude=cfg.magnitude, ramp_days=cfg.ramp_days,
        base_rate=BASE_RATE,
        shifted_base_rate=shifted_base_rate(cfg.magnitude) if cfg.scenario == "prior_shift" else None,
        corruptions=tuple(
            CorruptDay(i, cfg.day(i), kind, corruption_column(spec, kind)) for i, kind in cfg.corruptions.items()
        ),
    )


# ---------------------------------------------------------------------------------------------- writing


_atomic_write = write_atomic


def write_features(spec: DatasetSpec, batch: DayBatch, folder: Path, corruption: str | None = None) -> Path:
    return _atomic_write(Path(folder) / features_file_name(batch.day), features_file_bytes(spec, batch, corruption))


def write_labels(spec: DatasetSpec, batch: DayBatch, folder: Path) -> Path:
    """The labels file is named by the day its events happened, whenever it is written (label delay)."""
    return _atomic_write(Path(folder) / labels_file_name(batch.day), csv_bytes(batch.labels))


def write_ground_truth(truth: GroundTruth, folder: Path) -> Path:
    return _atomic_write(Path(folder) / GROUND_TRUTH_FILE, truth.to_json().encode("utf-8"))


def load_ground_truth(path: Path) -> GroundTruth:
    """Read a ground truth from its file, or from the folder that holds `ground_truth.json`."""
    path = Path(path)
    return GroundTruth.from_json((path / GROUND_TRUTH_FILE if path.is_dir() else path).read_text())


def write_scenario(spec: DatasetSpec, cfg: ScenarioConfig, folder: Path) -> GroundTruth:
    """Every day's features (corrupted where the config says) and labels, and ground_truth.json, in one folder."""
    truth = ground_truth(spec, cfg)
    for batch in generate_days(spec, cfg):
        write_features(spec, batch, folder, cfg.corruptions.get(batch.index))
        write_labels(spec, batch, folder)
    write_ground_truth(truth, folder)
    return truth
