"""Where every processed landed file goes, byte for byte and by content: the archive (accepted versions) or the
quarantine (rejected ones). Nothing is overwritten: a version is stored as `<partition>/<sha256>_<file>`, so the
same bytes delivered twice are one stored file, and two different versions of a day are two.

    <model data>/archive/<partition>/<sha256>_<file>            every accepted version
    <model data>/archive/<partition>/<kind>.accepted.json       which versions were accepted when (last = current)
    <model data>/quarantine/<partition>/<sha256>_<file>         every rejected version
    <model data>/quarantine/<partition>/<sha256>_<file>.reason.json   why (file, partition, column, reason)

A file whose name carries no calendar date (`features_2025-02-30.csv`) is quarantined under `_not_a_date/`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from mlops_assets.core.ingestion.names import (FILE_KINDS, UnsafeFileName, check_partition_key, is_partition_key,
                                               name_problem, parse_file_name, safe_join, sha256_bytes)
from mlops_assets.core.io.objects import ObjectNotFound, ObjectStore, as_object_store, check_key, join_key

NOT_A_DATE_FOLDER = "_not_a_date"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stored_name(name: str, sha256: str) -> str:
    problem = name_problem(name)
    if problem:
        raise UnsafeFileName(problem)
    return f"{sha256}_{name}"


def _keep_bytes(objects: ObjectStore, key: str, content: bytes, sha256: str) -> None:
    """Write `content` under its content-addressed key unless the very same bytes are already there."""
    if _already_kept(objects, key, len(content), sha256):
        return
    objects.put_bytes(key, content)


def _keep_file(objects: ObjectStore, key: str, source: Path, sha256: str) -> None:
    """Put the file `source` (whose sha256 the caller computed) under its content-addressed key, unless the very
    same bytes are already there: locally a hard link when both are on one file system (no copy of a large
    file), else a streamed copy or upload; atomically either way. `source` stays where it is."""
    source = Path(source)
    path = objects.local_path(key)
    if path is not None and path.is_file() and os.path.samefile(path, source):
        return
    if _already_kept(objects, key, source.stat().st_size, sha256):
        return
    objects.put_file(key, source)


def _already_kept(objects: ObjectStore, key: str, size: int, sha256: str) -> bool:
    """The key holds `size` bytes hashing to `sha256`. On S3 the size is enough: the key names the sha256 and
    an object is only ever published whole, by one PUT of the bytes that were hashed."""
    if objects.size(key) != size:
        return False
    path = objects.local_path(key)
    return path is None or _file_sha256(path) == sha256


def spool_chunks(chunks, folder: Path) -> tuple[Path, str]:
    """Write a stream of byte blocks to a private file in `folder`: (its path, its sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".incoming.", suffix=".tmp")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for block in chunks:
                digest.update(block)
                out.write(block)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------- quarantine


@dataclass(frozen=True)
class QuarantineRecord:
    file: str
    partition: str
    column: str | None
    reason: str
    quarantined_at: str
    stored_as: str
    sha256: str


class Quarantine:
    """Rejected files, kept byte for byte with a note of why: `<root>/<partition>/<sha256>_<file>`, in a local
    folder (a Path) or any ObjectStore."""

    def __init__(self, root: Path | ObjectStore):
        self.objects = as_object_store(root)
        self.root = self.objects.root if self.objects.is_local else None  # the folder, for a local store

    def folder(self, partition: str) -> str:
        return partition if is_partition_key(partition) else NOT_A_DATE_FOLDER

    def key(self, name: str, partition: str, sha256: str) -> str:
        return join_key(self.folder(partition), _stored_name(name, sha256))

    def path(self, name: str, partition: str, sha256: str) -> Path:
        """The kept file (local stores only)."""
        return safe_join(self.root, self.key(name, partition, sha256))

    def location(self, stored_as: str) -> str:
        """Where a record's bytes are, for people (a path or an s3:// URL)."""
        return self.objects.url(stored_as)

    def read(self, record: QuarantineRecord) -> bytes:
        return self.objects.get_bytes(record.stored_as)

    def holds(self, name: str, partition: str, sha256: str) -> bool:
        return self.objects.exists(self.key(name, partition, sha256))

    def keep(self, name: str, partition: str, content: bytes, reason: str, column: str | None = None) -> QuarantineRecord:
        sha256 = sha256_bytes(content)
        key = self.key(name, partition, sha256)
        _keep_bytes(self.objects, key, content, sha256)
        return self._record(name, partition, key, sha256, reason, column)

    def keep_file(self, name: str, partition: str, source: Path, sha256: str, reason: str,
                  column: str | None = None) -> QuarantineRecord:
        """`keep` for a file on disk (its sha256 computed by the caller), without reading it into memory."""
        key = self.key(name, partition, sha256)
        _keep_file(self.objects, key, source, sha256)
        return self._record(name, partition, key, sha256, reason, column)

    def keep_chunks(self, name: str, partition: str, chunks, reason: str, column: str | None = None) -> QuarantineRecord:
        """`keep` for a stream of byte blocks (a landed file read in blocks)."""
        key = self.key(name, partition, "0" * 64)  # refuse an unsafe name before writing anything
        tmp, sha256 = spool_chunks(chunks, self.objects.staging_path(key).parent)
        try:
            return self.keep_file(name, partition, tmp, sha256, reason, column)
        finally:
            tmp.unlink(missing_ok=True)

    def _record(self, name, partition, key: str, sha256: str, reason: str, column: str | None) -> QuarantineRecord:
        record = QuarantineRecord(
            file=name, partition=partition, column=column, reason=reason, quarantined_at=_now(),
            stored_as=key, sha256=sha256,
        )
        self.objects.put_bytes(key + ".reason.json", json.dumps(asdict(record), indent=2).encode())
        return record

    def records(self, partition: str | None = None) -> list[QuarantineRecord]:
        """Every record (of one partition if given), oldest first."""
        folders = [check_partition_key(partition)] if partition else self.objects.list_folders()
        known = {f.name for f in fields(QuarantineRecord)}
        records = []
        for folder in folders:
            for name in self.objects.list_names(folder):
                if not name.endswith(".reason.json"):
                    continue
                try:
                    raw = json.loads(self.objects.get_bytes(f"{folder}/{name}"))
                    records.append(QuarantineRecord(**{k: raw.get(k) for k in known}))
                except (OSError, ValueError, TypeError):
                    continue  # a half-written or foreign note must not hide the others
        return sorted(records, key=lambda r: (r.quarantined_at or "", r.stored_as or ""))


# ---------------------------------------------------------------------------------------------- archive


@dataclass(frozen=True)
class ArchivedVersion:
    file: str
    partition: str
    sha256: str
    stored_as: str  # relative to the archive's root
    accepted_at: str


class Archive:
    """Accepted files, byte for byte, by content: `<root>/<partition>/<sha256>_<file>`, with each partition's
    acceptance history per kind (the last entry is the version the raw table holds); in a local folder (a Path)
    or any ObjectStore."""

    def __init__(self, root: Path | ObjectStore):
        self.objects = as_object_store(root)
        self.root = self.objects.root if self.objects.is_local else None  # the folder, for a local store

    def key(self, name: str, partition: str, sha256: str) -> str:
        return join_key(check_partition_key(partition), _stored_name(name, sha256))

    def path(self, name: str, partition: str, sha256: str) -> Path:
        """The archived file (local stores only)."""
        return safe_join(self.root, self.key(name, partition, sha256))

    def location(self, stored_as: str) -> str:
        """Where an archived version's bytes are, for people (a path or an s3:// URL)."""
        return self.objects.url(stored_as)

    def holds(self, name: str, partition: str, sha256: str) -> bool:
        return is_partition_key(partition) and self.objects.exists(self.key(name, partition, sha256))

    def _history_key(self, kind: str, partition: str) -> str:
        if kind not in FILE_KINDS:
            raise ValueError(f"file kind {kind!r} is not one of {FILE_KINDS}")
        return f"{check_partition_key(partition)}/{kind}.accepted.json"

    def store(self, name: str, partition: str, content: bytes) -> str:
        """The bytes at their content address (idempotent); not yet recorded as accepted. Returns the key."""
        sha256 = sha256_bytes(content)
        key = self.key(name, partition, sha256)
        _keep_bytes(self.objects, key, content, sha256)
        return key

    def store_file(self, name: str, partition: str, source: Path, sha256: str) -> str:
        """`store` for a file on disk (its sha256 computed by the caller), linked or streamed, never loaded."""
        key = self.key(name, partition, sha256)
        _keep_file(self.objects, key, source, sha256)
        return key

    def stored_path(self, version: ArchivedVersion) -> Path:
        """The archived file (local stores only; see `local_copy`)."""
        return safe_join(self.root, check_key(version.stored_as))

    def local_copy(self, version: ArchivedVersion, folder: Path) -> Path:
        """A local file with the version's bytes: the archived file itself when the archive is a local folder,
        else a download into `folder` (not checked here: the caller hashes what it reads)."""
        if self.root is not None:
            return self.stored_path(version)
        return self.objects.download(check_key(version.stored_as), Path(folder) / "archived")

    def accept(self, name: str, partition: str, content: bytes) -> ArchivedVersion:
        """Store the bytes and record them as the partition's current accepted version."""
        key = self.store(name, partition, content)
        return self._record_accepted(name, partition, key, sha256_bytes(content))

    def accept_file(self, name: str, partition: str, source: Path, sha256: str) -> ArchivedVersion:
        """`accept` for a file on disk (its sha256 computed by the caller)."""
        return self._record_accepted(name, partition, self.store_file(name, partition, source, sha256), sha256)

    def _record_accepted(self, name: str, partition: str, key: str, sha256: str) -> ArchivedVersion:
        kind, _ = parse_file_name(name)
        version = ArchivedVersion(file=name, partition=partition, sha256=sha256, stored_as=key, accepted_at=_now())
        history = self.history(kind, partition)
        if not history or history[-1].sha256 != version.sha256:
            history.append(version)
            self.objects.put_bytes(self._history_key(kind, partition),
                                   json.dumps([asdict(v) for v in history], indent=2).encode())
            return version
        return history[-1]

    def history(self, kind: str, partition: str) -> list[ArchivedVersion]:
        try:
            raw = self.objects.get_bytes(self._history_key(kind, partition))
        except ObjectNotFound:
            return []
        return [ArchivedVersion(**entry) for entry in json.loads(raw)]

    def current(self, kind: str, partition: str) -> ArchivedVersion | None:
        """The accepted version the raw table holds, if any."""
        if not is_partition_key(partition):
            return None
        history = self.history(kind, partition)
        return history[-1] if history else None

    def read(self, version: ArchivedVersion) -> bytes:
        content = self.objects.get_bytes(check_key(version.stored_as))
        if sha256_bytes(content) != version.sha256:
            raise ValueError(f"archived {version.stored_as} does not match its sha256 {version.sha256[:12]}…")
        return content


def move_to_quarantine(landing, quarantine: Quarantine, name: str, partition: str, reason: str,
                       column: str | None = None) -> QuarantineRecord | None:
    """Keep the landed file in quarantine with its reason, then take it out of the landing zone (unless a new
    version replaced it meanwhile). Returns None when the file is no longer there (already moved)."""
    if not landing.exists(name):
        return None
    record = quarantine.keep_chunks(name, partition, landing.iter_chunks(name), reason, column)
    landing.remove_if_unchanged(name, record.sha256)
    return record
