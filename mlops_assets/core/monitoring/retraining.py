"""When a failed monitoring check should become a retraining request: one incident, one retrain.
No Dagster here; the retrain sensor feeds it the failed checks it reads from the instance."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field


MAX_PENDING = 200  # planned check records remembered until their result lands


@dataclass
class RetrainState:
    last_event_id: int = 0
    last_retrain_day: str | None = None
    suppressed: list[str] = field(default_factory=list)  # recent incidents absorbed by the cooldown
    pending: list[int] = field(default_factory=list)  # planned check records whose result has not landed yet

    def to_cursor(self) -> str:
        return json.dumps({"last_event_id": self.last_event_id, "last_retrain_day": self.last_retrain_day,
                           "suppressed": self.suppressed[-20:], "pending": self.pending[-MAX_PENDING:]})

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "RetrainState":
        """The state a cursor holds; raises ValueError when it is not one (the sensor then starts afresh)."""
        if not cursor:
            return cls()
        try:
            raw = json.loads(cursor)
            return cls(last_event_id=int(raw.get("last_event_id", 0)), last_retrain_day=raw.get("last_retrain_day"),
                       suppressed=list(raw.get("suppressed", [])), pending=[int(i) for i in raw.get("pending", [])])
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"unreadable retrain sensor cursor {cursor[:80]!r}: {exc}") from None


@dataclass(frozen=True)
class CheckRecord:
    """One execution record of a monitoring check, as plain data: its status is PLANNED (no result yet: the
    run is going, or failed or died before the check ran), SUCCEEDED or FAILED; `severity` (ERROR / WARN) and
    `day` (its partition) come from the evaluation and may be missing."""

    event_id: int
    check: str
    status: str
    day: str | None = None
    severity: str | None = None


def select_failures(state: RetrainState, records: list[CheckRecord]) -> tuple[list[FailedCheck], list[str]]:
    """The ERROR failures among records not looked at before, and one note per record passed over that a
    person should hear about. Never raises on a record it cannot use: it skips it, with a note.

    Planned records are remembered in `state.pending` and looked at again on later ticks, so a check whose
    result lands after newer records moved the cursor on is not missed; one that no longer appears among
    `records` (the latest ones) is given up, with a note. Updates `state.pending` and `state.last_event_id`.
    """
    failures, notes, pending = [], [], []
    was_pending = set(state.pending)
    for record in sorted(records, key=lambda r: r.event_id):
        if record.event_id <= state.last_event_id and record.event_id not in was_pending:
            continue  # looked at on an earlier tick
        where = f"{record.check} record {record.event_id} ({record.day or 'no partition'})"
        if record.status == "PLANNED":
            pending.append(record.event_id)
            if record.event_id not in was_pending:
                notes.append(f"{where} has no result yet (its run is still going, or failed or was killed before "
                             "the check ran): skipped for now, looked at again on later ticks")
        elif record.status == "FAILED":
            if record.day is None:
                notes.append(f"{where} failed but has no partition: skipped, no day to retrain for")
            elif record.severity is None:
                notes.append(f"{where} failed but its severity cannot be read: skipped")
            elif record.severity == "ERROR":
                failures.append(FailedCheck(record.event_id, record.check, record.day))
        elif record.status != "SUCCEEDED":
            notes.append(f"{where} has an unknown status {record.status!r}: skipped")
    seen = {r.event_id for r in records}
    notes += [f"planned check record {i} is no longer among the latest records and never got a result: given up"
              for i in sorted(was_pending - seen)]
    state.pending = pending[-MAX_PENDING:]
    state.last_event_id = max([state.last_event_id, *seen])
    return failures, notes


@dataclass(frozen=True)
class FailedCheck:
    event_id: int
    check: str
    day: str


@dataclass(frozen=True)
class RetrainRequest:
    as_of: str  # the training set's as-of date: the latest labeled day not after the incident
    incident_day: str
    check: str


def plan_retrains(state: RetrainState, failures: list[FailedCheck], labeled_days: list[str],
                  cooldown_days: int) -> list[RetrainRequest]:
    """Turn new failures (in event order) into at most one request per cooldown period; updates `state`."""
    requests = []
    for failure in sorted(failures, key=lambda f: f.event_id):
        state.last_event_id = max(state.last_event_id, failure.event_id)
        if state.last_retrain_day is not None:
            since = (dt.date.fromisoformat(failure.day) - dt.date.fromisoformat(state.last_retrain_day)).days
            if since < cooldown_days:
                state.suppressed.append(f"{failure.check}@{failure.day}")
                continue
        as_of = max((d for d in labeled_days if d <= failure.day), default=None)
        if as_of is None:
            state.suppressed.append(f"{failure.check}@{failure.day} (no labeled days yet)")
            continue
        requests.append(RetrainRequest(as_of, failure.day, failure.check))
        state.last_retrain_day = failure.day
    return requests


def plan_first_model(state: RetrainState, labeled_days: list[str], window_days: int, has_champion: bool,
                     cooldown_days: int) -> RetrainRequest | None:
    """Cold start: with no champion, request a candidate as soon as a full window of labeled days exists
    (and again after a cooldown if that candidate failed its floors)."""
    if has_champion or len(labeled_days) < window_days:
        return None
    latest = max(labeled_days)
    if state.last_retrain_day is not None:
        if (dt.date.fromisoformat(latest) - dt.date.fromisoformat(state.last_retrain_day)).days < cooldown_days:
            return None
    state.last_retrain_day = latest
    return RetrainRequest(latest, latest, "no champion yet")
