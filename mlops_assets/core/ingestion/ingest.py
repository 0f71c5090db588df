"""Ingesting one day's landed file: read, type and validate it BEFORE anything is written, then either accept it
(write the raw table, archive the bytes, take the file out of the landing zone) or reject it (quarantine the
bytes, keep the previously accepted table untouched). No Dagster here.

Nothing accepted is ever lost: the raw table of a day is only replaced by a version that passed every check,
and every processed version stays on disk by content (archive or quarantine). With no file in the landing
zone, the day is re-ingested from its current archived version (a re-run, a backfill after a code change).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.ingestion.kept import Archive, ArchivedVersion, Quarantine, QuarantineRecord
from mlops_assets.core.ingestion.landing import UnreadableFile
from mlops_assets.core.ingestion.names import landed_file_name, sha256_bytes
from mlops_assets.core.ingestion.validation import BatchRejected, ValidationResult, read_batch, validate_batch
from mlops_assets.core.io.storage import PartitionStore

RAW_TABLE = {"features": "raw_batch", "labels": "raw_labels"}


class MissingFile(FileNotFoundError):
    pass


@dataclass(frozen=True)
class Source:
    """The bytes being ingested and where they came from: the landing zone (a new delivery) or the archive
    (a re-run of the day's current accepted version)."""

    file: str
    content: bytes
    sha256: str
    origin: str  # "landing" | "archive"


@dataclass(frozen=True)
class IngestOutcome:
    source: Source
    validation: ValidationResult
    frame: pd.DataFrame  # the typed batch that was checked (written only when accepted)
    archived: ArchivedVersion | None = None  # accepted: the version the raw table now holds
    quarantined: QuarantineRecord | None = None  # rejected: where the bytes went
    kept: ArchivedVersion | None = None  # rejected: the accepted version the raw table still holds, if any

    @property
    def accepted(self) -> bool:
        return self.validation.passed

    def kept_text(self) -> str:
        if self.kept is None:
            return "no accepted version of this day yet: the raw table stays absent"
        return (f"the previous accepted version was kept: {self.kept.file} sha256 {self.kept.sha256} (archive/"
                f"{self.kept.stored_as}, accepted {self.kept.accepted_at})")


def locate(landing, archive: Archive, kind: str, partition: str) -> Source:
    """The day's file from the landing zone, or else its current accepted version from the archive."""
    name = landed_file_name(kind, partition)
    if landing.exists(name):
        try:
            content = landing.read(name)
            return Source(name, content, sha256_bytes(content), "landing")
        except FileNotFoundError:
            pass  # taken away between the check and the read: fall back to the archive
        except UnreadableFile as exc:
            if "vanished" not in (exc.strerror or ""):
                raise BatchRejected(name, partition, f"cannot read the landed file: {exc.strerror}") from None
    current = archive.current(kind, partition)
    if current is not None:
        return Source(current.file, archive.read(current), current.sha256, "archive")
    raise MissingFile(f"no {kind} file {name} for partition {partition} in landing zone {landing.describe()}, "
                      f"and no accepted version of it in {archive.root}")


def ingest(landing, archive: Archive, quarantine: Quarantine, store: PartitionStore, spec: DatasetSpec, kind: str,
           partition: str) -> IngestOutcome:
    """Read, type and validate the day's file, then accept or reject it (see the module's docstring).

    An unreadable file raises BatchRejected after it was quarantined (`exc.quarantined`, `exc.kept` say where
    the bytes went and which accepted version stays). A readable file that breaks the spec is returned with
    `accepted == False`, already quarantined."""
    source = locate(landing, archive, kind, partition)
    kept = archive.current(kind, partition)
    try:
        frame = read_batch(source.content, source.file, partition, spec, kind)
    except BatchRejected as exc:
        exc.quarantined = _reject(landing, quarantine, source, partition, exc.reason, exc.column)
        exc.kept = kept
        raise
    result = validate_batch(frame, spec, partition, kind)
    if not result.passed:
        columns = sorted({f["column"] for f in result.failures})
        record = _reject(landing, quarantine, source, partition, result.summary(), ", ".join(columns) or None)
        return IngestOutcome(source, result, frame, quarantined=record, kept=kept)
    # Accepted: the bytes first (so the table never holds a version whose bytes are not kept), then the table,
    # then the record of acceptance, then the landing zone is cleared. A crash in between leaves the landed
    # file in place and a re-run repeats every step idempotently.
    archive.store(source.file, partition, source.content)
    store.write(RAW_TABLE[kind], partition, frame)
    version = archive.accept(source.file, partition, source.content)
    if source.origin == "landing":
        landing.remove_if_unchanged(source.file, source.sha256)
    return IngestOutcome(source, result, frame, archived=version)


def _reject(landing, quarantine: Quarantine, source: Source, partition: str, reason: str,
            column: str | None) -> QuarantineRecord | None:
    """Quarantine a landed version (by content) and take it out of the landing zone. An archived version that
    no longer passes (the spec or the parser changed since) stays where it is: it is still the accepted one."""
    if source.origin != "landing":
        return None
    record = quarantine.keep(source.file, partition, source.content, reason, column)
    landing.remove_if_unchanged(source.file, source.sha256)
    return record
