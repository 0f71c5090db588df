"""Ingesting one day's landed file: read, type and validate it BEFORE anything is written, then either accept it
(write the raw table, archive the bytes, take the file out of the landing zone) or reject it (quarantine the
bytes, keep the previously accepted table untouched). No Dagster here.

Nothing accepted is ever lost: the raw table of a day is only replaced by a version that passed every check,
and every processed version stays on disk by content (archive or quarantine). With no file in the landing
zone, the day is re-ingested from its current archived version (a re-run, a backfill after a code change).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.ingestion.kept import Archive, ArchivedVersion, Quarantine, QuarantineRecord
from mlops_assets.core.ingestion.landing import UnreadableFile
from mlops_assets.core.ingestion.names import landed_file_name
from mlops_assets.core.ingestion.streaming import ByteScan, Progress, read_validated, scan_file, spool
from mlops_assets.core.ingestion.validation import BatchRejected, ValidationResult
from mlops_assets.core.io.storage import PartitionStore

RAW_TABLE = {"features": "raw_batch", "labels": "raw_labels"}
WORK_FOLDER = ".ingest"  # beside the archive: spooled landed files and DuckDB's spill, removed after each run


class MissingFile(FileNotFoundError):
    pass


@dataclass(frozen=True)
class Source:
    """The file being ingested and where it came from: the landing zone (a new delivery, spooled to a local
    file while it was hashed) or the archive (a re-run of the day's current accepted version, read in place)."""

    file: str
    path: Path  # a local file holding exactly the bytes hashed
    sha256: str
    origin: str  # "landing" | "archive"
    scan: ByteScan
    identity: tuple | None = None  # the landed file's (device, inode, size, mtime) when it was read, if stable

    @property
    def size(self) -> int:
        return self.scan.size


@dataclass(frozen=True)
class IngestOutcome:
    source: Source
    validation: ValidationResult
    columns: list[str]  # the file's columns, in order (the table's, when accepted)
    archived: ArchivedVersion | None = None  # accepted: the version the raw table now holds
    quarantined: QuarantineRecord | None = None  # rejected: where the bytes went
    kept: ArchivedVersion | None = None  # rejected: the accepted version the raw table still holds, if any
    fingerprint: str | None = None  # accepted: the written table's content hash (PartitionStore.fingerprint)
    read_path: str = ""  # how the file was read: fast | general | normalised (streaming.py)

    @property
    def accepted(self) -> bool:
        return self.validation.passed

    @property
    def rows(self) -> int:
        return self.validation.rows

    def kept_text(self) -> str:
        if self.kept is None:
            return "no accepted version of this day yet: the raw table stays absent"
        return (f"the previous accepted version was kept: {self.kept.file} sha256 {self.kept.sha256} (archive/"
                f"{self.kept.stored_as}, accepted {self.kept.accepted_at})")


@contextlib.contextmanager
def workspace(archive: Archive) -> Iterator[Path]:
    """A private folder for one ingest, on the archive's file system (a spooled file is then linked into the
    archive or quarantine, not copied), removed afterwards."""
    # beside a local archive; an archive in S3 has no file system to share, so the machine's temporary folder
    parent = (archive.root.parent if archive.root is not None else Path(tempfile.gettempdir())) / WORK_FOLDER
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(parent)
    folder = Path(tempfile.mkdtemp(dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


STALE_SECONDS = 24 * 3600


def _remove_stale(parent: Path) -> None:
    """What a crashed ingest left (a spooled copy, DuckDB's spill) goes once it is a day old: no ingest runs
    that long, so nothing in use is touched."""
    now = time.time()
    for entry in parent.iterdir():
        try:
            if now - entry.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def locate(landing, archive: Archive, kind: str, partition: str, work: Path,
           progress: Progress | None = None) -> Source:
    """The day's file from the landing zone (spooled into `work`), or else its current accepted version from
    the archive (read in place, its sha256 checked)."""
    name = landed_file_name(kind, partition)
    if landing.exists(name):
        try:
            path = work / "landed"
            before = _identity(landing, name)
            scan = spool(landing.iter_chunks(name), path, progress, name)
            # unchanged while it was read: it can later leave the landing zone without being hashed again
            identity = before if before is not None and _identity(landing, name) == before else None
            return Source(name, path, scan.sha256, "landing", scan, identity)
        except FileNotFoundError:
            pass  # taken away between the check and the read: fall back to the archive
        except UnreadableFile as exc:
            if "vanished" not in (exc.strerror or ""):
                raise BatchRejected(name, partition, f"cannot read the landed file: {exc.strerror}") from None
    current = archive.current(kind, partition)
    if current is not None:
        path = archive.local_copy(current, work)
        scan = scan_file(path, progress, current.file)
        if scan.sha256 != current.sha256:
            raise ValueError(f"archived {current.stored_as} does not match its sha256 {current.sha256[:12]}…")
        return Source(current.file, path, current.sha256, "archive", scan)
    raise MissingFile(f"no {kind} file {name} for partition {partition} in landing zone {landing.describe()}, "
                      f"and no accepted version of it in {archive.location(partition)}")


def _identity(landing, name: str):
    identity = getattr(landing, "identity", None)
    return identity(name) if identity is not None else None


def ingest(landing, archive: Archive, quarantine: Quarantine, store: PartitionStore, spec: DatasetSpec, kind: str,
           partition: str, progress: Callable[[str], object] | None = None) -> IngestOutcome:
    """Read, type and validate the day's file, then accept or reject it (see the module's docstring). The file
    is streamed (streaming.py): memory stays bounded whatever its size. `progress(message)` is called as it
    goes (bytes read, rows typed, checks run).

    An unreadable file raises BatchRejected after it was quarantined (`exc.quarantined`, `exc.kept` say where
    the bytes went and which accepted version stays). A readable file that breaks the spec is returned with
    `accepted == False`, already quarantined."""
    report = Progress(progress)
    table = RAW_TABLE[kind]
    with workspace(archive) as work:
        source = locate(landing, archive, kind, partition, work, report)
        kept = archive.current(kind, partition)
        staged = store.staging_path(table, partition)
        try:
            try:
                loaded = read_validated(source.path, source.scan, source.file, partition, spec, kind,
                                        staged=staged, work=work / "read", progress=report)
            except BatchRejected as exc:
                exc.quarantined = _reject(landing, quarantine, source, partition, exc.reason, exc.column)
                exc.kept = kept
                raise
            result = loaded.validation
            if not result.passed:
                columns = sorted({f["column"] for f in result.failures})
                record = _reject(landing, quarantine, source, partition, result.summary(), ", ".join(columns) or None)
                return IngestOutcome(source, result, loaded.columns, quarantined=record, kept=kept,
                                     read_path=loaded.path)
            # Accepted: the bytes first (so the table never holds a version whose bytes are not kept), then the
            # table, then the record of acceptance, then the landing zone is cleared. A crash in between leaves
            # the landed file in place and a re-run repeats every step idempotently.
            archive.store_file(source.file, partition, source.path, source.sha256)
            store.write(table, partition, staged)
            version = archive.accept_file(source.file, partition, source.path, source.sha256)
            if source.origin == "landing":
                landing.remove_if_unchanged(source.file, source.sha256, source.identity)
            return IngestOutcome(source, result, loaded.columns, archived=version,
                                 fingerprint=loaded.fingerprint or store.fingerprint(table, partition),
                                 read_path=loaded.path)
        finally:
            staged.unlink(missing_ok=True)


def _reject(landing, quarantine: Quarantine, source: Source, partition: str, reason: str,
            column: str | None) -> QuarantineRecord | None:
    """Quarantine a landed version (by content) and take it out of the landing zone. An archived version that
    no longer passes (the spec or the parser changed since) stays where it is: it is still the accepted one."""
    if source.origin != "landing":
        return None
    record = quarantine.keep_file(source.file, partition, source.path, source.sha256, reason, column)
    landing.remove_if_unchanged(source.file, source.sha256, source.identity)
    return record
