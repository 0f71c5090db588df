"""The landing zone: where daily files arrive, and the quarantine where rejected ones are kept.

One features file per day (`features_YYYY-MM-DD.csv`) and a labels file per day that arrives later
(`labels_YYYY-MM-DD.csv`). The date in the name is the partition key. Every file is identified by its
content hash, so an identical re-delivery is recognised and a corrected one is not mistaken for it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from mlops_assets.core.io.atomic import write_atomic

FILE_KINDS = ("features", "labels")
_NAME_RE = re.compile(r"^(features|labels)_(\d{4}-\d{2}-\d{2})\.csv$")


class UnsafeFileName(ValueError):
    """A name that could escape its folder, or that does not follow the landing convention."""


@dataclass(frozen=True)
class LandedFile:
    name: str
    kind: str  # "features" | "labels"
    partition: str  # YYYY-MM-DD
    sha256: str
    size: int


def features_file_name(day: dt.date | str) -> str:
    return f"features_{_day(day)}.csv"


def labels_file_name(day: dt.date | str) -> str:
    return f"labels_{_day(day)}.csv"


def _day(day: dt.date | str) -> str:
    return day.isoformat() if isinstance(day, dt.date) else check_partition_key(day)


def check_partition_key(key: str) -> str:
    """A partition key is a plain ISO date; anything else (`../x`, `2024-01-01/..`) is rejected."""
    try:
        if dt.date.fromisoformat(key).isoformat() == key:
            return key
    except (TypeError, ValueError):
        pass
    raise UnsafeFileName(f"partition key {key!r} is not a YYYY-MM-DD date")


def check_file_name(name: str) -> tuple[str, str]:
    """Return (kind, partition) for a well-formed landing file name, or raise UnsafeFileName."""
    if not name or "\x00" in name or "/" in name or "\\" in name or name.startswith(".") or ".." in name:
        raise UnsafeFileName(f"file name {name!r} could escape the landing folder")
    match = _NAME_RE.match(name)
    if not match:
        raise UnsafeFileName(
            f"file name {name!r} does not follow the landing convention features_YYYY-MM-DD.csv / "
            "labels_YYYY-MM-DD.csv"
        )
    kind, day = match.groups()
    return kind, check_partition_key(day)


def sha256_bytes(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def safe_join(root: Path, *parts: str) -> Path:
    """Join and refuse any result outside root (through `..`, absolute parts or symlinks)."""
    root = Path(root).resolve()
    target = root.joinpath(*parts).resolve()
    if not target.is_relative_to(root):
        raise UnsafeFileName(f"{'/'.join(parts)!r} resolves outside {root.name}/")
    return target


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
    """Rejected files, kept byte for byte with a note of why: `<root>/<partition>/<stamp>_<file>`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def keep(self, name: str, partition: str, content: bytes, reason: str, column: str | None = None) -> QuarantineRecord:
        check_partition_key(partition)
        folder = safe_join(self.root, partition)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        stored = safe_join(folder, f"{stamp}_{Path(name).name}")
        _atomic_write(stored, content)
        record = QuarantineRecord(
            file=name, partition=partition, column=column, reason=reason,
            quarantined_at=stamp, stored_as=str(stored.relative_to(self.root.resolve())),
            sha256=sha256_bytes(content),
        )
        _atomic_write(stored.with_name(stored.name + ".reason.json"), json.dumps(asdict(record), indent=2).encode())
        return record

    def records(self, partition: str | None = None) -> list[QuarantineRecord]:
        if not self.root.exists():
            return []
        pattern = f"{check_partition_key(partition)}/*.reason.json" if partition else "*/*.reason.json"
        return [QuarantineRecord(**json.loads(p.read_text())) for p in sorted(self.root.glob(pattern))]


_atomic_write = write_atomic


# ---------------------------------------------------------------------------------------- landing zones


class LocalLanding:
    """A landing folder on disk (the default: data/landing/)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def list_files(self) -> tuple[list[LandedFile], list[tuple[str, str]]]:
        """(well-formed files, [(rejected name, why)]); in-progress uploads (dot files) are skipped."""
        files, rejected = [], []
        if not self.root.exists():
            return files, rejected
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if entry.name.startswith(".") or entry.is_dir(follow_symlinks=False):
                continue
            try:
                kind, partition = check_file_name(entry.name)
                safe_join(self.root, entry.name)  # a symlink pointing out of the folder is rejected too
            except UnsafeFileName as exc:
                rejected.append((entry.name, str(exc)))
                continue
            content = Path(entry.path).read_bytes()
            files.append(LandedFile(entry.name, kind, partition, sha256_bytes(content), len(content)))
        return files, rejected

    def read(self, name: str) -> bytes:
        check_file_name(name)
        return safe_join(self.root, name).read_bytes()

    def exists(self, name: str) -> bool:
        check_file_name(name)
        return safe_join(self.root, name).exists()

    def remove(self, name: str) -> None:
        check_file_name(name)
        safe_join(self.root, name).unlink(missing_ok=True)

    def deliver(self, name: str, content: bytes) -> Path:
        """Drop a file into the landing zone atomically (used by replays and tests)."""
        check_file_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        path = safe_join(self.root, name)
        _atomic_write(path, content)
        return path


class S3Landing:
    """A landing prefix in S3 (through dagster-aws's boto3 client). The ETag serves as the content hash
    when listing, so a listing does not download every object."""

    def __init__(self, client, bucket: str, prefix: str):
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, name: str) -> str:
        check_file_name(name)
        return str(PurePosixPath(self.prefix) / name) if self.prefix else name

    def list_files(self) -> tuple[list[LandedFile], list[tuple[str, str]]]:
        files, rejected = [], []
        paginator = self.client.get_paginator("list_objects_v2")
        start = f"{self.prefix}/" if self.prefix else ""
        for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(start):]
                try:
                    kind, partition = check_file_name(name)
                except UnsafeFileName as exc:
                    rejected.append((name, str(exc)))
                    continue
                files.append(LandedFile(name, kind, partition, obj["ETag"].strip('"'), obj["Size"]))
        return files, rejected

    def read(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()

    def exists(self, name: str) -> bool:
        resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(name))
        return any(o["Key"] == self._key(name) for o in resp.get("Contents", []))

    def remove(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))

    def deliver(self, name: str, content: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=content)


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise ValueError(f"landing S3 location {url!r} must look like s3://bucket/prefix")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix


def move_to_quarantine(landing, quarantine: Quarantine, name: str, partition: str, reason: str,
                       column: str | None = None) -> QuarantineRecord | None:
    """Keep the file in quarantine with its reason, then take it out of the landing zone.
    Returns None when the file is no longer there (already quarantined by an earlier attempt)."""
    if not landing.exists(name):
        return None
    record = quarantine.keep(name, partition, landing.read(name), reason, column)
    landing.remove(name)
    return record


__all__ = [
    "FILE_KINDS", "LandedFile", "LocalLanding", "Quarantine", "QuarantineRecord", "S3Landing", "UnsafeFileName",
    "check_file_name", "check_partition_key", "features_file_name", "labels_file_name", "move_to_quarantine",
    "parse_s3_url", "safe_join", "sha256_bytes",
]
