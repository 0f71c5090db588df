"""`make demo`: replay a historical dataset day by day through this code location's own sensors and assets.

Each replay day, the day's files are delivered to the model's landing zone, every sensor of that model is
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
from dagster._core.instance.ref import InstanceRef

from mlops_assets.core.config.settings import PROJECT_DIR, Settings
from mlops_assets.core.ingestion.landing import LocalLanding
from mlops_assets.defs import build_definitions
from mlops_assets.demo.history import deliveries, load_history
from mlops_assets.demo.summary import summarise

warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

DEFAULT_MODEL = "elec2"
DEFAULT_HISTORY = {"elec2": PROJECT_DIR / "data" / "elec2" / "elec2_timestamped.csv"}
# Long enough for a first model before Elec2's change of 1997-05-04 and a retrain and canary after it.
DEFAULT_SPAN = {"elec2": (dt.date(1997, 2, 15), dt.date(1997, 6, 18))}


@dataclass
class ReplayLog:
    days: int = 0
    runs: int = 0
    failed_runs: list[str] = field(default_factory=list)
    run_log: list = field(default_factory=list)
    sensor_state: dict[str, str | None] = field(default_factory=dict)


def run_requests_once(defs: dg.Definitions, instance: dg.DagsterInstance, log: ReplayLog, echo=print,
                      now: dt.datetime | None = None, model: str | None = None) -> int:
    """Tick every sensor (and, given `now`, every schedule) once, of one model if given, and execute what they
    request, as the daemon would: run keys are deduplicated, runs carry the sensor's or schedule's tags."""
    launched = 0
    mine = (lambda d: d.name.startswith(f"{model}_")) if model else (lambda d: True)
    for sensor in filter(mine, defs.sensors):
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
    for schedule in filter(mine, defs.schedules) if now is not None else []:
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


def replay_instance() -> dg.DagsterInstance:
    """The persistent instance of DAGSTER_HOME, as `make ui` opens it, except that runs do not capture
    stdout/stderr to files: capture spawns `tail` processes for every run (about a tenth of a replay's time),
    and the assets print nothing; what they log goes to the event log, which the UI shows."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise SystemExit("DAGSTER_HOME is not set: run the replay with `make demo`")
    ref = InstanceRef.from_dir(home, overrides={"compute_logs": {
        "module": "dagster._core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"}})
    return dg.DagsterInstance.from_ref(ref)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="which model of the portfolio to replay "
                        f"(a dataset spec's name; default {DEFAULT_MODEL})")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=None,
                        help="first day (default: 1997-02-15 for elec2, else the history's first day)")
    parser.add_argument("--end", type=dt.date.fromisoformat, default=None,
                        help="last day (default: 1997-06-18 for elec2, else the history's last day)")
    parser.add_argument("--history", type=Path, default=None,
                        help="CSV of the whole history (default: the bundled Elec2 file for elec2)")
    args = parser.parse_args(argv)

    logging.getLogger("dagster").setLevel(logging.WARNING)
    settings = Settings.from_env()
    defs = build_definitions(settings)
    portfolio = defs.resources["portfolio"].portfolio
    if args.model not in portfolio.models:
        parser.error(f"no model named {args.model!r}: this portfolio has {', '.join(portfolio.names)}")
    project = portfolio.model(args.model)
    spec = project.spec
    history_csv = args.history or DEFAULT_HISTORY.get(args.model)
    if history_csv is None:
        parser.error(f"--history CSV is needed to replay {args.model} (only elec2 ships one)")
    history = load_history(history_csv, spec)
    default_start, default_end = DEFAULT_SPAN.get(args.model, (min(history), max(history)))
    args.start, args.end = args.start or default_start, args.end or default_end
    landing = LocalLanding(project.paths.landing_dir)
    state_file = project.paths.root / "replay_state.json"
    log = ReplayLog(sensor_state=json.loads(state_file.read_text()) if state_file.exists() else {})
    echo = EventEcho(project, seen_audit=len(project.registry.audit_log()))

    started = time.time()
    with replay_instance() as instance:
        print(f"Replaying {spec.name} {args.start} .. {args.end} through the code location's sensors and schedule "
              f"into {os.environ.get('DAGSTER_HOME')}")
        for delivery in deliveries(history, spec, args.start, args.end):
            for name, content in delivery.files.items():
                landing.deliver(name, content)
            morning = dt.datetime.combine(delivery.day, dt.time(6), tzinfo=dt.timezone.utc)
            run_requests_once(defs, instance, log, echo=lambda *_: None, now=morning, model=spec.name)
            log.days += 1
            state_file.parent.mkdir(parents=True, exist_ok=True)
            state_file.write_text(json.dumps(log.sensor_state))
            echo.day_done(delivery.day)
            if log.days % 14 == 0:
                print(f"  [{delivery.day}] {log.days} days replayed, {log.runs} runs launched "
                      f"({len(log.failed_runs)} stopped), {time.time() - started:.0f}s")
    summary = summarise(spec, project.store, project.registry, project.ledger)
    print(f"\nDone: {log.days} days, {log.runs} runs in {time.time() - started:.0f}s. Summary:")
    for line in summary.lines():
        print(f"  - {line}")
    print(f"\nWhere to look: `make ui`, then http://127.0.0.1:3000 → Assets → {spec.name}/ (groups ingestion, "
          "features, training, evaluation, deployment, serving, monitoring) → a report's Checks tab and Partitions "
          f"history; Runs for what each sensor and the schedule launched. `.venv/bin/mlops models --model "
          f"{spec.name}` and `mlops audit --model {spec.name}` for the registry.")
    unexpected = [r for r in log.failed_runs if not r.startswith(("gate:", "check:"))]
    return 1 if unexpected else 0


def _first_clauses(reason: str, keep: int = 3) -> str:
    """A reason cut at clause boundaries: its first `keep` '; '-separated parts."""
    parts = reason.split("; ")
    return "; ".join(parts[:keep]) + ("; …" if len(parts) > keep else "")


class EventEcho:
    """Prints what a person wants to hear about as it happens: a monitoring alert when it starts, changes or
    clears (not again every day it persists), and every registry transition with its reason."""

    def __init__(self, project, seen_audit: int):
        self.project, self.seen_audit = project, seen_audit
        self.last: dict[str, tuple[str, str]] = {}  # asset -> (status, identity) last printed

    def day_done(self, day: dt.date) -> None:
        key = (day - dt.timedelta(days=1)).isoformat()  # the schedule scores and monitors yesterday
        self._alert(key, "data_drift_report", "data drift", self._drifted)
        self._alert(key, "performance_report", "performance", self._performance)
        audit = self.project.registry.audit_log()
        for entry in audit[self.seen_audit:]:
            if entry.action in ("register", "promote", "rollback", "canary_start", "canary_ramp", "restore"):
                target = f" → {entry.to_alias}" if entry.to_alias else ""
                why = f" ({_first_clauses(entry.reason)})" if entry.reason else ""
                if entry.action == "register":
                    why = f" ({self._gates(entry.version)})"
                print(f"  * {day} {entry.action} {entry.version}{target}{why}")
        self.seen_audit = len(audit)

    def _alert(self, key: str, asset: str, label: str, describe) -> None:
        """Print when the alert's status (and, for drift, its set of drifted features) changes."""
        store = self.project.store
        if not store.has_document(asset, key):
            return
        report = store.read_json(asset, key)
        status = report["status"]
        identity, detail = describe(report) if status != "OK" else ("", "")
        if (status, identity) != self.last.get(asset, ("OK", "")):
            print(f"  ! {key} {label} back to OK" if status == "OK" else f"  ! {key} {label} {status}: {detail}")
        self.last[asset] = (status, identity)

    @staticmethod
    def _drifted(report: dict) -> tuple[str, str]:
        weighted = ", ".join(f["feature"] for f in report["features"] if f["drifted"] and f["weight"] > 0)
        return weighted, f"{weighted} (weighted share {report['drift_share']:.2f})"

    @staticmethod
    def _performance(report: dict) -> tuple[str, str]:
        return "", f"{report['key_metric']} down {report['drop']:.2f} from the champion's validation baseline"

    def _gates(self, version: str) -> str:
        record = self.project.registry.get(version)
        failed = record.gate_report.get("failures", [])
        if not record.gates_passed:
            return f"stopped by gates: {', '.join(failed)}"
        canary = self.project.registry.version_for("canary")
        waits = f"; stays candidate while canary {canary} runs" if canary not in (None, version) else ""
        return f"all gates passed{waits}"


if __name__ == "__main__":
    sys.exit(main())
