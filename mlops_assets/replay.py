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
from .core.replay import deliveries, load_history
from .core.settings import PROJECT_DIR, Settings
from .core.spec import load_spec
from .defs import build_definitions

warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

DEFAULT_HISTORY = PROJECT_DIR / "data" / "elec2" / "elec2_timestamped.csv"


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
        log.failed_runs.append(f"{request.partition_key} {request.run_key or ''}".strip())
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


def _target_job(origin) -> str | None:
    try:
        return origin.job_name if origin is not None else None
    except dg.DagsterInvalidDefinitionError:  # a sensor that targets assets, not a job
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(1996, 5, 7))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(1996, 6, 5))
    parser.add_argument("--history", type=Path, default=DEFAULT_HISTORY, help="CSV of the whole history")
    args = parser.parse_args(argv)

    logging.getLogger("dagster").setLevel(logging.WARNING)
    settings = Settings.from_env()
    spec = load_spec(settings.spec_path)
    defs = build_definitions(settings)
    history = load_history(args.history, spec)
    landing = LocalLanding(settings.landing_dir)
    state_file = settings.data_dir / "replay_state.json"
    log = ReplayLog(sensor_state=json.loads(state_file.read_text()) if state_file.exists() else {})

    started = time.time()
    with dg.DagsterInstance.get() as instance:
        print(f"Replaying {spec.name} {args.start} .. {args.end} into {os.environ.get('DAGSTER_HOME')}")
        for delivery in deliveries(history, spec, args.start, args.end):
            for name, content in delivery.files.items():
                landing.deliver(name, content)
            morning = dt.datetime.combine(delivery.day, dt.time(6), tzinfo=dt.timezone.utc)
            run_requests_once(defs, instance, log, now=morning)
            log.days += 1
            state_file.write_text(json.dumps(log.sensor_state))
            if log.days % 7 == 0:
                print(f"  {delivery.day}: {log.days} days replayed, {log.runs} runs, "
                      f"{len(log.failed_runs)} failed, {time.time() - started:.0f}s")
    print(f"Done: {log.days} days, {log.runs} runs ({len(log.failed_runs)} failed) in {time.time() - started:.0f}s.")
    print("Browse it: make ui, then open http://127.0.0.1:3000 (Assets → ingestion, features).")
    return 1 if log.failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
