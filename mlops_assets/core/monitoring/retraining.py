"""When a failed monitoring check should become a retraining request: one incident, one retrain.
No Dagster here; the retrain sensor feeds it the failed checks it reads from the instance."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field


@dataclass
class RetrainState:
    last_event_id: int = 0
    last_retrain_day: str | None = None
    suppressed: list[str] = field(default_factory=list)  # recent incidents absorbed by the cooldown

    def to_cursor(self) -> str:
        return json.dumps({"last_event_id": self.last_event_id, "last_retrain_day": self.last_retrain_day,
                           "suppressed": self.suppressed[-20:]})

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "RetrainState":
        return cls(**json.loads(cursor)) if cursor else cls()


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
