"""The landing zone: where daily files arrive (a local folder, or an S3 prefix).

One features file per day (`features_YYYY-MM-DD.csv`) and a labels file per day that arrives later
(`labels_YYYY-MM-DD.csv`). The date in the name is the partition key. Every file is identified by its
content hash (sha256), so an identical re-delivery is recognised and a corrected one is not mistaken for it.

A scan never fails because of one entry: names that break the convention are listed as rejected, and entries
that cannot be read (a FIFO, socket, device or folder — never opened —, a permission error, a file gone between
listing and reading) as skipped, each with the reason. A scan is given what an earlier one found (size, stamp,
sha256 per name) and reads only files whose size or modification stamp changed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Mapping

from mlops_assets.core.io.atomic import write_atomic
from mlops_assets.core.ingestion.kept import (ArchivedVersion, Archive, Quarantine, QuarantineRecord,
                                              move_to_quarantine)
from mlops_assets.core.ingestion.names import (FILE_KINDS, NotADate, UnsafeFileName, check_file_name,
                                               check_partition_key, features_file_name, labels_file_name,
                                               landed_file_name, name_problem, parse_file_name, safe_join,
                                               sha256_bytes)


class UnreadableFile(OSError):
    """A landed entry that is not a regular file, or that cannot be read."""


@dataclass(frozen=True)
class LandedFile:
    name: str
    kind: str  # "features" | "labels"
    partition: str  # YYYY-MM-DD as written in the name (possibly not a calendar date)
    sha256: str
    size: int
    stamp: str = ""  # what changes when the file is rewritten: mtime in ns (local), ETag (S3)


@dataclass
class LandingScan:
    files: list[LandedFile] = field(default_factory=list)  # conventional names, read and hashed
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (name, why): unsafe or unconventional
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why): could not be read this time
    hashed: int = 0  # how many files were read to hash them (the rest were known by size and stamp)


Known = Mapping[str, tuple[int | None, str | None, str | None]]  # name -> (size, stamp, sha256)


def _known_sha(known: Known | None, name: str, size: int, stamp: str) -> str | None:
    if not known or name not in known:
        return None
    k_size, k_stamp, k_sha = known[name]
    return k_sha if (k_size, k_stamp) == (size, stamp) and k_sha else None


def _kind_of(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return what
    return "not a regular file"


CHUNK = 8 << 20  # bytes per block: a landed file is never held whole in memory, whatever its size
STALE_UPLOAD_SECONDS = 3600  # a dot file unchanged this long is an upload that died, not one in progress


def _stale_upload(entry: os.DirEntry) -> str | None:
    """Why a hidden landed file deserves a warning (an upload abandoned for an hour), or None."""
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return None
    age = time.time() - info.st_mtime
    if not stat.S_ISREG(info.st_mode) or age < STALE_UPLOAD_SECONDS:
        return None
    # no age in the text: the sensor logs a problem once per distinct message, not on every tick
    return (f"hidden file unchanged for over {STALE_UPLOAD_SECONDS // 60} minutes: an upload in progress is named "
            "with a leading dot, so it is never ingested; if it is complete, rename it without the dot, else delete it")


def regular_file_chunks(path: Path, size: int = CHUNK):
    """The bytes of a regular file, block by block. Opened non-blocking and checked with fstat before any read,
    so a FIFO or device put in its place is refused (UnreadableFile, on the first block) instead of blocking
    the caller."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnreadableFile(errno.ENOENT, "vanished between listing and reading", str(path)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(errno.EINVAL, f"{_kind_of(info.st_mode)}, not a regular file: never opened for "
                                 "reading", str(path))
        while True:
            block = os.read(fd, size)
            if not block:
                break
            yield block
    finally:
        os.close(fd)


def hash_chunks(chunks) -> str:
    digest = hashlib.sha256()
    for block in chunks:
        digest.update(block)
    return digest.hexdigest()


def hash_regular_file(path: Path) -> str:
    """The sha256 of a regular file, read block by block (see regular_file_chunks)."""
    return hash_chunks(regular_file_chunks(path))


def read_regular_file(path: Path) -> tuple[bytes, str]:
    """The bytes of a regular file and their sha256 (small files only: the whole file is in memory)."""
    chunks = list(regular_file_chunks(path))
    content = b"".join(chunks)
    return content, sha256_bytes(content)


def _why(exc: OSError) -> str:
    if isinstance(exc, UnreadableFile):
        return exc.strerror
    return f"unreadable: {exc.strerror or exc}"


class LocalLanding:
    """A landing folder on disk (the default: data/landing/<model>/)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def scan(self, known: Known | None = None) -> LandingScan:
        """Every entry of the folder, classified; in-progress uploads (dot files) are skipped, silently while
        they are fresh, with a reason once one has not changed for STALE_UPLOAD_SECONDS (an upload that died)."""
        out = LandingScan()
        if not self.root.exists():
            return out
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            name = entry.name
            if name.startswith("."):
                stale = _stale_upload(entry)
                if stale:
                    out.skipped.append((name, stale))
                continue
            try:
                parse_file_name(name)
                path = safe_join(self.root, name)  # a symlink pointing out of the folder is rejected too
            except UnsafeFileName as exc:
                out.rejected.append((name, str(exc)))
                continue
            try:
                info = os.stat(path)
                if not stat.S_ISREG(info.st_mode):
                    out.skipped.append((name, f"{_kind_of(info.st_mode)}, not a regular file: left alone"))
                    continue
                size, stamp = info.st_size, str(info.st_mtime_ns)
                sha = _known_sha(known, name, size, stamp)
                if sha is None:
                    sha = hash_regular_file(path)
                    out.hashed += 1
            except FileNotFoundError:
                out.skipped.append((name, "vanished between listing and reading"))
                continue
            except OSError as exc:
                out.skipped.append((name, _why(exc)))
                continue
            kind, day = parse_file_name(name)
            out.files.append(LandedFile(name, kind, day, sha, size, stamp))
        return out

    def list_files(self) -> tuple[list[LandedFile], list[tuple[str, str]]]:
        """(well-formed files, [(rejected or unreadable name, why)]), every file hashed."""
        scan = self.scan()
        return scan.files, scan.rejected + scan.skipped

    def _path(self, name: str) -> Path:
        parse_file_name(name)
        return safe_join(self.root, name)

    def read(self, name: str) -> bytes:
        return read_regular_file(self._path(name))[0]

    def iter_chunks(self, name: str):
        """The landed file block by block (UnreadableFile if it is not a regular file or vanished)."""
        return regular_file_chunks(self._path(name))

    def exists(self, name: str) -> bool:
        return os.path.lexists(self._path(name))

    def remove(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def identity(self, name: str) -> tuple[int, int, int, int] | None:
        """(device, inode, size, modification time in ns): what changes when the file is replaced or rewritten."""
        try:
            info = os.stat(self._path(name))
        except OSError:
            return None
        return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

    def remove_if_unchanged(self, name: str, sha256: str, identity: tuple | None = None) -> bool:
        """Take the file out of the landing zone only if it still holds the bytes that were processed (a newer
        delivery that replaced it meanwhile stays for the sensor). With the `identity` it had when it was read,
        an unchanged file is not read again to compare its hash."""
        path = self._path(name)
        if identity is not None and self.identity(name) == tuple(identity):
            path.unlink(missing_ok=True)
            return True
        try:
            current = hash_regular_file(path)
        except OSError:
            return False
        if current != sha256:
            return False
        path.unlink(missing_ok=True)
        return True

    def deliver(self, name: str, content: bytes) -> Path:
        """Drop a file into the landing zone atomically (used by replays and tests)."""
        check_file_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        path = safe_join(self.root, name)
        write_atomic(path, content)
        return path


class S3Landing:
    """A landing prefix in S3 (through dagster-aws's boto3 client). A listing gives each object's size and
    ETag; an object is downloaded and hashed only when those changed since the last scan."""

    def __init__(self, client, bucket: str, prefix: str):
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, name: str) -> str:
        parse_file_name(name)
        return str(PurePosixPath(self.prefix) / name) if self.prefix else name

    def scan(self, known: Known | None = None) -> LandingScan:
        out = LandingScan()
        paginator = self.client.get_paginator("list_objects_v2")
        start = f"{self.prefix}/" if self.prefix else ""
        for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(start):]  # S3 uploads are atomic: no in-progress dot files to skip
                try:
                    kind, day = parse_file_name(name)
                except UnsafeFileName as exc:
                    out.rejected.append((name, str(exc)))
                    continue
                size, stamp = int(obj["Size"]), str(obj.get("ETag", "")).strip('"')
                sha = _known_sha(known, name, size, stamp)
                if sha is None:
                    try:
                        sha = hash_chunks(self.iter_chunks(name))
                        out.hashed += 1
                    except Exception as exc:  # noqa: BLE001 - gone, denied, throttled: this object, this time
                        out.skipped.append((name, f"unreadable: {exc}"))
                        continue
                out.files.append(LandedFile(name, kind, day, sha, size, stamp))
        return out

    def list_files(self) -> tuple[list[LandedFile], list[tuple[str, str]]]:
        scan = self.scan()
        return scan.files, scan.rejected + scan.skipped

    def read(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()

    def iter_chunks(self, name: str, size: int = CHUNK):
        """The object block by block, streamed from S3 (never held whole in memory)."""
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        try:
            while True:
                block = body.read(size)
                if not block:
                    break
                yield block
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    def exists(self, name: str) -> bool:
        resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(name))
        return any(o["Key"] == self._key(name) for o in resp.get("Contents", []))

    def remove(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))

    def identity(self, name: str) -> None:
        return None  # an object is re-read to compare its hash

    def remove_if_unchanged(self, name: str, sha256: str, identity: tuple | None = None) -> bool:
        try:
            if hash_chunks(self.iter_chunks(name)) != sha256:
                return False
        except Exception:  # noqa: BLE001 - already gone or unreadable: nothing to remove
            return False
        self.remove(name)
        return True

    def deliver(self, name: str, content: bytes) -> None:
        check_file_name(name)
        self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=content)


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise ValueError(f"landing S3 location {url!r} must look like s3://bucket/prefix")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix


__all__ = [
    "FILE_KINDS", "Archive", "ArchivedVersion", "LandedFile", "LandingScan", "LocalLanding", "NotADate",
    "Quarantine", "QuarantineRecord", "S3Landing", "UnreadableFile", "UnsafeFileName", "check_file_name",
    "check_partition_key", "features_file_name", "labels_file_name", "landed_file_name", "move_to_quarantine",
    "name_problem", "parse_file_name", "parse_s3_url", "read_regular_file", "regular_file_chunks", "hash_regular_file",
    "safe_join", "sha256_bytes",
]
