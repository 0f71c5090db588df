"""Loop-health SLOs ("model SLOs"): is each part of the unattended loop keeping up?

Five questions, each answered from dates alone, so they are the same for 20 rows a day or 5 million, for
classification or regression:

- data freshness: has the last complete day been ingested (its raw batch stored, its feature table built)?
- prediction staleness: has the champion scored the last complete day?
- label coverage: have the labels of every recent ingested day landed within label_delay_days + grace?
- retraining cadence: has every retrain the sensor requested produced a candidate?
- champion age: how old is the data the champion learnt from?

No Dagster here: the Dagster shell (defs/monitoring/slo_checks.py) gathers the dates (warehouse partitions,
scored days, retrain runs, registry versions) into a `LoopState` and reports each `SloResult` as an asset check.

What "now" is
-------------
Every answer is relative to `LoopState.now`, which the caller passes in (the tests choose it). The loop has a
clock of its own, which is not always the wall clock; `loop_now` picks it:

1. a run of the loop-health schedule: the tick's time, which the schedule writes into the run's tags. Under
   the daemon that is the wall clock; in a replay (`make demo` re-plays 1997 day by day) it is the replayed
   morning, which the replay hands to every schedule, so 1997 is judged by 1997's calendar, day by day, as it
   would have been live;
2. any other run (a check is also evaluated whenever a run materialises its asset: a late file that lands turns
   data freshness green at once; or someone runs it by hand): the latest tick of that schedule, i.e. the loop's
   clock as its scheduler last set it, so a replay's runs and its schedule never disagree about the date;
3. no tick yet: `manual_now` — the wall clock for a model whose partitions have no end (a live feed); for a
   historical dataset the wall clock has passed, the morning after the latest day the loop has seen
   (delivered, quarantined or stored). A partly replayed history is judged as of where the replay stopped,
   not found "stalled" because 2026 came.

Dates that the registry keeps on the wall clock (when a version was registered or promoted) would be years
off in a replay, so the checks use dates of the data instead: a version's as-of date (the last labeled day it
was trained on) and the incident day a retrain request names.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from mlops_assets.core.config.policies import SloPolicy

DATA_FRESHNESS = "slo_data_freshness"
PREDICTION_STALENESS = "slo_prediction_staleness"
LABEL_COVERAGE = "slo_label_coverage"
RETRAINING_CADENCE = "slo_retraining_cadence"
CHAMPION_AGE = "slo_champion_age"
SLOS = (DATA_FRESHNESS, PREDICTION_STALENESS, LABEL_COVERAGE, RETRAINING_CADENCE, CHAMPION_AGE)

# A stalled part of the loop is an ERROR; an old champion only WARNs: in a world that does not change, no
# drift or performance alarm asks for a retrain, and an old champion can still be a good one.
SEVERITY = {DATA_FRESHNESS: "ERROR", PREDICTION_STALENESS: "ERROR", LABEL_COVERAGE: "ERROR",
            RETRAINING_CADENCE: "ERROR", CHAMPION_AGE: "WARN"}

_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class VersionInfo:
    """A registered model version as the SLOs see it: its name, the last day of data it learnt from."""

    version: str
    as_of: dt.date | None


@dataclass(frozen=True)
class RetrainRequestInfo:
    """A retrain the retrain sensor requested (a run tagged `mlops/trigger`), whether or not it ever ran."""

    incident_day: dt.date  # the day the trigger names ("performance_ok failed on 1997-05-01")
    as_of: dt.date  # the as-of date it asked a candidate for (the run's partition)
    trigger: str
    run_id: str = ""
    status: str = ""  # the run's status: QUEUED, NOT_STARTED, STARTED, SUCCESS, FAILURE, CANCELED


@dataclass(frozen=True)
class LoopState:
    now: dt.datetime
    start_date: dt.date  # the model's first partition
    end_date: dt.date | None  # its partitions' end (exclusive), for a historical dataset
    ingested_days: frozenset[dt.date]  # days whose raw batch or feature table is in the warehouse
    scored_days: frozenset[dt.date]  # days batch scoring wrote to the ledger
    labeled_days: frozenset[dt.date]  # days whose labeled examples exist
    label_delay_days: int
    window_days: int  # the training window: how far back missing labels matter
    champion: VersionInfo | None
    versions: tuple[VersionInfo, ...] = ()
    retrain_requests: tuple[RetrainRequestInfo, ...] = ()

    @property
    def today(self) -> dt.date:
        return self.now.date()

    @property
    def last_complete_day(self) -> dt.date:
        """Yesterday, or the last partition of a dataset that ended before now."""
        yesterday = self.today - dt.timedelta(days=1)
        return min(yesterday, self.end_date - dt.timedelta(days=1)) if self.end_date else yesterday


@dataclass(frozen=True)
class SloResult:
    name: str
    passed: bool
    message: str  # one line a person reads first: the stale day or the age, and the limit
    metadata: dict = field(default_factory=dict)

    @property
    def severity(self) -> str:
        return SEVERITY[self.name]


# ------------------------------------------------------------------------------------------------ now


def manual_now(wall_clock: dt.datetime, end_date: dt.date | None, latest_seen_day,
               hour: int) -> tuple[dt.datetime, str]:
    """`now` when the loop-health schedule has never ticked: see the module docstring. `latest_seen_day` is a
    date, None, or a callable giving one (asked only for a historical dataset: it may list a landing zone)."""
    if end_date is None or wall_clock.date() < end_date:
        return wall_clock, "the wall clock"
    if callable(latest_seen_day):
        latest_seen_day = latest_seen_day()
    if latest_seen_day is None:
        return wall_clock, "the wall clock (the loop has seen no day yet)"
    morning = dt.datetime.combine(latest_seen_day + dt.timedelta(days=1), dt.time(hour), tzinfo=dt.timezone.utc)
    return morning, (f"the morning after the latest day the loop has seen ({latest_seen_day}): the wall clock is "
                     f"past this historical dataset's end ({end_date})")


def loop_now(tick: str | None, last_tick: str | None, wall_clock: dt.datetime, end_date: dt.date | None,
             latest_seen_day, hour: int) -> tuple[dt.datetime, str]:
    """`now` for one evaluation, and where it came from (see the module docstring)."""
    if tick:
        return parse_now(tick), "this run's loop-health schedule tick"
    if last_tick:
        return parse_now(last_tick), "the latest loop-health schedule tick (this run is not one of its runs)"
    return manual_now(wall_clock, end_date, latest_seen_day, hour)


def parse_now(text: str) -> dt.datetime:
    """A tick time written by the loop-health schedule (ISO 8601; naive means UTC)."""
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def incident_day_of(trigger: str, fallback: dt.date) -> dt.date:
    """The day a retrain trigger names ("data_drift_ok failed on 1997-05-05"); else `fallback`."""
    found = _DATE.findall(trigger or "")
    return dt.date.fromisoformat(found[-1]) if found else fallback


def as_of_of(version: str, lineage: dict | None) -> dt.date | None:
    """A version's as-of date: from its lineage's training manifest, else from its name (model-YYYY-MM-DD-sha)."""
    manifest = (lineage or {}).get("manifest") or {}
    text = manifest.get("as_of") if isinstance(manifest, dict) else None
    found = [text] if text else _DATE.findall(version)
    try:
        return dt.date.fromisoformat(str(found[0])) if found else None
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------ SLOs


def _days(a: dt.date, b: dt.date) -> int:
    return (a - b).days


def _span(first: dt.date, last: dt.date) -> str:
    return first.isoformat() if first == last else f"{first} .. {last}"


def data_freshness(state: LoopState, policy: SloPolicy) -> SloResult:
    expected = state.last_complete_day
    allowed = policy.max_ingest_delay_days
    base = {"now": state.now.isoformat(), "last_complete_day": expected.isoformat(), "allowed_delay_days": allowed}
    last = max(state.ingested_days, default=None)
    if expected < state.start_date:
        return SloResult(DATA_FRESHNESS, True, f"no day is due yet: the first partition is {state.start_date}",
                         {**base, "last_ingested_day": "(none)", "delay_days": 0})
    first_missing = last + dt.timedelta(days=1) if last else state.start_date
    delay = _days(expected, first_missing) + 1 if first_missing <= expected else 0
    meta = {**base, "last_ingested_day": last.isoformat() if last else "(none)", "delay_days": delay}
    if delay <= allowed:
        pending = f"; {_span(first_missing, expected)} still within the allowed delay" if delay else ""
        done = f"ingested through {last}" if last else "no day ingested yet"
        return SloResult(DATA_FRESHNESS, True, f"{done}{pending}", meta)
    since = f"the last ingested day is {last}" if last else "no day has ever been ingested"
    return SloResult(DATA_FRESHNESS, False,
                     f"{first_missing} not ingested: {delay} days not ingested ({_span(first_missing, expected)}) "
                     f"as of {state.now:%Y-%m-%d %H:%M} UTC, allowed {allowed}; {since}", meta)


def prediction_staleness(state: LoopState, policy: SloPolicy) -> SloResult:
    expected = state.last_complete_day
    allowed = policy.max_scoring_delay_days
    last = max(state.scored_days, default=None)
    meta = {"now": state.now.isoformat(), "last_complete_day": expected.isoformat(),
            "last_scored_day": last.isoformat() if last else "(none)", "allowed_delay_days": allowed}
    if state.champion is None:
        return SloResult(PREDICTION_STALENESS, True, "no champion yet: nothing is due to be scored (the retraining "
                         "cadence SLO watches the first model)", {**meta, "delay_days": 0})
    meta["champion"] = state.champion.version
    # A champion scores the days after the data it learnt from: before it scored anything, that is its start.
    start = max((d for d in (last, state.champion.as_of) if d is not None), default=None)
    if start is None:
        return SloResult(PREDICTION_STALENESS, False, f"champion {state.champion.version} has never scored a day "
                         "and its as-of date is unknown", {**meta, "delay_days": -1})
    first_missing = start + dt.timedelta(days=1)
    delay = _days(expected, first_missing) + 1 if first_missing <= expected else 0
    meta["delay_days"] = delay
    if delay <= allowed:
        return SloResult(PREDICTION_STALENESS, True,
                         f"scored through {last}" if last and last >= start else
                         f"champion {state.champion.version} (as of {start}) has not scored a later day yet; "
                         "within the allowed delay", meta)
    since = (f"the last scored day is {last}" if last and last >= start
             else f"champion {state.champion.version} (as of {start}) has scored no later day")
    last_ingested = max(state.ingested_days, default=None)
    cause = (f"; ingestion is behind too (last ingested {last_ingested}): see {DATA_FRESHNESS}"
             if last_ingested is None or last_ingested < expected else "")
    return SloResult(PREDICTION_STALENESS, False,
                     f"{first_missing} not scored: {delay} days without predictions ({_span(first_missing, expected)}) "
                     f"as of {state.now:%Y-%m-%d %H:%M} UTC, allowed {allowed}; {since}{cause}", meta)


def label_coverage(state: LoopState, policy: SloPolicy) -> SloResult:
    """Every ingested day of the last training window whose labels are due (label_delay_days + grace before
    today) must have labeled examples: a missing day stops the next retrain's window and realised monitoring."""
    delay, grace = state.label_delay_days, policy.label_grace_days
    last_due = state.today - dt.timedelta(days=delay + grace + 1)  # its labels were due delay days later, + grace
    first = last_due - dt.timedelta(days=state.window_days - 1)
    due = sorted(d for d in state.ingested_days if first <= d <= last_due)
    missing = [d for d in due if d not in state.labeled_days]
    meta = {"now": state.now.isoformat(), "label_delay_days": delay, "grace_days": grace,
            "window": f"{first} .. {last_due}", "days_due": len(due), "days_missing": len(missing),
            "missing_days": ", ".join(d.isoformat() for d in missing[:20]) or "(none)",
            "last_labeled_day": max(state.labeled_days).isoformat() if state.labeled_days else "(none)"}
    if not missing:
        text = (f"labels landed for all {len(due)} ingested days due ({first} .. {last_due})" if due
                else f"no ingested day's labels are due yet (due: days up to {last_due})")
        return SloResult(LABEL_COVERAGE, True, text, meta)
    oldest = missing[0]
    late = _days(state.today, oldest + dt.timedelta(days=delay))
    meta["oldest_missing_day"], meta["days_late"] = oldest.isoformat(), late
    return SloResult(LABEL_COVERAGE, False,
                     f"labels of {oldest} not landed: due {oldest + dt.timedelta(days=delay)} (label_delay_days "
                     f"{delay}), {late} days late, allowed {grace}; {len(missing)} of {len(due)} ingested days due "
                     f"lack labels", meta)


def retraining_cadence(state: LoopState, policy: SloPolicy) -> SloResult:
    """A retrain request is answered by any version trained as of its as-of date or later (the data it asked
    for was learnt), whatever its gates said; one still unanswered max_retrain_wait_days + label_delay_days
    after its incident day fails."""
    wait = policy.max_retrain_wait_days + state.label_delay_days
    newest = max((v.as_of for v in state.versions if v.as_of), default=None)
    unanswered = sorted((r for r in state.retrain_requests if newest is None or newest < r.as_of),
                        key=lambda r: (r.incident_day, r.as_of))
    meta = {"now": state.now.isoformat(), "requests": len(state.retrain_requests),
            "unanswered_requests": len(unanswered), "allowed_wait_days": wait,
            "newest_version_as_of": newest.isoformat() if newest else "(none)"}
    overdue = [r for r in unanswered if _days(state.today, r.incident_day) > wait]
    if not overdue:
        if unanswered:
            r = unanswered[0]
            return SloResult(RETRAINING_CADENCE, True,
                             f"retrain requested ({r.trigger}; as of {r.as_of}) pending for "
                             f"{_days(state.today, r.incident_day)} of {wait} allowed days", meta)
        return SloResult(RETRAINING_CADENCE, True, "every retrain request has a candidate trained on its data"
                         if state.retrain_requests else "no retrain requested", meta)
    r = overdue[0]
    waited = _days(state.today, r.incident_day)
    run = f"run {r.run_id[:8]} {r.status}" if r.run_id else "no run"
    meta.update({"oldest_request": r.trigger, "oldest_request_as_of": r.as_of.isoformat(),
                 "oldest_request_run": r.run_id, "oldest_request_status": r.status, "waited_days": waited})
    return SloResult(RETRAINING_CADENCE, False,
                     f"retrain requested ({r.trigger}; as of {r.as_of}; {run}) has no candidate trained as of "
                     f"{r.as_of} or later after {waited} days, allowed {wait} (max_retrain_wait_days "
                     f"{policy.max_retrain_wait_days} + label_delay_days {state.label_delay_days}); "
                     f"{len(overdue)} request(s) overdue", meta)


def champion_age(state: LoopState, policy: SloPolicy) -> SloResult:
    allowed = policy.max_champion_age_days
    meta = {"now": state.now.isoformat(), "allowed_age_days": allowed}
    champion = state.champion
    if champion is None:
        return SloResult(CHAMPION_AGE, True, "no champion yet", {**meta, "champion": "(none)"})
    meta["champion"] = champion.version
    if champion.as_of is None:
        return SloResult(CHAMPION_AGE, False, f"champion {champion.version}: its as-of date is unknown (no training "
                         "manifest in its lineage), so its age cannot be told", meta)
    age = _days(state.today, champion.as_of)
    meta.update({"champion_as_of": champion.as_of.isoformat(), "age_days": age})
    newer = [v for v in state.versions if v.as_of and v.as_of > champion.as_of]
    if age <= allowed:
        return SloResult(CHAMPION_AGE, True, f"champion {champion.version} is {age} days old (as of "
                         f"{champion.as_of}), allowed {allowed}", meta)
    waiting = (f"; {len(newer)} newer version(s) registered, newest {max(newer, key=lambda v: v.as_of).version}"
               if newer else "; no newer version registered")
    return SloResult(CHAMPION_AGE, False,
                     f"champion {champion.version} is {age} days old: trained as of {champion.as_of}, allowed "
                     f"{allowed}{waiting}", meta)


DECIDERS = {DATA_FRESHNESS: data_freshness, PREDICTION_STALENESS: prediction_staleness,
            LABEL_COVERAGE: label_coverage, RETRAINING_CADENCE: retraining_cadence, CHAMPION_AGE: champion_age}
# What each SLO reads beyond the warehouse's partitions, so a caller gathers only that.
NEEDS_REGISTRY = frozenset({PREDICTION_STALENESS, RETRAINING_CADENCE, CHAMPION_AGE})
NEEDS_REQUESTS = frozenset({RETRAINING_CADENCE})


def evaluate(state: LoopState, policy: SloPolicy, names=SLOS) -> list[SloResult]:
    return [DECIDERS[name](state, policy) for name in SLOS if name in names]
