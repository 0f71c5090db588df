"""The dataset spec: the one place that names a dataset's columns, types, ranges, task and policies.

A spec is a TOML file. Loading validates every field and reports *all* mistakes at once, each prefixed
with the file and the key, so a newcomer fixes a spec in one pass instead of one error per run.
No other module names a dataset's columns; they all read them from a `DatasetSpec`.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mlops_assets.core.config.policies import (
    DeploymentPolicy,
    GatePolicy,
    IngestionPolicy,
    MonitoringPolicy,
    SloPolicy,
    TrainingPolicy,
    deployment_problems,
    monitoring_problems,
    slo_problems,
    training_problems,
)
from mlops_assets.core.config.rules import default_estimator, range_problems, task_problems
from mlops_assets.core.config.suggest import did_you_mean
from mlops_assets.core.config.tasks import TASKS

# Keys that moved to another table: the old place is an error that names the new one, not a silent default.
MOVED_KEYS = {("monitoring", "auto_canary"): "deployment"}
# Keys that no longer exist: an error that says what replaced them.
REMOVED_KEYS = {
    **{("monitoring", key): "removed: performance limits come from the reference's own chunk-to-chunk "
                            "variability (performance_warn_std / performance_error_std, in its standard deviations)"
       for key in ("warn_performance_drop", "error_performance_drop")},
    ("monitoring", "even_weight_share"): "removed: every monitored feature drifting beyond its floor now warns on "
                                         "its own",
    ("monitoring", "warn_drift_share"): "removed: every monitored feature drifting beyond its floor now warns on "
                                        "its own",
}

FEATURE_TYPES = ("numeric", "categorical")
SECTIONS = ("dataset", "features", "training", "gates", "ingestion", "monitoring", "deployment", "slo")


class SpecError(ValueError):
    """A dataset spec is invalid; the message lists every problem found, one per line."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"invalid dataset spec {source}:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    type: str  # "numeric" | "categorical"
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()
    nullable: bool = False
    description: str = ""
    monitor: bool = True  # false: profiled but never counted as drift (e.g. day-of-week in daily batches)

    @property
    def is_numeric(self) -> bool:
        return self.type == "numeric"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    timestamp: str
    target: str
    task: str
    features: tuple[FeatureSpec, ...]
    start_date: dt.date
    end_date: dt.date | None = None
    entity_id: str | None = None
    label_delay_days: int = 1
    slices: tuple[str, ...] = ()
    positive_label: str = "1"
    calendar_features: bool = False
    description: str = ""
    source: str = "<memory>"
    training: TrainingPolicy = field(default_factory=TrainingPolicy)
    gates: GatePolicy = field(default_factory=GatePolicy)
    monitoring: MonitoringPolicy = field(default_factory=MonitoringPolicy)
    deployment: DeploymentPolicy = field(default_factory=DeploymentPolicy)
    slo: SloPolicy = field(default_factory=SloPolicy)
    ingestion: IngestionPolicy = field(default_factory=IngestionPolicy)

    @property
    def is_classification(self) -> bool:
        return self.task == "binary_classification"

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.type == "numeric"]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.type == "categorical"]

    @property
    def key_columns(self) -> list[str]:
        """Columns that identify one row: the timestamp and, when the dataset has one, the entity id."""
        return [self.timestamp] + ([self.entity_id] if self.entity_id else [])

    @property
    def batch_columns(self) -> list[str]:
        """Columns a daily features file must carry (the target arrives separately, in the labels file)."""
        cols = self.key_columns + self.feature_names
        cols += [s for s in self.slices if s not in cols]
        return cols

    @property
    def label_columns(self) -> list[str]:
        return self.key_columns + [self.target]

    @property
    def key_metric(self) -> str:
        return self.gates.key_metric or ("roc_auc" if self.is_classification else "rmse")

    def feature(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"{self.source}: no feature named {name!r}")


# ---------------------------------------------------------------------------------------------- loading


def load_spec(path: str | Path) -> DatasetSpec:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(str(path), ["file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(str(path), [f"not valid TOML: {exc}"]) from None
    return spec_from_dict(raw, source=str(path))


def spec_from_dict(raw: dict[str, Any], source: str = "<memory>") -> DatasetSpec:
    problems: list[str] = []
    for key in raw:
        if key not in SECTIONS:
            problems.append(f"{key}: unknown section{_hint(key, SECTIONS)} (expected one of {sorted(SECTIONS)})")

    ds = raw.get("dataset")
    if not isinstance(ds, dict):
        problems.append("dataset: missing [dataset] section")
        ds = {}
    p = _Fields(ds, "dataset", problems)
    name = p.string("name", required=True)
    timestamp = p.string("timestamp", required=True)
    target = p.string("target", required=True)
    task = p.choice("task", TASKS, required=True)
    entity_id = p.string("entity_id") or None
    label_delay = p.integer("label_delay_days", default=1, minimum=0)
    start_date = p.date("start_date", required=True)
    end_date = p.date("end_date")
    slices = tuple(p.string_list("slices"))
    positive_label = str(ds.get("positive_label", 1))
    p.seen.add("positive_label")
    calendar = p.boolean("calendar_features", default=False)
    description = p.string("description")
    p.reject_unknown()

    feats = _load_features(raw.get("features"), problems)
    names = [f.name for f in feats]
    reserved = {c for c in (timestamp, target, entity_id) if c}
    if len(reserved) < len([c for c in (timestamp, target, entity_id) if c]):
        problems.append(f"dataset: timestamp ({timestamp!r}), target ({target!r}) and entity_id ({entity_id!r}) "
                        "must be different columns")
    for n in names:
        if n in reserved:
            problems.append(f"features.{n}: a feature cannot also be the timestamp, target or entity id")
    for s in slices:
        if s not in names:
            problems.append(f"dataset.slices: {s!r} is not a declared feature{_hint(s, names)}; slices must be "
                            "categorical features")
        elif next(f for f in feats if f.name == s).type != "categorical":
            problems.append(f"dataset.slices: {s!r} must be a categorical feature to slice on")
    if start_date and end_date and end_date <= start_date:
        problems.append("dataset.end_date: must be after start_date")

    training = _load_policy(raw.get("training", {}), "training", TrainingPolicy, problems)
    gates = _load_policy(raw.get("gates", {}), "gates", GatePolicy, problems)
    monitoring = _load_policy(raw.get("monitoring", {}), "monitoring", MonitoringPolicy, problems)
    deployment = _load_policy(raw.get("deployment", {}), "deployment", DeploymentPolicy, problems)
    if isinstance(deployment, DeploymentPolicy):
        problems.extend(deployment_problems(deployment))
    if isinstance(monitoring, MonitoringPolicy):
        problems.extend(monitoring_problems(monitoring))
        problems.extend(f"monitoring.drift_floors.{n}: not a declared feature"
                        for n in monitoring.drift_floors if n not in names)
    if isinstance(training, TrainingPolicy):
        problems.extend(training_problems(training))
    slo = _load_policy(raw.get("slo", {}), "slo", SloPolicy, problems)
    ingestion = _load_policy(raw.get("ingestion", {}), "ingestion", IngestionPolicy, problems)
    problems.extend(slo_problems(slo, label_delay))
    if task:
        if isinstance(raw.get("training", {}), dict) and "estimator" not in raw.get("training", {}):
            training = replace(training, estimator=default_estimator(task))
        problems.extend(task_problems(task, training, gates))
    problems.extend(range_problems({"training": training, "gates": gates, "monitoring": monitoring,
                                    "deployment": deployment, "slo": slo}))

    if problems:
        raise SpecError(source, problems)
    return DatasetSpec(
        name=name, timestamp=timestamp, target=target, task=task, features=tuple(feats),
        start_date=start_date, end_date=end_date, entity_id=entity_id, label_delay_days=label_delay,
        slices=slices, positive_label=positive_label, calendar_features=calendar,
        description=description, source=source, training=training, gates=gates, monitoring=monitoring,
        deployment=deployment, slo=slo, ingestion=ingestion,
    )


def _load_features(section: Any, problems: list[str]) -> list[FeatureSpec]:
    if not isinstance(section, dict) or not section:
        problems.append("features: at least one [features.NAME] table is required")
        return []
    out = []
    for fname, body in section.items():
        where = f"features.{fname}"
        if not isinstance(body, dict):
            problems.append(f"{where}: must be a table with at least `type`")
            continue
        p = _Fields(body, where, problems)
        ftype = p.choice("type", FEATURE_TYPES, required=True)
        lo, hi = p.number("min"), p.number("max")
        cats = tuple(str(c) for c in body.get("categories", []))
        p.seen.add("categories")
        nullable = p.boolean("nullable", default=False)
        monitor = p.boolean("monitor", default=True)
        desc = p.string("description")
        p.reject_unknown()
        if ftype == "categorical":
            if not cats:
                problems.append(f"{where}: a categorical feature needs a non-empty `categories` list")
            if lo is not None or hi is not None:
                problems.append(f"{where}: min/max apply to numeric features only")
        if ftype == "numeric" and cats:
            problems.append(f"{where}: `categories` applies to categorical features only")
        if lo is not None and hi is not None and lo > hi:
            problems.append(f"{where}: min ({lo}) is greater than max ({hi})")
        if len(set(cats)) != len(cats):
            problems.append(f"{where}: categories repeat a value")
        out.append(FeatureSpec(fname, ftype or "numeric", lo, hi, cats, nullable, desc, monitor))
    return out


def _load_policy(section: Any, where: str, cls: type, problems: list[str]):
    if not isinstance(section, dict):
        problems.append(f"{where}: must be a table")
        return cls()
    defaults = cls()
    kwargs = {}
    names = {f.name for f in fields(cls)}
    for key, value in section.items():
        if (where, key) in MOVED_KEYS:
            problems.append(f"{where}.{key}: moved to [{MOVED_KEYS[where, key]}] {key}")
            continue
        if (where, key) in REMOVED_KEYS:
            problems.append(f"{where}.{key}: {REMOVED_KEYS[where, key]}")
            continue
        if key not in names:
            problems.append(f"{where}.{key}: unknown key{_hint(key, names)} (expected one of {sorted(names)})")
            continue
        want = type(getattr(defaults, key))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            problems.append(f"{where}.{key}: expected {want.__name__}, got {value!r}")
            continue
        if want in (int, float) and value < 0:
            problems.append(f"{where}.{key}: must not be negative, got {value!r}")
            continue
        kwargs[key] = value
    return cls(**kwargs)


class _Fields:
    """Reads typed fields from one TOML table, collecting problems instead of raising on the first."""

    def __init__(self, table: dict, where: str, problems: list[str]):
        self.table, self.where, self.problems, self.seen = table, where, problems, set()

    def _get(self, key, required):
        self.seen.add(key)
        if key not in self.table:
            if required:
                self.problems.append(f"{self.where}.{key}: required")
            return None
        return self.table[key]

    def string(self, key, required=False) -> str:
        v = self._get(key, required)
        if v is None:
            return ""
        if not isinstance(v, str) or (required and not v.strip()):
            self.problems.append(f"{self.where}.{key}: expected a non-empty string, got {v!r}")
            return ""
        return v

    def choice(self, key, options, required=False) -> str:
        v = self._get(key, required)
        if v is not None and v not in options:
            self.problems.append(f"{self.where}.{key}: must be one of {list(options)}, got {v!r}"
                                 f"{_hint(v, options)}")
            return ""
        return v or ""

    def integer(self, key, default, minimum=None) -> int:
        v = self._get(key, False)
        if v is None:
            return default
        if not isinstance(v, int) or isinstance(v, bool) or (minimum is not None and v < minimum):
            self.problems.append(f"{self.where}.{key}: expected an integer >= {minimum}, got {v!r}")
            return default
        return v

    def number(self, key) -> float | None:
        v = self._get(key, False)
        if v is None:
            return None
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            self.problems.append(f"{self.where}.{key}: expected a number, got {v!r}")
            return None
        return float(v)

    def boolean(self, key, default) -> bool:
        v = self._get(key, False)
        if v is None:
            return default
        if not isinstance(v, bool):
            self.problems.append(f"{self.where}.{key}: expected true or false, got {v!r}")
            return default
        return v

    def date(self, key, required=False) -> dt.date | None:
        v = self._get(key, required)
        if v is None:
            return None
        if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
            return v
        if isinstance(v, str):
            try:
                return dt.date.fromisoformat(v)
            except ValueError:
                pass
        self.problems.append(f"{self.where}.{key}: expected a date YYYY-MM-DD, got {v!r}")
        return None

    def string_list(self, key) -> list[str]:
        v = self._get(key, False)
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.problems.append(f"{self.where}.{key}: expected a list of strings, got {v!r}")
            return []
        return v

    def reject_unknown(self):
        for key in self.table:
            if key not in self.seen:
                self.problems.append(f"{self.where}.{key}: unknown key{_hint(key, self.seen)} "
                                     f"(known: {sorted(self.seen)})")


def _hint(word: str, known) -> str:
    close = did_you_mean(word, known)
    return f", did you mean {close!r}?" if close else ""
