"""Rows per day against the expected volume: is today's batch a plausible day, or a fraction of one?

The expectation comes from counts of days already trusted: the current champion's training window (stored in
its monitoring reference as a `VolumeBaseline` when it was trained) or, before any champion, the accepted days
so far. The lower bound is built from those counts' own variability, so one rule holds at 20 rows a day and at
5 million:

- center: the median of all baseline days; or, when the baseline holds at least `WEEKDAY_MIN_DAYS` of the
  day's weekday and their median differs from it beyond the bound, the median of that weekday (weekly
  seasonality: a quiet Sunday is not a broken Monday);
- scale: the robust spread of the counts around their centers (1.4826 x median absolute deviation), but never
  below sqrt(center), the spread of a Poisson count: a feed of 24 rows whose baseline happened to hold exactly
  24 every day still varies by about 5 rows;
- the day fails when its rows fall below center - z x scale (`IngestionPolicy.volume_z`). A day with more rows
  than usual is noted, never blocked.

A person may accept a genuinely small day (a holiday, a known outage): `VolumeAcceptance` records who, why and
which version of the day's table they looked at; the check then passes for that version, saying so, and judges
any later delivery of the day afresh.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass

import numpy as np

from mlops_assets.core.config.policies import IngestionPolicy
from mlops_assets.core.io.storage import PartitionStore

WEEKDAY_MIN_DAYS = 4
MAD_TO_STD = 1.4826  # the MAD of a normal sample times this estimates its standard deviation
ACCEPTANCES = "volume_acceptance"  # the store's documents: one per accepted day


@dataclass(frozen=True)
class VolumeBaseline:
    """Row counts of the days a model version was trained on (its window), kept in its monitoring reference."""

    counts: dict[str, int]  # ISO day -> rows

    def to_dict(self) -> dict:
        return {"counts": dict(sorted(self.counts.items()))}

    @classmethod
    def from_dict(cls, raw: dict) -> "VolumeBaseline":
        return cls({str(k): int(v) for k, v in raw["counts"].items()})


@dataclass(frozen=True)
class VolumeAcceptance:
    """A person's decision that a day's volume is genuine, for one version (content hash) of its table."""

    day: str
    fingerprint: str
    rows: int
    reason: str
    actor: str
    accepted_at: str


@dataclass(frozen=True)
class VolumeVerdict:
    passed: bool
    rows: int
    expected: float | None  # the center
    lower_bound: float | None
    scale: float | None
    baseline_days: int
    source: str  # where the expectation came from
    message: str
    accepted: VolumeAcceptance | None = None

    def metadata(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "accepted" and v is not None}
        if self.accepted is not None:
            out["accepted_by"] = f"{self.accepted.actor} at {self.accepted.accepted_at}: {self.accepted.reason}"
        return out


def expected_range(counts: dict[str, int], day: dt.date, policy: IngestionPolicy) -> tuple[float, float, str]:
    """(center, scale, how) of a count on `day` from the baseline `counts` (see the module)."""
    items = [(dt.date.fromisoformat(k), float(v)) for k, v in counts.items()]
    values = np.array([v for _, v in items])
    weekdays = np.array([d.weekday() for d, _ in items])
    center = float(np.median(values))
    scale = _spread(values - center, center)
    same = weekdays == day.weekday()
    if same.sum() >= WEEKDAY_MIN_DAYS:
        # Only a weekday that differs beyond the noise gets its own center: a median of a few days is noisier
        # than the median of all, so an unseasonal feed keeps the pooled expectation.
        own = float(np.median(values[same]))
        if abs(own - center) > policy.volume_z * scale:
            full = [w for w in set(weekdays.tolist()) if (weekdays == w).sum() >= WEEKDAY_MIN_DAYS]
            residuals = np.concatenate([values[weekdays == w] - np.median(values[weekdays == w]) for w in full])
            return own, _spread(residuals, own), f"median of the {int(same.sum())} {day.strftime('%A')}s"
    return center, scale, f"median of {len(values)} days"


def _spread(residuals: np.ndarray, center: float) -> float:
    mad = MAD_TO_STD * float(np.median(np.abs(residuals - np.median(residuals))))
    return max(mad, math.sqrt(max(center, 0.0)))


def judge_volume(rows: int, day: dt.date, counts: dict[str, int], source: str, policy: IngestionPolicy,
                 acceptance: VolumeAcceptance | None = None) -> VolumeVerdict:
    """Pass or fail one day's row count against the baseline `counts` (a day's own count is left out)."""
    counts = {k: v for k, v in counts.items() if k != day.isoformat()}
    if len(counts) < policy.volume_min_days:
        return VolumeVerdict(True, rows, None, None, None, len(counts), source,
                             f"{rows} rows; not judged: {len(counts)} baseline days from {source}, fewer than "
                             f"[ingestion] volume_min_days = {policy.volume_min_days}")
    center, scale, how = expected_range(counts, day, policy)
    lower = center - policy.volume_z * scale
    expected = f"expected {center:,.0f} ({how} from {source}), spread {scale:,.1f}, lower bound {lower:,.1f} " \
               f"(z = {policy.volume_z:g})"
    if rows >= lower:
        high = center + policy.volume_z * scale
        note = f"; more rows than usual (upper bound {high:,.1f}), not blocking" if rows > high else ""
        return VolumeVerdict(True, rows, center, lower, scale, len(counts), source,
                             f"{rows:,} rows within the expected volume: {expected}{note}")
    short = f"{rows:,} rows, {lower - rows:,.1f} below the lower bound: {expected}"
    if acceptance is not None:
        return VolumeVerdict(True, rows, center, lower, scale, len(counts), source,
                             f"{short}; accepted by {acceptance.actor} at {acceptance.accepted_at}: "
                             f"{acceptance.reason}", acceptance)
    return VolumeVerdict(False, rows, center, lower, scale, len(counts), source, short)


# ------------------------------------------------------------------------------------------- the store


def row_counts(store: PartitionStore, asset: str, days: list[str]) -> dict[str, int]:
    """Rows of each stored partition of `asset` among `days`, from the Parquet footers (no data read)."""
    return store.row_counts(asset, days)


def accepted_day_counts(store: PartitionStore, day: dt.date, policy: IngestionPolicy) -> dict[str, int]:
    """Before any champion: the last `volume_history_days` days before `day` that reached the feature table
    (so days blocked by this check do not lower the expectation)."""
    earlier = [p for p in store.partitions("feature_table") if p < day.isoformat()]
    return row_counts(store, "feature_table", earlier[-policy.volume_history_days:])


def accept_volume(store: PartitionStore, day: str, reason: str, actor: str, fingerprint: str,
                  rows: int) -> VolumeAcceptance:
    if not reason.strip():
        raise ValueError("accepting a day's volume needs a reason")
    record = VolumeAcceptance(day, fingerprint, rows, reason, actor,
                              dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    store.write_json(ACCEPTANCES, day, asdict(record))
    return record


def acceptance_for(store: PartitionStore, day: str, fingerprint: str) -> VolumeAcceptance | None:
    """The acceptance of this version of the day's table, if a person recorded one."""
    if not store.has_document(ACCEPTANCES, day):
        return None
    record = VolumeAcceptance(**store.read_json(ACCEPTANCES, day))
    return record if record.fingerprint == fingerprint else None


def expected_counts(store: PartitionStore, day: dt.date, policy: IngestionPolicy, champion: str | None,
                    load_reference) -> tuple[dict[str, int], str]:
    """The baseline counts for `day` and where they come from: the champion's training window (its monitoring
    reference, `load_reference(version)`), else the accepted days before `day`."""
    if champion is not None:
        try:
            volume = load_reference(champion).volume
        except Exception as exc:  # a damaged or absent reference must not stop ingestion: fall back, say why
            volume, why = None, f"champion {champion}'s reference unreadable ({exc}); "
        else:
            why = f"champion {champion} has no volume baseline (trained before it was recorded); "
        if volume is not None:
            return volume.counts, f"champion {champion}'s training window"
    else:
        why = "no champion yet; "
    return accepted_day_counts(store, day, policy), f"{why}the accepted days before {day.isoformat()}"
