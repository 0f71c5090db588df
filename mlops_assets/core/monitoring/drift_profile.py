"""The reference profile: what drift monitoring keeps of a model's training data, small enough for JSON.

`ReferenceProfile.build` runs once, when a model is trained, and is stored with the model; the daily drift
report (drift.py) then compares rows with it without touching the training data again.

Numeric features are binned on a fixed grid of `GRID_CELLS` equal cells spanning the reference's central
range (values beyond it fall in the end cells). Binning a column is then arithmetic plus `np.bincount` over
cache-sized chunks, several times faster than a binary search per value, and the ~`N_BINS` reporting bins
are runs of cells cut at the reference's quantiles. Reference and current rows go through the same
function, so a value always lands in the same bin on both sides. A numeric profile also keeps a sorted
sample (evenly spaced order statistics) for exact tests on small batches; a categorical profile keeps the
shares of the spec's categories, of values outside them ("other") and of missing values. Each feature's
profile (and the scores') also keeps its `DaySpread`: how far single reference days sit from the rest of
the reference, which sets the feature's drift floor (drift_floors.py).

Serialised with `PROFILE_VERSION`; a version-1 document (before day spreads) still loads, without spreads
and with every zero-weight feature unmonitored, which is how version 1 was judged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

import numpy as np
import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.monitoring.drift_floors import (DaySpread, ReferenceUnits, categorical_unit_effects,
                                                       numeric_unit_effects, reference_units, spread_of)

N_BINS = 50
GRID_CELLS = 16384
GRID_QUANTILES = (0.005, 0.995)
SAMPLE_SIZE = 2000  # sorted reference values kept for the exact KS test on small batches
OTHER, MISSING = "__other__", "__missing__"
PROFILE_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_CHUNK = 32768  # rows per binning step: the temporaries stay in the CPU cache


class Scan(NamedTuple):
    """One pass of a numeric column over a profile's grid."""

    cells: np.ndarray  # rows per grid cell, NaN excluded; values beyond the grid count in the end cells
    n_nan: int
    mean: float | None  # of the non-NaN values; None when +-inf are present
    below: float | None  # mean over non-NaN rows of max(lo - x, 0): how far the rows reach below the grid
    above: float | None  # mean over non-NaN rows of max(x - hi, 0)


def _scan(values: np.ndarray, lo: float, hi: float, cells: int) -> Scan:
    inv_width = cells / (hi - lo)
    top = np.nextafter(cells, 0)  # just below `cells`: truncates to the last cell
    counts = np.zeros(cells, np.int64)
    buf = np.empty(min(_CHUNK, len(values)))
    idx = np.empty(len(buf), np.intp)
    nan = np.empty(len(buf), bool)
    n_nan, total, floored, clipped = 0, 0.0, 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore"):  # +-inf make the sums inf or NaN: None then
        for start in range(0, len(values), _CHUNK):
            chunk = values[start:start + _CHUNK]
            t, c, m = buf[:len(chunk)], idx[:len(chunk)], nan[:len(chunk)]
            k = np.count_nonzero(np.isnan(chunk, out=m))
            n_nan += k
            total += np.add.reduce(chunk, where=np.logical_not(m, out=m)) if k else np.add.reduce(chunk)
            np.subtract(chunk, lo, out=t)
            t *= inv_width  # position in cells
            np.fmax(t, 0, out=t)  # fmax/fmin send NaN to cell 0 (taken out below) and clip +-inf
            floored += np.add.reduce(t)
            np.fmin(t, top, out=t)
            clipped += np.add.reduce(t)
            c[...] = t
            counts += np.bincount(c, minlength=cells)
    counts[0] -= n_nan
    n = len(values) - n_nan
    if not n or not math.isfinite(total + floored):
        return Scan(counts, n_nan, None, None, None)
    position = (total - n * lo) * inv_width  # sum of unclipped positions, in cells
    return Scan(counts, n_nan, total / n, (floored - position) / inv_width / n,
                (floored - clipped) / inv_width / n)


def numeric_values(column: pd.Series) -> np.ndarray:
    """A column as a float64 array with NaN for missing; a view when it already is one."""
    if column.dtype == np.float64:
        return column.to_numpy()  # a view, no copy
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass(frozen=True)
class NumericProfile:
    name: str
    count: int  # reference rows with a finite value (+-inf rows are left out of the profile)
    null_share: float
    mean: float | None
    std: float | None
    minimum: float | None
    maximum: float | None
    grid: tuple[float, float, int]  # lo, hi, cells
    boundaries: tuple[int, ...]  # bin i = grid cells [boundaries[i], boundaries[i+1])
    proportions: tuple[float, ...]  # share of non-null reference rows per bin
    sample: tuple[float, ...]  # evenly spaced order statistics, sorted
    tails: tuple[float, float]  # Scan.below and Scan.above of the reference rows
    kind: str = field(default="numeric", init=False)
    spread: DaySpread | None = None  # None: not measured (a constant, too few rows, a version-1 profile)

    @property
    def is_constant(self) -> bool:
        """No spread up to float noise (e.g. an imputed source): effect sizes are then relative to the value."""
        return self.count > 0 and self.std <= 1e-9 * abs(self.mean)

    def with_spread(self, values: np.ndarray, units: ReferenceUnits) -> "NumericProfile":
        if self.count == 0 or self.is_constant:
            return self
        effects = numeric_unit_effects(self, np.asarray(values, dtype=np.float64), units, self.std)
        return replace(self, spread=spread_of(effects, units.unit))

    @classmethod
    def from_values(cls, name: str, values, sample_size: int = SAMPLE_SIZE) -> "NumericProfile":
        x = np.asarray(values, dtype=np.float64)
        finite = np.sort(x[np.isfinite(x)])
        if len(finite) == 0:
            return cls(name, 0, 1.0 if len(x) else 0.0, None, None, None, None, (0.0, 1.0, GRID_CELLS),
                       (0, GRID_CELLS), (1.0,), (), (0.0, 0.0))
        lo, hi = np.quantile(finite, GRID_QUANTILES)
        spread = hi - lo if hi - lo > 1e-9 * max(abs(lo), abs(hi)) else 0.0  # float noise is no spread
        pad = spread * 0.01 if spread else max(abs(lo), 1.0) * 0.5  # a constant sits mid-grid
        lo, hi = float(lo - pad), float(hi + pad)
        scan = _scan(x[~np.isinf(x)], lo, hi, GRID_CELLS)
        counts, n_nan = scan.cells, int(np.isnan(x).sum())
        n = int(counts.sum())
        cdf = np.concatenate([[0], np.cumsum(counts)]) / n
        cuts = np.searchsorted(cdf, np.arange(1, N_BINS) / N_BINS, side="left")
        used = np.flatnonzero(counts)
        bounds = np.unique(np.concatenate([[0, GRID_CELLS, used[0], used[-1] + 1], cuts]))
        take = np.unique(np.round(np.linspace(0, len(finite) - 1, min(sample_size, len(finite)))).astype(int))
        return cls(
            name, n, n_nan / len(x), float(finite.mean()), float(finite.std()), float(finite[0]),
            float(finite[-1]), (lo, hi, GRID_CELLS), tuple(int(b) for b in bounds),
            tuple(float(p) for p in np.add.reduceat(counts, bounds[:-1]) / n),
            tuple(float(v) for v in finite[take]), (float(scan.below), float(scan.above)),
        )

    def scan(self, values: np.ndarray) -> Scan:
        return _scan(values, *self.grid)

    def to_bins(self, cells: np.ndarray) -> np.ndarray:
        """Grid-cell counts summed into this profile's bins."""
        return np.add.reduceat(cells, np.asarray(self.boundaries[:-1]))

    def cell_cdf(self) -> np.ndarray:
        """The reference CDF at the grid's cell edges, from the sorted sample: its steps keep ties (discrete
        values) where they are, which interpolating within the coarse bins would smear."""
        lo, hi, cells = self.grid
        edges = lo + np.arange(cells + 1) * ((hi - lo) / cells)
        return np.searchsorted(np.asarray(self.sample), edges, side="left") / max(len(self.sample), 1)

    def bin_edges(self) -> np.ndarray:
        """Bin boundaries as values; the end bins reach the reference's minimum and maximum."""
        lo, hi, cells = self.grid
        edges = lo + np.asarray(self.boundaries, dtype=float) * ((hi - lo) / cells)
        if self.minimum is not None:
            edges[0], edges[-1] = min(edges[0], self.minimum), max(edges[-1], self.maximum)
        return edges

    def to_dict(self) -> dict:
        return {**asdict(self), "grid": list(self.grid), "boundaries": list(self.boundaries),
                "proportions": list(self.proportions), "sample": list(self.sample), "tails": list(self.tails),
                "spread": self.spread.to_dict() if self.spread else None}

    @classmethod
    def from_dict(cls, raw: dict) -> "NumericProfile":
        kw = {k: v for k, v in raw.items() if k not in ("kind", "spread")}
        lo, hi, cells = kw["grid"]
        kw.update(grid=(float(lo), float(hi), int(cells)), boundaries=tuple(kw["boundaries"]),
                  proportions=tuple(kw["proportions"]), sample=tuple(kw["sample"]), tails=tuple(kw["tails"]))
        profile = cls(**kw)
        return replace(profile, spread=DaySpread.from_dict(raw.get("spread")))


def category_label(value) -> str | None:
    """A category as the spec writes it (as features.as_category_strings does): 1.0 is "1", NaN is None."""
    if pd.isna(value):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def category_counts(column: pd.Series, categories: tuple[str, ...]) -> np.ndarray:
    """Counts per category, in the order of `categories` (whose last two are OTHER and MISSING)."""
    index = {c: i for i, c in enumerate(categories)}
    counts = np.zeros(len(categories), np.int64)
    tallies = column.value_counts(dropna=False, sort=False)  # one hash per row; labels are few
    for value, n in zip(tallies.index, tallies.to_numpy()):
        label = category_label(value)
        counts[len(categories) - 1 if label is None else index.get(label, len(categories) - 2)] += n
    return counts


@dataclass(frozen=True)
class CategoricalProfile:
    name: str
    count: int  # reference rows, missing included
    categories: tuple[str, ...]  # the spec's categories, then OTHER and MISSING
    proportions: tuple[float, ...]
    kind: str = field(default="categorical", init=False)
    spread: DaySpread | None = None

    is_constant = False  # a single category is a distribution like any other: JS needs no scale

    def with_spread(self, column: pd.Series, units: ReferenceUnits) -> "CategoricalProfile":
        values = column.to_numpy()[units.order]
        counts = np.array([category_counts(pd.Series(values[a:b]), self.categories) for a, b in units.slices()])
        return replace(self, spread=spread_of(categorical_unit_effects(counts), units.unit))

    @classmethod
    def from_values(cls, name: str, values: pd.Series, categories) -> "CategoricalProfile":
        cats = tuple(str(c) for c in categories) + (OTHER, MISSING)
        counts = category_counts(pd.Series(values), cats)
        n = int(counts.sum())
        return cls(name, n, cats, tuple(float(c) for c in counts / max(n, 1)))

    def to_dict(self) -> dict:
        return {**asdict(self), "categories": list(self.categories), "proportions": list(self.proportions),
                "spread": self.spread.to_dict() if self.spread else None}

    @classmethod
    def from_dict(cls, raw: dict) -> "CategoricalProfile":
        profile = cls(raw["name"], int(raw["count"]), tuple(raw["categories"]), tuple(raw["proportions"]))
        return replace(profile, spread=DaySpread.from_dict(raw.get("spread")))


def _profile_from_dict(raw: dict):
    return (NumericProfile if raw["kind"] == "numeric" else CategoricalProfile).from_dict(raw)


@dataclass(frozen=True)
class ReferenceProfile:
    """Everything drift monitoring needs to know about the training data, small enough to store as JSON."""

    features: tuple  # NumericProfile | CategoricalProfile, in the spec's order
    weights: dict  # feature -> normalised importance (sums to 1)
    n_rows: int
    prediction: NumericProfile | None = None
    unmonitored: tuple[str, ...] = ()  # reported, never counted (the spec's `monitor = false`)

    @classmethod
    def build(cls, frame: pd.DataFrame, spec: DatasetSpec, importances: dict[str, float] | None = None,
              sample_size: int = SAMPLE_SIZE, scores=None) -> "ReferenceProfile":
        """Profile `frame` (with the spec's timestamp column, its days set the floors; see drift_floors.py)."""
        units = reference_units(frame, spec.timestamp)
        profiles = []
        for f in spec.features:
            if f.is_numeric:
                values = numeric_values(frame[f.name])
                profiles.append(NumericProfile.from_values(f.name, values, sample_size).with_spread(values, units))
            else:
                column = frame[f.name]
                profiles.append(CategoricalProfile.from_values(f.name, column, f.categories).with_spread(column, units))
        prediction = None
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float64)
            prediction = NumericProfile.from_values("prediction", scores, sample_size).with_spread(scores, units)
        return cls(tuple(profiles), normalise_weights(spec.feature_names, importances), len(frame), prediction,
                   tuple(f.name for f in spec.features if not f.monitor))

    def feature(self, name: str):
        for p in self.features:
            if p.name == name:
                return p
        raise KeyError(f"the reference profile has no feature {name!r}")

    def to_dict(self) -> dict:
        return {"version": PROFILE_VERSION, "n_rows": self.n_rows, "weights": dict(self.weights),
                "features": [p.to_dict() for p in self.features],
                "prediction": self.prediction.to_dict() if self.prediction else None,
                "unmonitored": list(self.unmonitored)}

    @classmethod
    def from_dict(cls, raw: dict) -> "ReferenceProfile":
        version = raw.get("version")
        if version not in _READABLE_VERSIONS:
            raise ValueError(f"reference profile version {version!r}, expected one of {_READABLE_VERSIONS}")
        prediction = NumericProfile.from_dict(raw["prediction"]) if raw.get("prediction") else None
        weights = dict(raw["weights"])
        # Version 1 did not record the spec's monitor flags and never counted a zero-weight feature.
        unmonitored = raw["unmonitored"] if version >= 2 else [n for n, w in weights.items() if w == 0]
        return cls(tuple(_profile_from_dict(p) for p in raw["features"]), weights, int(raw["n_rows"]), prediction,
                   tuple(unmonitored))


def normalise_weights(names: list[str], importances: dict[str, float] | None) -> dict[str, float]:
    """Importances as weights summing to 1; negative or missing ones count 0, all-zero means equal weights."""
    raw = np.array([max(float((importances or {}).get(n, 0.0)), 0.0) for n in names])
    if not np.isfinite(raw).all() or raw.sum() <= 0:
        raw = np.ones(len(names))
    return {n: float(w) for n, w in zip(names, raw / raw.sum())}
