"""Ingesting one landed file into a typed batch, and rejecting a batch into quarantine. No Dagster here."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mlops_assets.core.ingestion.landing import (Quarantine, QuarantineRecord, features_file_name, labels_file_name,
                                                 move_to_quarantine, sha256_bytes)
from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.io.storage import PartitionStore
from mlops_assets.core.ingestion.validation import BatchRejected, ValidationResult, read_batch

RAW_TABLE = {"features": "raw_batch", "labels": "raw_labels"}


class MissingFile(FileNotFoundError):
    pass


@dataclass(frozen=True)
class IngestedBatch:
    frame: pd.DataFrame
    file: str
    sha256: str


def landed_file_name(kind: str, partition: str) -> str:
    return features_file_name(partition) if kind == "features" else labels_file_name(partition)


def ingest(landing, quarantine: Quarantine, spec: DatasetSpec, kind: str, partition: str) -> IngestedBatch:
    """Read and type the day's file. An unreadable file is moved to quarantine before BatchRejected is raised,
    so the bad bytes are kept and a corrected re-delivery can take its place in the landing zone."""
    name = landed_file_name(kind, partition)
    if not landing.exists(name):
        raise MissingFile(f"no {kind} file {name} for partition {partition} in landing zone {landing.describe()}")
    content = landing.read(name)
    try:
        frame = read_batch(content, name, partition, spec, kind)
    except BatchRejected as exc:
        move_to_quarantine(landing, quarantine, name, partition, exc.reason, exc.column)
        raise
    return IngestedBatch(frame, name, sha256_bytes(content))


def reject_batch(landing, quarantine: Quarantine, store: PartitionStore, kind: str, partition: str,
                 result: ValidationResult) -> QuarantineRecord | None:
    """A batch failed validation: keep the landed file in quarantine with the failures as the reason, and
    withdraw the stored raw table so no later run builds features from it."""
    name = landed_file_name(kind, partition)
    columns = sorted({f["column"] for f in result.failures})
    record = move_to_quarantine(landing, quarantine, name, partition, result.summary(), ", ".join(columns) or None)
    store.remove(RAW_TABLE[kind], partition)
    return record
