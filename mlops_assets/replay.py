"""`make demo`: replay a historical dataset day by day through this code location's own sensors and assets.

Each replay day, the day's files are delivered to the landing zone, every sensor of the code location is
ticked once, and the runs they request are executed against the persistent Dagster instance
(DAGSTER_HOME), tagged as the daemon would tag them. `make ui` afterwards shows that history.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from .core.landing import LocalLanding
from .core.ledger import PredictionLedger
from .core.replay import deliveries, load_history
from .core.replay_summary import summarise
from .core.settings import PROJECT_DIR, Settings
from .core.spec import load_spec
from .defs import build_definitions

warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

DEFAULT_HISTORY = PROJECT_DIR / "data" / "elec2" / "elec2_timestamped.csv"
# Long enough for a first model before Elec2's change of 1997-05-04 and a retrain and canary after it.
DEFAULT_START, DEFAULT_END = dt.date(1997, 2, 1), dt.date(1997, 6, 10)


@dataclass
class ReplayLog:
    days: int = 0
    runs: int = 0
    failed_runs: list[str] = field(default_factory=list)
    run_log: list = field(default_factory=list)
    sensor_state: dict[str, str | None] = field(default_factory=dict)


def run_requests_once(defs: dg.Definitions, instance: dg.DagsterInstance, log: ReplayLog, echo=print,
                      now: dt.datetime | None = None) -> int:
    """Tick every sensor (and, given `now`, every schedule) once and execute what they request, as the daemon
    would: run keys are deduplicated, runs carry the sensor's or schedule's tags."""
    launched = 0
    for sensor in defs.sensors:
        ctx = dg.build_sensor_context(
            instance=instance, definitions=defs, cursor=log.sensor_state.get(sensor.name),
            resources=defs.resources,
        )
        result = sensor(ctx)
        if result is None or isinstance(result, dg.SkipReason):
            continue
        if isinstance(result, dg.SensorResult):
            requests, cursor = result.run_requests or [], result.cursor
        else:
            requests, cursor = list(result), ctx.cursor
        log.sensor_state[sensor.name] = cursor
        for request in requests:
            launched += _launch(defs, instance, log, echo, request, sensor, {"dagster/sensor_name": sensor.name})
    for schedule in defs.schedules if now is not None else []:
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=now, resources=defs.resources)
        result = schedule(ctx)
        for request in [result] if isinstance(result, dg.RunRequest) else []:
            launched += _launch(defs, instance, log, echo, request, schedule, {"dagster/schedule_name": schedule.name})
    return launched


def _launch(defs, instance, log: ReplayLog, echo, request: dg.RunRequest, origin, tags: dict) -> int:
    tags = {**(request.tags or {}), **tags}
    if request.run_key:
        tags["dagster/run_key"] = request.run_key
        if instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": request.run_key}), limit=1):
            return 0
    outcome = execute_request(defs, instance, request, tags, origin)
    log.runs += 1
    log.run_log.append((request.partition_key, _target_job(origin) or "assets", outcome.success, tags))
    if not outcome.success:
        kind = "gate:" if _stopped_by_checks(outcome) else ""
        log.failed_runs.append(f"{kind}{request.partition_key} {request.run_key or ''}".strip())
        echo(f"  ! run for {request.partition_key} failed ({request.run_key}); see the run in the UI")
    return 1


def execute_request(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest, tags: dict,
                    origin=None):
    job_name = request.job_name or _target_job(origin)
    selection = request.asset_selection
    if job_name:
        job = defs.resolve_job_def(job_name)
    else:
        job = defs.resolve_implicit_global_asset_job_def()
        if selection is None and getattr(origin, "asset_selection", None) is not None:
            selection = list(origin.asset_selection.resolve(defs.resolve_asset_graph()))
    return job.execute_in_process(
        instance=instance, partition_key=request.partition_key, asset_selection=selection,
        tags=tags, raise_on_error=False, resources=defs.resources,
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
    )


def _stopped_by_checks(outcome) -> bool:
    """A run stopped by a blocking check (a gate, a schema check) did its job; anything else is an error."""
    failures = [e for e in outcome.all_events if e.event_type_value == "STEP_FAILURE"]
    return bool(failures) and all(
        "blocking asset check" in e.event_specific_data.error.message or
        e.event_specific_data.error.cls_name == "Failure" for e in failures)


def _target_job(origin) -> str | None:
    try:
        return origin.job_name if origin is not None else None
    except dg.DagsterInvalidDefinitionError:  # a sensor that targets assets, not a job
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, default=DEFAULT_START)
    parser.add_argument("--end", type=dt.date.fromisoformat, default=DEFAULT_END)
    parser.add_argument("--history", type=Path, default=DEFAULT_HISTORY, help="CSV of the whole history")
    args = parser.parse_args(argv)

    logging.getLogger("dagster").setLevel(logging.WARNING)
    settings = Settings.from_env()
    spec = load_spec(settings.spec_path)
    defs = build_definitions(settings)
    project = defs.resources["project"]
    history = load_history(args.history, spec)
    landing = LocalLanding(settings.landing_dir)
    state_file = settings.data_dir / "replay_state.json"
    log = ReplayLog(sensor_state=json.loads(state_file.read_text()) if state_file.exists() else {})
    seen_audit = len(project.registry.audit_log())

    started = time.time()
    with dg.DagsterInstance.get() as instance:
        print(f"Replaying {spec.name} {args.start} .. {args.end} through the code location's sensors and schedule "
              f"into {os.environ.get('DAGSTER_HOME')}")
        for delivery in deliveries(history, spec, args.start, args.end):
            for name, content in delivery.files.items():
                landing.deliver(name, content)
            morning = dt.datetime.combine(delivery.day, dt.time(6), tzinfo=dt.timezone.utc)
            run_requests_once(defs, instance, log, echo=lambda *_: None, now=morning)
            log.days += 1
            state_file.write_text(json.dumps(log.sensor_state))
            seen_audit = _echo_events(project, delivery.day, seen_audit)
            if log.days % 14 == 0:
                print(f"  [{delivery.day}] {log.days} days replayed, {log.runs} runs launched "
                      f"({len(log.failed_runs)} stopped), {time.time() - started:.0f}s")
    summary = summarise(spec, project.store, project.registry, PredictionLedger(settings.ledger_dir))
    print(f"\nDone: {log.days} days, {log.runs} runs in {time.time() - started:.0f}s. Summary:")
    for line in summary.lines():
        print(f"  - {line}")
    print("\nWhere to look: `make ui`, then http://127.0.0.1:3000 → Assets (groups ingestion, features, training, "
          "evaluation, deployment, serving, monitoring) → a report's Checks tab and Partitions history; "
          "Runs for what each sensor and the schedule launched. `.venv/bin/mlops models` and `mlops audit` "
          "for the registry.")
    unexpected = [r for r in log.failed_runs if not r.startswith(("gate:", "check:"))]
    return 1 if unexpected else 0


def _echo_events(project, day: dt.date, seen: int) -> int:
    """Print what a person would want to hear about as it happens: drift alerts and registry transitions."""
    key = (day - dt.timedelta(days=1)).isoformat()
    if key in project.store.documents("data_drift_report"):
        report = project.store.read_json("data_drift_report", key)
        if report["status"] != "OK":
            weighted = [f["feature"] for f in report["features"] if f["drifted"] and f["weight"] > 0]
            print(f"  ! {key} data drift {report['status']}: {', '.join(weighted)} "
                  f"(weighted share {report['drift_share']:.2f})")
    audit = project.registry.audit_log()
    for entry in audit[seen:]:
        if entry.action in ("register", "promote", "rollback", "canary_start", "canary_ramp", "restore"):
            target = f" → {entry.to_alias}" if entry.to_alias else ""
            why = f" ({entry.reason[:110]})" if entry.reason else ""
            print(f"  * {day} {entry.action} {entry.version}{target}{why}")
    return len(audit)


if __name__ == "__main__":
    sys.exit(main())
