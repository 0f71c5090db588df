"""Scoring a day's rows into ledger rows: hash routing between champion and canary, and shadow opinions.

- Routing hashes each entity with sha256 (stable across processes, machines and Python's hash seed) to a
  uniform value u in [0, 1); an entity is in the canary when u < share. So the same entity always goes the
  same way for a salt, and raising the share only adds entities: those in a 5 % canary stay in it at 25 %.
  Use the canary's plan salt (its version by default) so each canary gets its own set of entities.
- While a canary serves, the champion also scores the canary's rows as a shadow (not acted on): the
  guardrails then compare both models on the *same* rows, and the final 100 % step still has a comparison.
  Both are also timed on those rows, and the times go into the ledger, so the evidence is all in the ledger.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.evaluation.report import latency_ms_per_1k
from mlops_assets.core.serving.ledger import LEDGER_COLUMNS, entity_keys
from mlops_assets.core.training.trainer import labels as label_values
from mlops_assets.core.training.trainer import predict_scores

LATENCY_SAMPLE_ROWS = 1000  # canary rows timed per batch, bounding the measuring cost on large batches


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


# ------------------------------------------------------------------------------------------------ scoring


def score_batch(feature_table: pd.DataFrame, spec: DatasetSpec, champion: ServingModel,
                canary: ServingModel | None = None, shadow: ServingModel | None = None,
                canary_share: float = 0.0, salt: str = "", *, scored_at: pd.Timestamp | None = None) -> pd.DataFrame:
    """Ledger rows for one batch: each row decided by the champion or the canary (acted on), plus
    not-acted-on shadow rows: the shadow model's on every row, and the champion's on the canary's rows.

    While a canary serves, both it and the champion are timed on (up to LATENCY_SAMPLE_ROWS of) the canary's
    rows, as the promotion gates time models, and the figures go into their rows' `latency_ms_per_1k`."""
    if canary is None and canary_share > 0:
        raise ValueError(f"canary_share is {canary_share} but no canary model was given")
    scored_at = pd.Timestamp.now(tz="UTC") if scored_at is None else pd.Timestamp(scored_at).tz_convert("UTC")
    frame = feature_table.reset_index(drop=True)
    timestamps = pd.to_datetime(frame[spec.timestamp])
    entities = entity_keys(timestamps, frame[spec.entity_id] if spec.entity_id else None)
    to_canary = (canary_route(entities, canary_share, salt) if canary is not None
                 else np.zeros(len(frame), dtype=bool))
    threshold = spec.deployment.decision_threshold if spec.is_classification else None
    latency = {}
    if canary is not None and to_canary.any():
        sample = frame[to_canary].iloc[:LATENCY_SAMPLE_ROWS]
        latency = {"canary": latency_ms_per_1k(canary.pipeline, spec, sample),
                   "shadow": latency_ms_per_1k(champion.pipeline, spec, sample)}

    def rows(model: ServingModel, mask: np.ndarray, route: str, timed: bool = False) -> pd.DataFrame:
        scores = predict_scores(model.pipeline, spec, frame[mask]) if mask.any() else np.empty(0)
        ts = timestamps[mask].reset_index(drop=True)
        return pd.DataFrame({
            "day": ts.dt.date, "entity": entities[mask].reset_index(drop=True), "timestamp": ts,
            "score": scores,
            "decision": (scores >= threshold).astype(np.float64) if threshold is not None else scores,
            "threshold": np.full(len(scores), np.nan if threshold is None else threshold),
            "model_version": model.version, "route": route, "acted_on": route != "shadow",
            "scored_at": pd.Series([scored_at] * len(scores), dtype="datetime64[us, UTC]"),
            "latency_ms_per_1k": np.full(len(scores), latency.get(route, np.nan) if timed else np.nan),
        }, columns=list(LEDGER_COLUMNS))

    parts = [rows(champion, ~to_canary, "champion")]
    if canary is not None:
        parts += [rows(canary, to_canary, "canary", timed=True), rows(champion, to_canary, "shadow", timed=True)]
    if shadow is not None:
        parts.append(rows(shadow, np.ones(len(frame), dtype=bool), "shadow"))
    return pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)


def ledger_labels(labels_frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """A labels table (the spec's key columns and target) keyed like the ledger: entity, timestamp, label."""
    ts = pd.to_datetime(labels_frame[spec.timestamp]).reset_index(drop=True)
    return pd.DataFrame({
        "entity": entity_keys(ts, labels_frame[spec.entity_id] if spec.entity_id else None),
        "timestamp": ts, "label": label_values(spec, labels_frame.reset_index(drop=True)),
    })
