"""`make demo`: replay a historical dataset day by day through this code location's own sensors and assets.

Each replay day, the day's files are delivered to the model's landing zone, every sensor of that model is
ticked once, and the runs they request are executed against the persistent Dagster instance
(DAGSTER_HOME), tagged as the daemon would tag them. `make ui` afterwards shows that history.

A command-line tool: Ctrl-C stops it after the run in progress (exit code 130) and a later call resumes where
it stopped, with the same result as one uninterrupted call; a run failing for any reason other than a gate
or a schema check is printed with its error and makes the exit code 1; a spec that cannot work is reported
as the spec's error (exit code 2) before anything runs.
"""

from __future__ import annotations

import signal
import threading

_AS_COMMAND = __name__ == "__main__" and threading.current_thread() is threading.main_thread()
if _AS_COMMAND:
    # Ctrl-C is taken by a thread that waits for it (StopSignal). Blocked here, before an import starts any
    # other thread (BLAS, DuckDB), every thread inherits the block, so none can turn it into an interrupt of
    # the step in progress.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

import _thread  # noqa: E402
import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import faulthandler  # noqa: E402
import fcntl  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import dagster as dg  # noqa: E402
from dagster._core.instance.ref import InstanceRef  # noqa: E402

from mlops_assets.core.config.settings import PROJECT_DIR, Settings, SettingsError  # noqa: E402
from mlops_assets.core.config.spec import SpecError  # noqa: E402
from mlops_assets.core.io.atomic import write_atomic  # noqa: E402
from mlops_assets.core.training.trainer import build_pipeline  # noqa: E402
from mlops_assets.defs import build_definitions  # noqa: E402
from mlops_assets.demo.echo import EventEcho  # noqa: E402
from mlops_assets.demo.history import deliveries, load_history  # noqa: E402
from mlops_assets.demo.launch import ReplayLog, instigators, launch, run_requests_once, tick  # noqa: E402
from mlops_assets.demo.summary import summarise  # noqa: E402

# ReplayLog and run_requests_once also serve the tests' harness: ticks and runs as the daemon does them.
__all__ = ["EventEcho", "ReplayLog", "main", "replay_instance", "run_requests_once"]

warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

DEFAULT_MODEL = "elec2"
DEFAULT_HISTORY = {"elec2": PROJECT_DIR / "data" / "elec2" / "elec2_timestamped.csv"}
# Long enough for a first model before Elec2's change of 1997-05-04 and a retrain and canary after it.
DEFAULT_SPAN = {"elec2": (dt.date(1997, 2, 15), dt.date(1997, 6, 18))}
EXIT_ERRORS, EXIT_USAGE, EXIT_STOPPED = 1, 2, 130


class StopSignal:
    """Ctrl-C asks the replay to stop after the run in progress. The signal is blocked in every thread and a
    watcher thread waits for it, so a run is never interrupted mid-step (Dagster would fail the step); the
    replay checks `requested` between runs. A second Ctrl-C aborts the run in progress at once (it is
    re-executed on resume)."""

    def __init__(self):
        self.requested = self.aborted = False

    @classmethod
    def install(cls) -> StopSignal:
        """Only when run as the command, where SIGINT was blocked before any thread started; main() called from
        other code leaves Ctrl-C a KeyboardInterrupt (an abort)."""
        stop = cls()
        if _AS_COMMAND:
            threading.Thread(target=stop._watch, name="replay-ctrl-c", daemon=True).start()
        return stop

    def _watch(self) -> None:
        while True:
            signal.sigwait({signal.SIGINT})
            if not self.requested:
                self.requested = True
                print("\nCtrl-C: stopping after the run in progress (Ctrl-C again to abort it now)", flush=True)
            else:
                self.aborted = True
                _thread.interrupt_main()  # Dagster's own handler, if a run is in progress; else KeyboardInterrupt


class Stopped(Exception):
    """Raised between runs once Ctrl-C asked for it; the state saved last is consistent."""


@dataclass
class ReplayState:
    """What a later call needs to go on exactly where this one stopped, saved after every run.

    `origin` is the first day of the span replayed without a gap (labels of a day from `origin` on are
    delivered `label_delay_days` later, even when that falls in a later call); `last_day` the last day done;
    `partial` the day stopped in, the instigator being served and its requests not yet run; `end` the span's
    last day while it is unfinished (a resume without --end goes on to it)."""

    sensors: dict[str, str | None] = field(default_factory=dict)
    origin: str | None = None
    last_day: str | None = None
    end: str | None = None
    partial: dict | None = None  # {"day", "instigator", "pending": [serialised RunRequest]}
    alerts: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ReplayState:
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        if raw.get("format") != 2:  # the first format: the sensors' cursors only
            return cls(sensors=raw)
        raw.pop("format")
        return cls(**raw)

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps({"format": 2, **asdict(self)}, indent=1).encode())

    def covered_until(self) -> dt.date | None:
        day = (self.partial or {}).get("day") or self.last_day
        return dt.date.fromisoformat(day) if day else None


class Replay:
    """Replays days through one model's sensors and schedule, saving its state after every run."""

    def __init__(self, defs, instance, project, state: ReplayState, state_file: Path, stop: StopSignal,
                 echo: EventEcho):
        self.defs, self.instance, self.project = defs, instance, project
        self.state, self.state_file, self.stop, self.echo = state, state_file, stop, echo
        self.landing = project.landing  # where the sensors look: a local folder, or S3 (MLOPS_STORAGE_URL)
        self.log = ReplayLog(sensor_state=state.sensors)
        self.instigators = instigators(defs, project.spec.name)

    def save(self) -> None:
        self.state.alerts = {k: list(v) for k, v in self.echo.last.items()}
        self.state.save(self.state_file)

    def check_stop(self) -> None:
        if self.stop.aborted:
            raise KeyboardInterrupt
        if self.stop.requested:
            raise Stopped

    def day(self, delivery) -> None:
        self.check_stop()
        key = delivery.day.isoformat()
        partial = self.state.partial if (self.state.partial or {}).get("day") == key else None
        for name, content in delivery.files.items():
            self.landing.deliver(name, content)
        morning = dt.datetime.combine(delivery.day, dt.time(6), tzinfo=dt.timezone.utc)
        names = [o.name for o in self.instigators]
        resumed = partial["instigator"] if partial and partial["instigator"] in names else None
        for origin in self.instigators[names.index(resumed) if resumed else 0:]:
            if origin.name == resumed:  # stopped while running its requests: run the rest, do not tick again
                requests = [dg.deserialize_value(r, dg.RunRequest) for r in partial["pending"]]
            else:
                requests = self.tick(origin, key, morning)
            pending = [dg.serialize_value(r) for r in requests]
            self.state.partial = {"day": key, "instigator": origin.name, "pending": pending}
            self.save()
            for done, request in enumerate(requests, start=1):
                self.check_stop()
                launch(self.defs, self.instance, self.log, print, request, origin, on_finished=self._after_run)
                self.state.partial["pending"] = pending[done:]
                self.save()
        self.state.partial = None
        self.state.last_day = max(filter(None, [self.state.last_day, key]))
        self.log.days += 1
        self.echo.day_done(delivery.day)
        self.save()

    def tick(self, origin, key: str, morning: dt.datetime) -> list[dg.RunRequest]:
        try:
            return tick(self.defs, self.instance, self.log, origin, morning)
        except Exception as exc:  # the daemon records a failed tick and goes on: so does the replay
            self.log.tick_errors.append(f"{key} {origin.name}: {type(exc).__name__}: {exc}")
            print(f"  ! {key} {origin.name} failed: {type(exc).__name__}: {exc}")
            return []

    def _after_run(self, _outcome) -> None:
        if self.stop.aborted:  # a second Ctrl-C interrupted this run: it stays pending, re-executed on resume
            raise KeyboardInterrupt

    def where(self) -> str:
        partial = self.state.partial
        if partial and partial["pending"]:
            return (f"during {partial['day']} ({len(partial['pending'])} run(s) requested by {partial['instigator']} "
                    "and the rest of that day still to do)")
        if partial:
            return f"during {partial['day']} (its remaining sensors and schedule still to tick)"
        return f"after {self.state.last_day}" if self.state.last_day else "before its first day"


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


def fail_abandoned_runs(instance: dg.DagsterInstance, model: str) -> int:
    """Runs of this model's replay still in progress were left by a replay that died (killed, or aborted by a
    second Ctrl-C): the replay runs them in its own process, and holds a lock while it does. Mark them failed
    as crashed, so that their run keys do not block their re-execution."""
    in_progress = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED,
                   dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.CANCELING]
    runs = [r for r in instance.get_runs(filters=dg.RunsFilter(statuses=in_progress, tags={"mlops/model": model}))
            if r.remote_job_origin is None]  # in-process: the replay's, not a run the daemon launched
    for run in runs:
        instance.report_run_failed(run, "The replay running it stopped before it finished; the replay re-executes "
                                        "it when it resumes.")
        instance.add_run_tags(run.run_id, {"dagster/will_retry": "false"})  # the daemon cannot re-run it
    return len(runs)


def spec_problem(spec) -> SpecError | None:
    """What loading the spec does not check but training needs: the estimator for the task, its parameters."""
    try:
        build_pipeline(spec, spec.training)
    except ValueError as exc:
        return SpecError(spec.source, [str(exc)])
    return None


def _resume_command(args) -> str:
    extra = [] if args.model == DEFAULT_MODEL else [f"--model {args.model}"]
    extra += [f"--history {args.history}"] if args.history else []
    return "make demo" + (f' ARGS="{" ".join(extra)}"' if extra else "")


def main(argv: list[str] | None = None) -> int:
    stop = StopSignal.install()
    if _AS_COMMAND:
        sys.stdout.reconfigure(line_buffering=True)  # progress as it happens, also through a pipe
        # A rare crash inside a C extension (a segfault seen twice in long replays, not reproduced) should
        # leave the Python stack of every thread on stderr, so its next occurrence can be traced.
        faulthandler.enable(all_threads=True)
    try:
        return _main(argv, stop)
    except KeyboardInterrupt:  # a second Ctrl-C outside the days' loop
        print("\nCtrl-C: aborted.", file=sys.stderr)
        return EXIT_STOPPED


def _main(argv: list[str] | None, stop: StopSignal) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="which model of the portfolio to replay "
                        f"(a dataset spec's name; default {DEFAULT_MODEL})")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=None,
                        help="first day (default: where the last replay stopped; on a fresh start 1997-02-15 "
                             "for elec2, else the history's first day)")
    parser.add_argument("--end", type=dt.date.fromisoformat, default=None,
                        help="last day (default: the interrupted replay's, else 1997-06-18 for elec2, else the "
                             "history's last day)")
    parser.add_argument("--history", type=Path, default=None,
                        help="CSV of the whole history (default: the bundled Elec2 file for elec2)")
    parser.add_argument("--progress-days", type=int, default=14,
                        help="a progress line every this many days (default 14)")
    args = parser.parse_args(argv)

    logging.getLogger("dagster").setLevel(logging.WARNING)
    try:
        defs = build_definitions(Settings.from_env())
    except (SettingsError, SpecError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    portfolio = defs.resources["portfolio"].portfolio
    if args.model not in portfolio.models:
        parser.error(f"no model named {args.model!r}: this portfolio has {', '.join(portfolio.names)}")
    project = portfolio.model(args.model)
    spec = project.spec
    if (problem := spec_problem(spec)) is not None:
        print(f"replay: nothing replayed, {problem}", file=sys.stderr)
        return EXIT_USAGE
    history_csv = args.history or DEFAULT_HISTORY.get(args.model)
    if history_csv is None:
        parser.error(f"--history CSV is needed to replay {args.model} (only elec2 ships one)")
    history = load_history(history_csv, spec)

    # The replay's cursor and lock stay on this machine's disk whatever MLOPS_STORAGE_URL says: they belong to
    # the demo driver running here, not to the model's state.
    state_file = project.paths.root / "replay_state.json"
    state_file.parent.mkdir(parents=True, exist_ok=True)
    lock = open(state_file.with_name("replay.lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"replay: another replay of {spec.name} is running (lock {lock.name})", file=sys.stderr)
        return EXIT_ERRORS
    state = ReplayState.load(state_file)
    default_start, default_end = DEFAULT_SPAN.get(args.model, (min(history), max(history)))
    covered = state.covered_until()
    resuming = args.start is None and covered is not None
    if args.start is None:
        args.start = covered + dt.timedelta(days=0 if state.partial else 1) if covered else default_start
    elif state.partial and args.start.isoformat() != state.partial["day"]:
        parser.error(f"the last replay of {spec.name} stopped during {state.partial['day']}: resume it first "
                     f"(no --start), or `make clean` to start over")
    args.end = args.end or (dt.date.fromisoformat(state.end) if resuming and state.end else default_end)
    # Labels of days before this call's start whose features an earlier call delivered still land here.
    contiguous = covered is not None and state.origin is not None and args.start <= covered + dt.timedelta(days=1)
    origin = min(dt.date.fromisoformat(state.origin), args.start) if contiguous else args.start
    state.origin, state.end = origin.isoformat(), args.end.isoformat()

    started = time.time()
    with replay_instance() as instance:
        if abandoned := fail_abandoned_runs(instance, spec.name):
            print(f"{abandoned} run(s) left unfinished by a replay that stopped were marked failed; re-executing")
        echo = EventEcho(project, seen_audit=len(project.registry.audit_log()),
                         last={k: tuple(v) for k, v in state.alerts.items()})
        replay = Replay(defs, instance, project, state, state_file, stop, echo)
        replay.save()
        if args.start > args.end:
            print(f"Nothing to replay: {spec.name} is replayed up to {state.last_day} (`--end` a later day to go "
                  "on, `make clean` to start over).")
        else:
            print(f"{'Resuming' if resuming else 'Replaying'} {spec.name} {args.start} .. {args.end} through the "
                  f"code location's sensors and schedule into {os.environ.get('DAGSTER_HOME')}")
        log = replay.log
        try:
            for delivery in deliveries(history, spec, origin, args.end):
                if delivery.day < args.start:
                    continue  # delivered by an earlier call; here only for the labels landing from it
                replay.day(delivery)
                if log.days % max(args.progress_days, 1) == 0:
                    print(f"  [{delivery.day}] {log.days} days replayed, {log.runs} runs launched "
                          f"({log.stopped} stopped by a gate or check, {len(log.errors)} failed), "
                          f"{time.time() - started:.0f}s")
        except (Stopped, KeyboardInterrupt) as exc:
            how = "stopped" if isinstance(exc, Stopped) else "aborted (a run it cut short is re-executed on resume)"
            print(f"\nCtrl-C: {how} {replay.where()}, after {log.days} days and {log.runs} runs in "
                  f"{time.time() - started:.0f}s. State saved in {state_file}; resume with `{_resume_command(args)}`"
                  f" (it goes on to {args.end}).")
            _report_errors(log)
            return EXIT_STOPPED
        state.end = None
        replay.save()
    summary = summarise(spec, project.store, project.registry, project.ledger)
    print(f"\nDone: {log.days} days, {log.runs} runs in {time.time() - started:.0f}s "
          f"({log.stopped} stopped by a gate or check, {len(log.errors)} failed). Summary:")
    for line in summary.lines():
        print(f"  - {line}")
    print(f"\nWhere to look: `make ui`, then http://127.0.0.1:3000 → Assets → {spec.name}/ (groups ingestion, "
          "features, training, evaluation, deployment, serving, monitoring) → a report's Checks tab and Partitions "
          f"history; Runs for what each sensor and the schedule launched. `.venv/bin/mlops models --model "
          f"{spec.name}` and `mlops audit --model {spec.name}` for the registry.")
    return EXIT_ERRORS if _report_errors(log) else 0


def _report_errors(log: ReplayLog) -> bool:
    if log.errors:
        print(f"\n{len(log.errors)} unexpected failure(s), not a gate or a schema check (see each run in the UI):",
              file=sys.stderr)
        for error in log.errors:
            print(f"  - {error}", file=sys.stderr)
    return bool(log.errors)


if __name__ == "__main__":
    sys.exit(main())
