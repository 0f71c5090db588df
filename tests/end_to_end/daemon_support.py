"""The real dagster-daemon on a temporary DAGSTER_HOME with the instance YAML the project ships, for the
end-to-end tests: start it on the code location, read the runs it launched, find and kill a run's worker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import yaml

from conftest import REPO

SHIPPED_YAML = REPO / "mlops_assets" / "dagster.yaml"


def instance_home(path: Path, run_monitoring: dict | None = None) -> Path:
    """DAGSTER_HOME at `path` with the shipped dagster.yaml, optionally with some run_monitoring settings
    replaced (shorter poll intervals keep a test short; everything else is what `make` installs)."""
    path.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(SHIPPED_YAML.read_text())
    if run_monitoring:
        config["run_monitoring"] = {**config.get("run_monitoring", {}), **run_monitoring}
    (path / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def create_storage() -> None:
    """Create the tables of the instance at $DAGSTER_HOME before the daemon starts: two processes opening a
    fresh SQLite instance at the same moment both try to create them."""
    with dg.DagsterInstance.get():
        pass


class Daemon:
    """`dagster-daemon run` on the project's code location, in its own session so that it and everything it
    starts (its code server, the run workers) can be stopped together."""

    def __init__(self, tmp_path: Path, env: dict[str, str]):
        self.env = {**os.environ, **env}
        self.workspace = tmp_path / "workspace.yaml"
        self.workspace.write_text(
            "load_from:\n  - python_module:\n      module_name: mlops_assets.definitions\n"
            f"      working_directory: {REPO}\n      location_name: mlops_assets\n")
        self.log_path = tmp_path / "daemon.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        daemon_bin = Path(sys.executable).parent / "dagster-daemon"
        self._log = open(self.log_path, "a")
        self.process = subprocess.Popen([str(daemon_bin), "run", "-w", str(self.workspace)], env=self.env,
                                        cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        finally:
            self._log.close()
            self.process = None

    def kill(self) -> None:
        """SIGKILL the daemon and everything it started, as when the machine goes down."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()
        self.process = None

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text()[-chars:] if self.log_path.exists() else ""

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Budget:
    """One time limit for a whole test: every wait draws on it, so the test is bounded however its steps go."""

    def __init__(self, seconds: float, daemon: Daemon | None = None):
        self.started, self.deadline, self.daemon = time.time(), time.time() + seconds, daemon

    def elapsed(self) -> float:
        return time.time() - self.started

    def wait_for(self, predicate, what: str, interval: float = 1.0):
        """Poll `predicate` until it returns something truthy; fail with the daemon's log tail when the budget
        runs out."""
        while True:
            value = predicate()
            if value:
                return value
            if self.daemon is not None and self.daemon.process is not None and self.daemon.process.poll() is not None:
                raise AssertionError(f"the daemon exited while waiting for {what}\n" + self.daemon.tail())
            if time.time() > self.deadline:
                raise AssertionError(f"out of time ({self.elapsed():.0f}s) waiting for {what}\n"
                                     + (self.daemon.tail() if self.daemon else ""))
            time.sleep(interval)


def finished(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun | None:
    run = instance.get_run_by_id(run_id)
    return run if run is not None and run.is_finished else None


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the process executing the run, from the code server's 'Started process for run' event."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        found = re.match(r"Started process for run \(pid: (\d+)\)", record.message or "")
        if found:
            return int(found.group(1))
    return None


def step_events(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """{step key: [event types in order]} for the steps of a run."""
    out: dict[str, list[str]] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is not None and record.step_key and event.event_type_value.startswith("STEP_"):
            out.setdefault(record.step_key, []).append(event.event_type_value)
    return out


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children first found through /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out
