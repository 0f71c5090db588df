"""The training window and its manifest: which labeled days train, validate and benchmark a model, and the
data version of each, so a rebuild can use exactly the same partitions (or say that it cannot).

Plain functions over dates; `candidate.plan_training_set` reads the partitions and their content hashes.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from mlops_assets.core.config.spec import TrainingPolicy

SPLITS = ("train", "validation", "benchmark")


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
