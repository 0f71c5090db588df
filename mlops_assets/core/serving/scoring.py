"""Scoring a day's rows into ledger rows: hash routing between champion and canary, and shadow opinions.

- Routing hashes each entity with sha256 (stable across processes, machines and Python's hash seed) to a
  uniform value u in [0, 1); an entity is in the canary when u < share. So the same entity always goes the
  same way for a salt, and raising the share only adds entities: those in a 5 % canary stay in it at 25 %.
  Use the canary's plan salt (its version by default) so each canary gets its own set of entities.
- While a canary serves, both models score every row: the champion scores the canary's rows as a shadow and
  the canary scores the champion's rows as a shadow (neither acted on). The share limits exposure only; the
  canary's quality evidence comes from every labelled row, so a 5 % canary of 24 rows a day still learns.
- Both models are also timed in CPU time (process time: the OpenMP threads of a model count, other processes
  on a shared machine do not) on the same rows, in interleaved repeats so both see the same machine state;
  `score_batch_timed` returns the repeats for the batch's scoring stats, and their medians go into the ledger.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.serving.ledger import LEDGER_COLUMNS, entity_keys
from mlops_assets.core.training.trainer import labels as label_values
from mlops_assets.core.training.trainer import predict_scores

# Rows each timed call scores: a batch's rows evenly sampled down to it, or repeated up to it, so a call's fixed
# overhead does not dominate 20 rows and the cost stays bounded at 5 million.
LATENCY_TIMING_ROWS = 1000
LATENCY_TIMING_REPEATS = 8  # timed calls per model and batch, alternating which model goes first


class ServingModel(NamedTuple):
    version: str
    pipeline: Any  # a fitted scikit-learn Pipeline, as training builds it


# ------------------------------------------------------------------------------------------------ routing


def route_values(entity_ids, salt: str = "") -> np.ndarray:
    """Each entity's uniform value in [0, 1): the first 8 bytes of sha256(salt, id) over 2**64."""
    ids = pd.Series(entity_ids, dtype=object).astype(str).to_numpy()
    unique, inverse = np.unique(ids, return_inverse=True)
    prefix = f"{len(salt)}:{salt}".encode()  # length-prefixed, so (salt, id) pairs never collide as text
    values = np.fromiter(
        (int.from_bytes(hashlib.sha256(prefix + u.encode()).digest()[:8], "big") for u in unique),
        dtype=np.float64, count=len(unique),
    ) / 2.0 ** 64
    return values[inverse]


def canary_route(entity_ids, share: float, salt: str = "") -> np.ndarray:
    """Boolean mask: True where the entity is served by the canary at this share."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"canary share must be within [0, 1], got {share!r}")
    return route_values(entity_ids, salt) < share


# ------------------------------------------------------------------------------------------------ latency


@dataclass(frozen=True)
class CpuLatency:
    """One batch's interleaved CPU timings of the canary and the champion on the same rows (ms per 1,000 rows)."""

    rows: int  # rows scored by each timed call
    canary_ms_per_1k: tuple[float, ...]
    champion_ms_per_1k: tuple[float, ...]  # repeat i was timed right before or after the canary's repeat i

    def to_dict(self) -> dict:
        return {"rows": self.rows, "canary_ms_per_1k": list(self.canary_ms_per_1k),
                "champion_ms_per_1k": list(self.champion_ms_per_1k)}

    @classmethod
    def from_dict(cls, raw: dict) -> "CpuLatency":
        return cls(int(raw["rows"]), tuple(map(float, raw["canary_ms_per_1k"])),
                   tuple(map(float, raw["champion_ms_per_1k"])))


def timing_rows(frame: pd.DataFrame, rows: int = LATENCY_TIMING_ROWS) -> pd.DataFrame:
    """`rows` rows of the batch: evenly spaced when it has more, repeated when it has fewer."""
    if frame.empty:
        return frame
    picks = np.linspace(0, len(frame) - 1, rows).round().astype(int) if len(frame) > rows else \
        np.resize(np.arange(len(frame)), rows)
    return frame.iloc[picks].reset_index(drop=True)


def compare_cpu_latency(canary_pipeline, champion_pipeline, spec: DatasetSpec, frame: pd.DataFrame,
                        repeats: int = LATENCY_TIMING_REPEATS, rows: int = LATENCY_TIMING_ROWS) -> CpuLatency:
    """CPU time per 1,000 rows of both models on the same rows, in `repeats` interleaved pairs (after a warm-up
    call each), the model going first alternating, so a busy spell of the machine falls on both."""
    sample = timing_rows(frame, rows)
    times = {"canary": [], "champion": []}
    models = {"canary": canary_pipeline, "champion": champion_pipeline}
    for pipeline in models.values():
        predict_scores(pipeline, spec, sample)
    for repeat in range(repeats):
        for side in (("canary", "champion") if repeat % 2 == 0 else ("champion", "canary")):
            start = time.process_time()
            predict_scores(models[side], spec, sample)
            times[side].append((time.process_time() - start) * 1e6 / max(len(sample), 1))
    return CpuLatency(len(sample), tuple(times["canary"]), tuple(times["champion"]))


class ScoredBatch(NamedTuple):
    rows: pd.DataFrame  # ledger rows
    latency: CpuLatency | None  # None when no canary served


# ------------------------------------------------------------------------------------------------ scoring


def score_batch(feature_table: pd.DataFrame, spec: DatasetSpec, champion: ServingModel,
                canary: ServingModel | None = None, shadow: ServingModel | None = None,
                canary_share: float = 0.0, salt: str = "", *, scored_at: pd.Timestamp | None = None) -> pd.DataFrame:
    """The ledger rows of `score_batch_timed`."""
    return score_batch_timed(feature_table, spec, champion, canary, shadow, canary_share, salt,
                             scored_at=scored_at).rows


def score_batch_timed(feature_table: pd.DataFrame, spec: DatasetSpec, champion: ServingModel,
                      canary: ServingModel | None = None, shadow: ServingModel | None = None,
                      canary_share: float = 0.0, salt: str = "", *,
                      scored_at: pd.Timestamp | None = None) -> ScoredBatch:
    """Ledger rows for one batch: each row decided by the champion or the canary (acted on), plus
    not-acted-on shadow rows: the shadow model's on every row, and while a canary runs, the champion's on the
    canary's rows and the canary's on the champion's rows.

    While a canary runs, both models are timed in CPU (`compare_cpu_latency`) on the batch's rows; the repeats
    are returned and their medians go into the two models' rows' `latency_ms_per_1k`."""
    if canary is None and canary_share > 0:
        raise ValueError(f"canary_share is {canary_share} but no canary model was given")
    frame = feature_table.reset_index(drop=True)
    timing = None
    if canary is not None and len(frame):
        timing = compare_cpu_latency(canary.pipeline, champion.pipeline, spec, frame)
    rows = score_rows(frame, spec, champion, canary, shadow, canary_share, salt, scored_at=scored_at, timing=timing)
    return ScoredBatch(rows.drop(columns="row"), timing)


def score_rows(feature_table: pd.DataFrame, spec: DatasetSpec, champion: ServingModel,
               canary: ServingModel | None = None, shadow: ServingModel | None = None,
               canary_share: float = 0.0, salt: str = "", *, scored_at: pd.Timestamp | None = None,
               timing: CpuLatency | None = None) -> pd.DataFrame:
    """The ledger rows of `score_batch_timed` plus `row`, each row's position in `feature_table`, without
    timing the models (the online service scores small batches and has its own latency metrics): the one
    routing and scoring code of batch and online serving. `timing` fills `latency_ms_per_1k` when given."""
    return ledger_frame(score_parts(feature_table, spec, champion, canary, shadow, canary_share, salt,
                                    scored_at=scored_at, timing=timing))


class LedgerPart(NamedTuple):
    """One model's rows of a scored batch (a route), as arrays: `ledger_frame` makes them ledger rows."""

    entity: np.ndarray
    timestamp: Any  # the timestamps' pandas array (datetimes, with their unit and timezone)
    score: np.ndarray
    threshold: float | None
    model_version: str
    route: str
    scored_at: pd.Timestamp
    latency_ms_per_1k: float
    row: np.ndarray  # each row's position in the scored feature table

    @property
    def acted_on(self) -> bool:
        return self.route != "shadow"

    @property
    def decision(self) -> np.ndarray:
        """1.0 / 0.0 by the decision threshold (classification), else the prediction itself."""
        return (self.score >= self.threshold).astype(np.float64) if self.threshold is not None else self.score


def score_parts(feature_table: pd.DataFrame, spec: DatasetSpec, champion: ServingModel,
                canary: ServingModel | None = None, shadow: ServingModel | None = None,
                canary_share: float = 0.0, salt: str = "", *, scored_at: pd.Timestamp | None = None,
                timing: CpuLatency | None = None) -> list[LedgerPart]:
    """`score_rows` before its DataFrame: the online service answers from these arrays and leaves the
    DataFrame to the ledger buffer's flush (one per flush rather than one per request)."""
    if canary is None and canary_share > 0:
        raise ValueError(f"canary_share is {canary_share} but no canary model was given")
    scored_at = pd.Timestamp.now(tz="UTC") if scored_at is None else pd.Timestamp(scored_at).tz_convert("UTC")
    frame = feature_table.reset_index(drop=True)
    timestamps = frame[spec.timestamp]
    if not pd.api.types.is_datetime64_any_dtype(timestamps):
        timestamps = pd.to_datetime(timestamps)
    entities = entity_keys(timestamps, frame[spec.entity_id] if spec.entity_id else None)
    to_canary = (canary_route(entities, canary_share, salt) if canary is not None
                 else np.zeros(len(frame), dtype=bool))
    threshold = spec.deployment.decision_threshold if spec.is_classification else None
    latency = {}
    if timing is not None:
        latency = {"canary": float(np.median(timing.canary_ms_per_1k)),
                   "champion": float(np.median(timing.champion_ms_per_1k))}
    stamps, entity_values = timestamps.array, entities.to_numpy(dtype=object)  # .array keeps a timezone

    def part(model: ServingModel, mask: np.ndarray, route: str, timed: str = "") -> LedgerPart:
        whole = bool(mask.all())  # the usual case (no canary): no row selection, which costs more than the rows
        if not mask.any():
            scores = np.empty(0)
        else:
            scores = predict_scores(model.pipeline, spec, frame if whole else frame[mask])
        rows = np.arange(len(frame)) if whole else np.flatnonzero(mask)
        return LedgerPart(entity_values[rows], stamps[rows], scores, threshold, model.version, route, scored_at,
                          latency.get(timed, np.nan), rows)

    parts = [part(champion, ~to_canary, "champion")]
    if canary is not None:
        parts += [part(canary, to_canary, "canary", timed="canary"), part(champion, to_canary, "shadow", "champion"),
                  part(canary, ~to_canary, "shadow", timed="canary")]
    if shadow is not None:
        parts.append(part(shadow, np.ones(len(frame), dtype=bool), "shadow"))
    return parts


def ledger_frame(parts: list[LedgerPart], with_row: bool = True) -> pd.DataFrame:
    """Ledger rows (LEDGER_COLUMNS, plus `row` unless with_row is False) of parts, in order: one DataFrame."""
    parts = [p for p in parts if len(p.score)] or parts[:1]
    sizes = [len(p.score) for p in parts]

    def joined(arrays: list[np.ndarray]) -> np.ndarray:
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    def repeated(values: list, dtype=None) -> np.ndarray:
        return np.repeat(np.array(values, dtype=dtype), sizes)

    scores = joined([p.score for p in parts])
    ts = (pd.Series(parts[0].timestamp) if len(parts) == 1
          else pd.concat([pd.Series(p.timestamp) for p in parts], ignore_index=True))
    columns = {
        "day": ts.dt.date, "entity": pd.Series(joined([p.entity for p in parts]), dtype=object),
        "timestamp": ts, "score": scores,
        "decision": joined([p.decision for p in parts]),
        "threshold": repeated([np.nan if p.threshold is None else p.threshold for p in parts], np.float64),
        "model_version": repeated([p.model_version for p in parts], object),
        "route": repeated([p.route for p in parts], object),
        "acted_on": repeated([p.acted_on for p in parts], bool),
        "scored_at": pd.DatetimeIndex(repeated([p.scored_at.value for p in parts], "datetime64[ns]"), tz="UTC")
                     .as_unit("us"),
        "latency_ms_per_1k": repeated([p.latency_ms_per_1k for p in parts], np.float64),
    }
    if with_row:
        columns["row"] = joined([p.row for p in parts])
    return pd.DataFrame(columns, columns=[*LEDGER_COLUMNS, *(["row"] if with_row else [])])


def ledger_labels(labels_frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """A labels table (the spec's key columns and target) keyed like the ledger: entity, timestamp, label."""
    ts = pd.to_datetime(labels_frame[spec.timestamp]).reset_index(drop=True)
    return pd.DataFrame({
        "entity": entity_keys(ts, labels_frame[spec.entity_id] if spec.entity_id else None),
        "timestamp": ts, "label": label_values(spec, labels_frame.reset_index(drop=True)),
    })
