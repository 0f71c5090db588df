"""What every chaos case shares: the outcome of a case, a code location on a scratch folder, a sensor tick that
cannot hang, and a subprocess that is SIGKILLed at the k-th file operation of the step it runs."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from mlops_assets.core.config.settings import PROJECT_DIR, Settings

warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

SPECS = PROJECT_DIR / "data" / "specs"
# What a case can end as. rejected / recovered are fine; the last three fail the suite.
OUTCOMES = ("rejected", "recovered", "lost", "inconsistent", "wedged")
FAILURES = ("lost", "inconsistent", "wedged")


@dataclass
class Result:
    case: str
    outcome: str
    detail: str = ""
    seconds: float = 0.0

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")


class Wedged(Exception):
    """A step did not finish within its time limit."""


@contextlib.contextmanager
def alarm(seconds: int, what: str):
    """Raise Wedged if the block runs longer than `seconds` (main thread only)."""
    def timeout(*_):
        raise Wedged(f"{what} blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class Location:
    """One model's code location on `data_dir`, with an ephemeral Dagster instance."""

    def __init__(self, data_dir: Path, spec_path: Path, instance: dg.DagsterInstance | None = None):
        from mlops_assets.defs import build_definitions

        self.settings = Settings.for_data_dir(data_dir, spec_path)
        self.defs = build_definitions(self.settings)
        portfolio = self.defs.resources["portfolio"].portfolio
        self.model = portfolio.names[0]
        self.project = portfolio.model(self.model)
        self.instance = instance or dg.DagsterInstance.ephemeral()
        self.cursor: str | None = None
        self.failed_runs = 0

    def tick_landing(self, seconds: int = 60) -> tuple[int, str]:
        """One landing-sensor tick as the daemon makes it, then the runs it requests; (runs, warnings logged)."""
        from mlops_assets.demo.launch import execute_request

        sensor = self.defs.get_sensor_def(f"{self.model}_landing_sensor")
        ctx = dg.build_sensor_context(instance=self.instance, definitions=self.defs, cursor=self.cursor,
                                      resources=self.defs.resources)
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append
        ctx.log.addHandler(handler)
        with alarm(seconds, "the landing sensor"):
            result = sensor.evaluate_tick(ctx)
        self.cursor = result.cursor
        runs = 0
        for request in result.run_requests or []:
            tags = {**(request.tags or {}), "dagster/run_key": request.run_key or ""}
            if request.run_key and self.instance.get_runs(
                    filters=dg.RunsFilter(tags={"dagster/run_key": request.run_key}), limit=1):
                continue
            with alarm(300, f"the run for {request.partition_key}"):
                outcome = execute_request(self.defs, self.instance, request, tags, sensor)
            runs += 1
            self.failed_runs += not outcome.success
        warned = "\n".join(r.getMessage() for r in records if r.levelno >= logging.WARNING)
        return runs, warned


# A child process that runs `STEP` (Python source, given `ARGS`) and pauses for ever just before its k-th call
# of a file operation that changes what readers see, so the parent can SIGKILL it exactly there.
KILLABLE = textwrap.dedent("""
    import json, os, sys, time
    STEPS = ("replace", "rename", "unlink", "remove", "fsync", "rmdir")
    kill_at, args = int(sys.argv[1]), json.loads(sys.argv[2])
    calls = []
    for name in STEPS:
        real = getattr(os, name)
        def wrapper(*a, _real=real, _name=name, **kw):
            calls.append(_name)
            if len(calls) - 1 == kill_at:
                print("paused before " + _name, flush=True)
                time.sleep(600)
            return _real(*a, **kw)
        setattr(os, name, wrapper)
""")


def run_killed(step_source: str, args: dict, kill_at: int | None = None, kill_after: float | None = None,
               timeout: int = 180) -> str:
    """Run `step_source` in a fresh interpreter and SIGKILL it: when it pauses before file operation `kill_at`,
    or `kill_after` seconds after it prints "ready" (the step's own marker, for writes Python does not see,
    such as DuckDB's). Returns "killed ..." or "done" (the step finished first); raises Wedged if it neither
    pauses nor finishes within `timeout`, RuntimeError if it failed on its own."""
    import json
    import time

    source = KILLABLE + textwrap.dedent(step_source) + "\nprint('done', flush=True)\n"
    at = -1 if kill_at is None else kill_at
    proc = subprocess.Popen([sys.executable, "-c", source, str(at), json.dumps(args)], cwd=PROJECT_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)})
    outcome = None
    try:
        with alarm(timeout, "a killable step"):
            while True:
                line = proc.stdout.readline().strip()
                if not line or line == "done":
                    break
                if line.startswith("paused"):
                    outcome = "killed " + line[len("paused "):]
                    break
                if line == "ready" and kill_after is not None:
                    time.sleep(kill_after)
                    outcome = f"killed {kill_after * 1000:.0f} ms into the step"
                    break
    except Wedged:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if outcome is not None and proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    code = proc.wait()
    rest, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    if code == -signal.SIGKILL:
        return outcome
    if code != 0 or (line != "done" and "done" not in rest):
        raise RuntimeError(f"the step failed on its own (exit {code}): {err.strip()[-800:]}")
    return "done"


def registry_problems(registry, champion_expected: bool = True) -> list[str]:
    """What is inconsistent in a registry: not exactly one champion, an audit log whose transitions replayed
    in order do not give the current aliases, gaps in its ids, or overlapping champion tenures."""
    problems = []
    versions = registry.list_versions()
    champions = [v.version for v in versions if "champion" in v.aliases]
    if len(champions) > 1 or (champion_expected and not champions):
        problems.append(f"{len(champions)} champions: {champions}")
    log = registry.audit_log()
    if [e.id for e in log] != list(range(1, len(log) + 1)):
        problems.append("audit ids have gaps or duplicates")
    state: dict[str, str | None] = {}
    for e in log:
        if e.version is None or e.from_alias == e.to_alias:
            continue
        if state.get(e.version) != e.from_alias:
            problems.append(f"audit entry {e.id} ({e.action} {e.version}) starts from a stale alias")
        state[e.version] = e.to_alias
    now = {v.version: v.aliases[0] for v in versions if v.aliases}
    if {v: a for v, a in state.items() if a} != now:
        problems.append(f"audit log replays to {state}, aliases are {now}")
    tenures = sorted((h for v in versions for h in registry.alias_history(v.version) if h.alias == "champion"),
                     key=lambda h: h.started_at)
    if sum(1 for h in tenures if h.ended_at is None) != len(champions):
        problems.append("open champion tenures differ from champions")
    if not all(a.ended_at is not None and a.ended_at <= b.started_at for a, b in zip(tenures, tenures[1:])):
        problems.append("champion tenures overlap")
    return problems
