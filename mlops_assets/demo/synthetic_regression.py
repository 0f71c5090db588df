"""A seeded generator of an hourly regression target with trend, daily and weekly seasonality and scripted drift,
and the ground truth to score against (the regression sibling of `synthetic.py`).

The process (for a spec like mlops_assets/benchmarks/specs/synthetic_regression.toml: numeric hour, temperature,
humidity, wind, categorical weekday and weather, regression target): `rows_per_day` rows a day spread evenly
over the day (one an hour at 24).

    temperature = 12 + 5 sin(2 pi (hour - 9) / 24) + N(0, 3)        (a daily cycle)
    humidity    = 60 - 1.5 (temperature - 12) + N(0, 8)
    wind        = |N(0, 6)|
    weather     ~ clear / cloudy / rain with probabilities 0.5 / 0.3 / 0.2
    load = 50 + TREND_PER_DAY * day
           + 4 sin(2 pi (hour - 7) / 24)                            (daily seasonality)
           - 3 [weekend]                                            (weekly seasonality)
           + TEMPERATURE_COEF * (temperature - 12) - 0.05 (humidity - 60) + 0.1 wind
           + {clear: 0, cloudy: 0.5, rain: 1.5}[weather] + N(0, NOISE_STD)

The trend is small on purpose (0.01 load a day, 0.3 noise std over 60 days): it is a real, slow change that
a model never retrained pays for, not an alarm-worthy break. Scenarios:

- stable: nothing else changes.
- feature_shift: from the onset, the drift features (default temperature and humidity) move by `magnitude` of
  their standard deviations, abruptly; P(load | features) is unchanged.
- concept_change: from the onset, the temperature coefficient changes sign (heating becomes cooling);
  P(features) is unchanged.

`low_volume_days` maps a day index to the rows that day delivers (e.g. {50: 1}: 1 of 24 rows), a feed
outage rather than a change of the world. Every day draws its random numbers from its own stream, seeded
by (seed, day index), the same numbers whatever the scenario, so days before the onset are identical
across scenarios and any day can be generated alone.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec

SCENARIOS: tuple[str, ...] = ("stable", "feature_shift", "concept_change")
TREND_PER_DAY = 0.01
NOISE_STD = 2.0
TEMPERATURE_COEF = 0.6
DAILY_AMPLITUDE = 4.0
WEEKEND_EFFECT = -3.0
WEATHER = {"clear": (0.5, 0.0), "cloudy": (0.3, 0.5), "rain": (0.2, 1.5)}  # probability, load effect
FEATURE_STD = {"temperature": math.sqrt(5.0**2 / 2 + 3.0**2), "humidity": math.sqrt(1.5**2 * 21.5 + 8.0**2),
               "wind": 6.0 * math.sqrt(1 - 2 / math.pi)}  # of the stable process, for shifts in std units
_DAY_STREAM = 1


@dataclass(frozen=True)
class RegressionScenario:
    scenario: str
    start: dt.date
    days: int
    onset_day: int = 40
    drift_features: tuple[str, ...] = ("temperature", "humidity")
    magnitude: float = 1.5  # feature_shift: in the feature's standard deviations
    rows_per_day: int = 24
    seed: int = 0
    low_volume_days: Mapping[int, int] = field(default_factory=dict)  # day index -> rows delivered that day

    def __post_init__(self):
        problems = []
        if self.scenario not in SCENARIOS:
            problems.append(f"scenario must be one of {list(SCENARIOS)}, got {self.scenario!r}")
        if self.days < 1 or not 1 <= self.rows_per_day <= 24 * 60 or self.onset_day < 0 or self.seed < 0:
            problems.append("days >= 1, rows_per_day in 1..1440, onset_day and seed >= 0")
        unknown = [f for f in self.drift_features if f not in FEATURE_STD]
        if unknown:
            problems.append(f"drift features {unknown} are not numeric features of the process {sorted(FEATURE_STD)}")
        for index, rows in self.low_volume_days.items():
            if not 0 <= index < self.days or not 0 <= rows <= self.rows_per_day:
                problems.append(f"low-volume day {index}: {rows} rows (day within 0..{self.days - 1}, "
                                f"rows within 0..{self.rows_per_day})")
        if problems:
            raise ValueError("invalid regression scenario: " + "; ".join(problems))
        object.__setattr__(self, "low_volume_days", MappingProxyType(dict(sorted(self.low_volume_days.items()))))
        object.__setattr__(self, "drift_features", tuple(self.drift_features))

    def day(self, index: int) -> dt.date:
        return self.start + dt.timedelta(days=index)


@dataclass(frozen=True)
class RegressionTruth:
    """What a scenario did: where its change starts and what it touches."""

    scenario: str
    seed: int
    start: dt.date
    days: int
    rows_per_day: int
    onset: dt.date | None  # first day the change is in effect; None for stable
    onset_day: int | None
    drifting_features: tuple[str, ...]  # feature_shift only
    concept: bool
    trend_per_day: float
    low_volume_days: tuple[tuple[dt.date, int], ...]  # (day, rows delivered)

    def drift_active(self, day: dt.date) -> bool:
        return self.onset is not None and day >= self.onset


@dataclass(frozen=True, eq=False)
class RegressionDay:
    day: dt.date
    index: int
    features: pd.DataFrame  # spec.batch_columns
    labels: pd.DataFrame  # spec.label_columns


def _check(spec: DatasetSpec) -> None:
    needed = set(FEATURE_STD) | {"weather", "hour", "weekday"}
    if spec.is_classification or not needed <= set(spec.feature_names):
        raise ValueError(f"the regression generator needs a regression spec with features {sorted(needed)}; "
                         f"{spec.name!r} is {spec.task} with {spec.feature_names}")


def generate_day(spec: DatasetSpec, cfg: RegressionScenario, index: int) -> RegressionDay:
    """Day `index` of the scenario, without generating the days before it."""
    _check(spec)
    day = cfg.day(index)
    rng = np.random.default_rng([cfg.seed, _DAY_STREAM, index])
    n = cfg.rows_per_day
    # The same draws whatever the scenario: only how they become rows changes.
    slot = 86_400 // n
    seconds = np.arange(n) * slot + rng.integers(0, slot, n)
    z_temp, z_hum, z_wind = rng.standard_normal((3, n))
    u_weather, noise = rng.random(n), rng.standard_normal(n)
    keep = np.sort(rng.permutation(n)[: cfg.low_volume_days.get(index, n)])

    hour = seconds / 3600.0
    active = cfg.scenario != "stable" and index >= cfg.onset_day
    shift = {f: cfg.magnitude * FEATURE_STD[f] for f in cfg.drift_features} if (
        active and cfg.scenario == "feature_shift") else {}
    temperature = 12 + 5 * np.sin(2 * np.pi * (hour - 9) / 24) + 3 * z_temp + shift.get("temperature", 0.0)
    humidity = 60 - 1.5 * (temperature - shift.get("temperature", 0.0) - 12) + 8 * z_hum + shift.get("humidity", 0.0)
    wind = np.abs(6 * z_wind) + shift.get("wind", 0.0)
    names = list(WEATHER)
    codes = np.minimum(np.searchsorted(np.cumsum([p for p, _ in WEATHER.values()]), u_weather, side="right"),
                       len(names) - 1)
    weather = np.asarray(names, dtype=object)[codes]

    weekday = dt.date.weekday(day)
    coef = -TEMPERATURE_COEF if active and cfg.scenario == "concept_change" else TEMPERATURE_COEF
    load = (50 + TREND_PER_DAY * (index + hour / 24) + DAILY_AMPLITUDE * np.sin(2 * np.pi * (hour - 7) / 24)
            + (WEEKEND_EFFECT if weekday >= 5 else 0.0) + coef * (temperature - 12) - 0.05 * (humidity - 60)
            + 0.1 * wind + np.array([e for _, e in WEATHER.values()])[codes] + NOISE_STD * noise)

    frame = pd.DataFrame({spec.timestamp: np.datetime64(day, "s") + seconds.astype("timedelta64[s]"),
                          "hour": np.round(hour, 3), "weekday": str(weekday),
                          "temperature": np.round(temperature, 3), "humidity": np.round(humidity, 3),
                          "wind": np.round(wind, 3), "weather": weather})
    if spec.entity_id:
        frame[spec.entity_id] = [f"H{index:05d}{i:04d}" for i in range(n)]
    frame = frame.iloc[keep].reset_index(drop=True)
    labels = frame[spec.key_columns].copy()
    labels[spec.target] = np.round(load[keep], 3)
    return RegressionDay(day, index, frame[spec.batch_columns], labels[spec.label_columns])


def generate_days(spec: DatasetSpec, cfg: RegressionScenario) -> Iterator[RegressionDay]:
    """The scenario's days in order; deterministic for (spec, cfg)."""
    for index in range(cfg.days):
        yield generate_day(spec, cfg, index)


def ground_truth(spec: DatasetSpec, cfg: RegressionScenario) -> RegressionTruth:
    _check(spec)
    changes = cfg.scenario != "stable"
    return RegressionTruth(
        scenario=cfg.scenario, seed=cfg.seed, start=cfg.start, days=cfg.days, rows_per_day=cfg.rows_per_day,
        onset=cfg.day(cfg.onset_day) if changes else None, onset_day=cfg.onset_day if changes else None,
        drifting_features=cfg.drift_features if cfg.scenario == "feature_shift" else (),
        concept=cfg.scenario == "concept_change", trend_per_day=TREND_PER_DAY,
        low_volume_days=tuple((cfg.day(i), rows) for i, rows in cfg.low_volume_days.items()),
    )
