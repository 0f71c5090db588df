"""Landing file names and partition keys: the convention, and the refusal of anything that could escape a folder.

One features file per day (`features_YYYY-MM-DD.csv`) and a labels file per day (`labels_YYYY-MM-DD.csv`); the
date in the name is the partition key. Names are matched whole (`fullmatch`: `$` alone would accept a name
ending in a newline)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from pathlib import Path

FILE_KINDS = ("features", "labels")
_NAME_RE = re.compile(r"(features|labels)_(\d{4}-\d{2}-\d{2})\.csv")
_CONVENTION = "features_YYYY-MM-DD.csv / labels_YYYY-MM-DD.csv"


class UnsafeFileName(ValueError):
    """A name that could escape its folder, or that does not follow the landing convention."""


class NotADate(UnsafeFileName):
    """A conventional name whose date is not a calendar date (`features_2025-02-30.csv`)."""

    def __init__(self, message: str, kind: str, day: str):
        super().__init__(message)
        self.kind, self.day = kind, day


def features_file_name(day: dt.date | str) -> str:
    return f"features_{_day(day)}.csv"


def labels_file_name(day: dt.date | str) -> str:
    return f"labels_{_day(day)}.csv"


def landed_file_name(kind: str, partition: str) -> str:
    if kind not in FILE_KINDS:
        raise ValueError(f"file kind {kind!r} is not one of {FILE_KINDS}")
    return features_file_name(partition) if kind == "features" else labels_file_name(partition)


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


def is_partition_key(key: str) -> bool:
    try:
        check_partition_key(key)
    except UnsafeFileName:
        return False
    return True


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a landed file's name (escaping, hidden, control characters), or None."""
    if not name:
        return "an empty file name"
    if "/" in name or "\\" in name or ".." in name or name.startswith("."):
        return f"file name {name!r} could escape the landing folder"
    controls = [c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    if controls:
        where = "ends in" if name[-1] in controls else "contains"
        what = {"\n": "a newline", "\r": "a carriage return", "\x00": "a NUL byte", "\t": "a tab"}.get(
            controls[0], f"control character U+{ord(controls[0]):04X}")
        return f"file name {name!r} {where} {what}"
    return None


def parse_file_name(name: str) -> tuple[str, str]:
    """(kind, day) of a safe name following the convention; the day is not yet checked to be a real date."""
    problem = name_problem(name)
    if problem:
        raise UnsafeFileName(problem)
    match = _NAME_RE.fullmatch(name)
    if not match:
        raise UnsafeFileName(f"file name {name!r} does not follow the landing convention {_CONVENTION}")
    kind, day = match.groups()
    return kind, day


def check_file_name(name: str) -> tuple[str, str]:
    """Return (kind, partition) for a well-formed landing file name, or raise UnsafeFileName (NotADate when
    only the date is wrong)."""
    kind, day = parse_file_name(name)
    if not is_partition_key(day):
        raise NotADate(f"file name {name!r}: {day} is not a calendar date", kind, day)
    return kind, day


def sha256_bytes(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def safe_join(root: Path, *parts: str) -> Path:
    """Join and refuse any result outside root (through `..`, absolute parts or symlinks)."""
    root = Path(root).resolve()
    target = root.joinpath(*parts).resolve()
    if not target.is_relative_to(root):
        raise UnsafeFileName(f"{'/'.join(parts)!r} resolves outside {root.name}/")
    return target
