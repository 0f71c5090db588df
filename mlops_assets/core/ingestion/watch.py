"""What the landing sensor does on one tick, without Dagster: scan the landing zone, decide per file, and say
what to request, what to log and what to remember.

Per file, and never letting one file stop the others:
- a name that breaks the convention, or an entry that cannot be read (FIFO, socket, device, folder,
  permission, gone between listing and reading) is left alone with a warning (once per problem);
- a file dated outside the model's partitions (before the first, after the last, after tomorrow UTC) or with
  no calendar date is quarantined with the reason;
- a file for a day whose partition does not exist yet (today, tomorrow) waits in the landing zone;
- a file identical to the day's current accepted version is a duplicate: its bytes are already archived, so
  it leaves the landing zone without a run;
- anything else new or changed is requested, once per content hash.

The cursor keeps, per file still in the landing zone, its size, modification stamp, sha256 and state; files
are read and hashed only when their size or stamp changed. Processed files leave the landing zone (archive or
quarantine), so the cursor stays as small as the landing zone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass, field

from mlops_assets.core.ingestion.kept import Archive, Quarantine
from mlops_assets.core.ingestion.landing import LandedFile
from mlops_assets.core.ingestion.names import is_partition_key

CURSOR_VERSION = 2
REQUESTED, WAITING = "requested", "waiting"


@dataclass(frozen=True)
class PartitionWindow:
    """Which days are partitions of the model: from `first` to `last` (None: open-ended), and of those only
    the days up to `last_now` exist yet. `today` is the UTC date of the tick."""

    first: dt.date
    last: dt.date | None
    last_now: dt.date | None
    today: dt.date

    def classify(self, day: str) -> tuple[str, str]:
        """("ok" | "wait" | "reject", why)."""
        if not is_partition_key(day):
            return "reject", f"{day} is not a calendar date"
        date = dt.date.fromisoformat(day)
        if date < self.first:
            return "reject", f"{day} is before the model's first partition {self.first} (the spec's start_date)"
        if self.last is not None and date > self.last:
            return "reject", (f"{day} is after the model's last partition {self.last} (the spec's end_date "
                              f"{self.last + dt.timedelta(days=1)} is the first day without one)")
        tomorrow = self.today + dt.timedelta(days=1)
        if date > tomorrow:
            return "reject", f"{day} is in the future (after tomorrow, {tomorrow}, UTC)"
        if self.last_now is None or date > self.last_now:
            return "wait", (f"{day}'s partition opens when the day is over (UTC); the file waits in the "
                            "landing zone until then")
        return "ok", ""


@dataclass
class FileState:
    size: int | None
    stamp: str | None
    sha256: str | None
    state: str

    def to_json(self) -> list:
        return [self.size, self.stamp, self.sha256, self.state]


@dataclass
class LandingCursor:
    files: dict[str, FileState] = field(default_factory=dict)
    noted: dict[str, str] = field(default_factory=dict)  # name -> fingerprint of the problem already logged

    @classmethod
    def parse(cls, text: str | None) -> tuple["LandingCursor", str | None]:
        """The cursor, and a warning when it could not be read (then every file is looked at afresh: the run
        keys still keep an already requested version from running twice). The first format, {name: sha256 or
        "rejected"}, is read too."""
        if not text:
            return cls(), None
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            if raw.get("v") == CURSOR_VERSION:
                files = {n: FileState(*entry) for n, entry in raw.get("files", {}).items()}
                return cls(files, dict(raw.get("noted", {}))), None
            cursor = cls()
            for name, value in raw.items():
                if value == "rejected":
                    cursor.noted[name] = "?"
                elif isinstance(value, str):
                    cursor.files[name] = FileState(None, None, value, REQUESTED)
            return cursor, None
        except (ValueError, TypeError) as exc:
            return cls(), f"landing sensor cursor could not be read ({exc}); looking at every landed file afresh"

    def dumps(self) -> str:
        return json.dumps({"v": CURSOR_VERSION, "files": {n: s.to_json() for n, s in sorted(self.files.items())},
                           "noted": dict(sorted(self.noted.items()))}, separators=(",", ":"))

    def known(self) -> dict[str, tuple[int | None, str | None, str | None]]:
        return {n: (s.size, s.stamp, s.sha256) for n, s in self.files.items()}


@dataclass(frozen=True)
class FileRequest:
    file: LandedFile
    run_key: str


@dataclass
class TickPlan:
    requests: list[FileRequest] = field(default_factory=list)
    log: list[tuple[int, str]] = field(default_factory=list)  # (logging level, message)
    cursor: str = ""
    hashed: int = 0

    def summary(self, where: str) -> str:
        return f"no new or changed files in {where}" if not self.requests else f"{len(self.requests)} file(s) requested"


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def plan_tick(landing, archive: Archive, quarantine: Quarantine, cursor_text: str | None,
              window: PartitionWindow) -> TickPlan:
    previous, problem = LandingCursor.parse(cursor_text)
    plan, cursor = TickPlan(), LandingCursor()
    if problem:
        plan.log.append((logging.WARNING, problem))

    def note(level: int, name: str, message: str) -> None:
        """Log a problem with a file still in the landing zone once, not on every tick."""
        fingerprint = _fingerprint(message)
        if previous.noted.get(name) != fingerprint:
            plan.log.append((level, message))
        cursor.noted[name] = fingerprint

    scan = landing.scan(previous.known())
    plan.hashed = scan.hashed
    for name, why in scan.rejected:
        note(logging.WARNING, name, f"rejected landed file {name!r}: {why}; it is left in the landing zone")
    for name, why in scan.skipped:
        note(logging.WARNING, name, f"skipped landed file {name!r}: {why}")
    for f in scan.files:
        try:
            _plan_file(f, landing, archive, quarantine, window, previous, cursor, plan, note)
        except Exception as exc:  # noqa: BLE001 - one file never stops the others
            note(logging.WARNING, f.name, f"skipped landed file {f.name!r} (partition {f.partition}) this tick: "
                                          f"{type(exc).__name__}: {exc}")
    plan.cursor = cursor.dumps()
    return plan


def _plan_file(f: LandedFile, landing, archive: Archive, quarantine: Quarantine, window: PartitionWindow,
               previous: LandingCursor, cursor: LandingCursor, plan: TickPlan, note) -> None:
    status, why = window.classify(f.partition)
    if status == "reject":
        record = quarantine.keep_chunks(f.name, f.partition, landing.iter_chunks(f.name),
                                        f"not a partition of this model: {why}")
        if not landing.remove_if_unchanged(f.name, record.sha256):
            cursor.files[f.name] = FileState(None, None, None, WAITING)  # replaced meanwhile: look again
        plan.log.append((logging.WARNING, f"quarantined landed file {f.name!r} (partition {f.partition}): {why} "
                                          f"→ {quarantine.location(record.stored_as)}"))
        return
    if status == "wait":
        note(logging.INFO, f.name, f"{f.name}: {why}")
        cursor.files[f.name] = FileState(f.size, f.stamp, f.sha256, WAITING)
        return
    # First: the bytes already accepted for the day leave the landing zone, even when an earlier tick requested
    # them (a run that ingested them and died before clearing landing, or a replay delivering the day again);
    # a pending run then reads the same bytes from the archive.
    current = archive.current(f.kind, f.partition)
    if current is not None and current.sha256 == f.sha256:
        landing.remove_if_unchanged(f.name, f.sha256)
        plan.log.append((logging.INFO, f"{f.name} is identical to the accepted version of {f.partition} (archive/"
                                       f"{current.stored_as}): nothing to ingest; removed from the landing zone"))
        return
    run_key = f"{f.kind}:{f.partition}:{f.sha256[:16]}"
    kept_before = archive.holds(f.name, f.partition, f.sha256) or quarantine.holds(f.name, f.partition, f.sha256)
    before = previous.files.get(f.name)
    if before is not None and before.sha256 == f.sha256 and before.state == REQUESTED and not kept_before:
        cursor.files[f.name] = FileState(f.size, f.stamp, f.sha256, REQUESTED)  # requested already, not run yet
        return
    if kept_before:
        # An earlier version delivered again (rejected or held before, or superseded since): the producer's
        # latest word, so it runs again, under a key of its own. Its key has the file's stamp, so asking again
        # while the run is pending is deduplicated, and bytes delivered again before a tick saw them leave still
        # run (the cursor's REQUESTED alone would wait for a run that already happened).
        run_key += f":{f.stamp}"
    plan.requests.append(FileRequest(f, run_key))
    cursor.files[f.name] = FileState(f.size, f.stamp, f.sha256, REQUESTED)
