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
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from mlops_assets.core.ingestion.names import (FILE_KINDS, UnsafeFileName, check_partition_key, is_partition_key,
                                               name_problem, parse_file_name, safe_join, sha256_bytes)
from mlops_assets.core.io.atomic import write_atomic

NOT_A_DATE_FOLDER = "_not_a_date"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stored_name(name: str, sha256: str) -> str:
    problem = name_problem(name)
    if problem:
        raise UnsafeFileName(problem)
    return f"{sha256}_{name}"


def _keep_bytes(path: Path, content: bytes, sha256: str) -> None:
    """Write `content` at its content-addressed path unless the very same bytes are already there."""
    if path.is_file() and path.stat().st_size == len(content) and _file_sha256(path) == sha256:
        return
    write_atomic(path, content)


def _keep_file(path: Path, source: Path, sha256: str) -> None:
    """Put the file `source` (whose sha256 the caller computed) at its content-addressed path, unless the very
    same bytes are already there: a hard link when both are on one file system (no copy of a large file), else
    a streamed copy; atomically either way. `source` stays where it is."""
    source = Path(source)
    if path.is_file():
        if os.path.samefile(path, source):
            return
        if path.stat().st_size == source.stat().st_size and _file_sha256(path) == sha256:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    """Rejected files, kept byte for byte with a note of why: `<root>/<partition>/<sha256>_<file>`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def folder(self, partition: str) -> Path:
        return safe_join(self.root, partition if is_partition_key(partition) else NOT_A_DATE_FOLDER)

    def path(self, name: str, partition: str, sha256: str) -> Path:
        return safe_join(self.folder(partition), _stored_name(name, sha256))

    def holds(self, name: str, partition: str, sha256: str) -> bool:
        return self.path(name, partition, sha256).is_file()

    def keep(self, name: str, partition: str, content: bytes, reason: str, column: str | None = None) -> QuarantineRecord:
        sha256 = sha256_bytes(content)
        stored = self.path(name, partition, sha256)
        _keep_bytes(stored, content, sha256)
        return self._record(name, partition, stored, sha256, reason, column)

    def keep_file(self, name: str, partition: str, source: Path, sha256: str, reason: str,
                  column: str | None = None) -> QuarantineRecord:
        """`keep` for a file on disk (its sha256 computed by the caller), without reading it into memory."""
        stored = self.path(name, partition, sha256)
        _keep_file(stored, source, sha256)
        return self._record(name, partition, stored, sha256, reason, column)

    def keep_chunks(self, name: str, partition: str, chunks, reason: str, column: str | None = None) -> QuarantineRecord:
        """`keep` for a stream of byte blocks (a landed file read in blocks)."""
        self.folder(partition)  # refuse an unsafe name before writing anything
        tmp, sha256 = spool_chunks(chunks, self.root)
        try:
            return self.keep_file(name, partition, tmp, sha256, reason, column)
        finally:
            tmp.unlink(missing_ok=True)

    def _record(self, name, partition, stored: Path, sha256: str, reason: str, column: str | None) -> QuarantineRecord:
        record = QuarantineRecord(
            file=name, partition=partition, column=column, reason=reason, quarantined_at=_now(),
            stored_as=str(stored.relative_to(self.root.resolve())), sha256=sha256,
        )
        write_atomic(stored.with_name(stored.name + ".reason.json"), json.dumps(asdict(record), indent=2).encode())
        return record

    def records(self, partition: str | None = None) -> list[QuarantineRecord]:
        """Every record (of one partition if given), oldest first."""
        if not self.root.exists():
            return []
        pattern = f"{check_partition_key(partition)}/*.reason.json" if partition else "*/*.reason.json"
        known = {f.name for f in fields(QuarantineRecord)}
        records = []
        for path in self.root.glob(pattern):
            try:
                raw = json.loads(path.read_text())
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
    acceptance history per kind (the last entry is the version the raw table holds)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, name: str, partition: str, sha256: str) -> Path:
        return safe_join(self.root, check_partition_key(partition), _stored_name(name, sha256))

    def holds(self, name: str, partition: str, sha256: str) -> bool:
        return is_partition_key(partition) and self.path(name, partition, sha256).is_file()

    def _history_path(self, kind: str, partition: str) -> Path:
        if kind not in FILE_KINDS:
            raise ValueError(f"file kind {kind!r} is not one of {FILE_KINDS}")
        return safe_join(self.root, check_partition_key(partition), f"{kind}.accepted.json")

    def store(self, name: str, partition: str, content: bytes) -> Path:
        """The bytes at their content address (idempotent); not yet recorded as accepted."""
        sha256 = sha256_bytes(content)
        path = self.path(name, partition, sha256)
        _keep_bytes(path, content, sha256)
        return path

    def store_file(self, name: str, partition: str, source: Path, sha256: str) -> Path:
        """`store` for a file on disk (its sha256 computed by the caller), linked or streamed, never loaded."""
        path = self.path(name, partition, sha256)
        _keep_file(path, source, sha256)
        return path

    def stored_path(self, version: ArchivedVersion) -> Path:
        return safe_join(self.root, version.stored_as)

    def accept(self, name: str, partition: str, content: bytes) -> ArchivedVersion:
        """Store the bytes and record them as the partition's current accepted version."""
        path = self.store(name, partition, content)
        return self._record_accepted(name, partition, path, sha256_bytes(content))

    def accept_file(self, name: str, partition: str, source: Path, sha256: str) -> ArchivedVersion:
        """`accept` for a file on disk (its sha256 computed by the caller)."""
        return self._record_accepted(name, partition, self.store_file(name, partition, source, sha256), sha256)

    def _record_accepted(self, name: str, partition: str, path: Path, sha256: str) -> ArchivedVersion:
        kind, _ = parse_file_name(name)
        version = ArchivedVersion(file=name, partition=partition, sha256=sha256,
                                  stored_as=str(path.relative_to(self.root.resolve())), accepted_at=_now())
        history = self.history(kind, partition)
        if not history or history[-1].sha256 != version.sha256:
            history.append(version)
            write_atomic(self._history_path(kind, partition),
                         json.dumps([asdict(v) for v in history], indent=2).encode())
            return version
        return history[-1]

    def history(self, kind: str, partition: str) -> list[ArchivedVersion]:
        path = self._history_path(kind, partition)
        if not path.exists():
            return []
        return [ArchivedVersion(**entry) for entry in json.loads(path.read_text())]

    def current(self, kind: str, partition: str) -> ArchivedVersion | None:
        """The accepted version the raw table holds, if any."""
        if not is_partition_key(partition):
            return None
        history = self.history(kind, partition)
        return history[-1] if history else None

    def read(self, version: ArchivedVersion) -> bytes:
        content = safe_join(self.root, version.stored_as).read_bytes()
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
