"""Helpers for tests/test_ui.py: a `dagster dev` process on a loopback port, its GraphQL API (the one the
UI uses), and headless Chromium to render UI pages to a PNG and to their rendered DOM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

LOCATION = "mlops_assets"
REPOSITORY = "__repository__"  # the repository name Dagster gives a Definitions object
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sigint_default():
    # A shell that starts a job in the background ignores SIGINT in it, and exec keeps "ignored": then
    # Python never installs its KeyboardInterrupt handler and `dagster dev` cannot be stopped with SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class DagsterDev:
    """`dagster dev` in its own process group, its output in `log_path`. Stopped with SIGINT (its shutdown
    path: it tells the webserver and daemon to stop), killed as a group if that takes longer than a bound."""

    def __init__(self, repo: Path, env: dict[str, str], log_path: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.ready_seconds: float | None = None  # set by wait_until_loaded
        self.stop_seconds: float | None = None  # set by stop
        dagster = Path(sys.executable).parent / "dagster"
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=repo, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_sigint_default,
        )

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
        if answer.get("errors"):
            raise AssertionError(f"GraphQL errors: {json.dumps(answer['errors'], indent=1)[:3000]}")
        return answer["data"]

    def wait_until_loaded(self, timeout: float = 120) -> float:
        """Seconds until GraphQL answers and the code location has loaded; fails with the load error or
        the log tail otherwise."""
        started = time.monotonic()
        query = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
                     locationOrLoadError { __typename ... on PythonError { message stack } } } } } }"""
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise AssertionError(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                workspace = self.graphql(query, timeout=5)["workspaceOrError"]
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                time.sleep(0.5)
                continue
            for entry in workspace.get("locationEntries", []):
                if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED":
                    loaded = entry["locationOrLoadError"] or {}
                    if loaded.get("__typename") == "PythonError":
                        raise AssertionError(f"code location failed to load: {loaded['message']}\n"
                                             f"{''.join(loaded['stack'])[-3000:]}")
                    self.ready_seconds = time.monotonic() - started
                    return self.ready_seconds
            time.sleep(0.5)
        raise AssertionError(f"dagster dev not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 45) -> float:
        """Seconds the shutdown took. Whatever is left of the process group after the bound is killed."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:  # the group is ours (start_new_session): its id is the process id
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self._log.close()
        self.stop_seconds = time.monotonic() - started
        return self.stop_seconds


# ------------------------------------------------------------------------------------------- GraphQL


def launch_assets(dev: DagsterDev, partition: str, assets: list[str], checks: list[tuple[str, str]]) -> str:
    """Launch the implicit asset job on a subset of assets and checks for one partition, as the UI's
    "Materialize selected" does; returns the run id. The steps run in the run's own process: the default
    multiprocess executor starts (and imports the code location in) one more process per step, which
    costs ~15 s each on a busy 2-core machine and is not what this exercises."""
    params = {
        "runConfigData": {"execution": {"config": {"in_process": {}}}},
        "selector": {
            "repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": name.split("/")} for name in assets],
            "assetCheckSelection": [{"assetKey": {"path": asset.split("/")}, "name": name} for asset, name in checks],
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }
    answer = dev.graphql("""
        mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
          __typename ... on LaunchRunSuccess { run { runId } }
          ... on Error { message } ... on PythonError { stack } } }""", {"params": params})["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return answer["run"]["runId"]


def launch_job(dev: DagsterDev, job: str, tags: dict[str, str]) -> str:
    """Launch a job of the location with tags, as its schedule would (steps in the run's own process)."""
    params = {
        "runConfigData": {"execution": {"config": {"in_process": {}}}},
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    answer = dev.graphql("""
        mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
          __typename ... on LaunchRunSuccess { run { runId } }
          ... on Error { message } ... on PythonError { stack } } }""", {"params": params})["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return answer["run"]["runId"]


def wait_for_runs(dev: DagsterDev, run_ids: list[str], timeout: float = 150) -> dict[str, str]:
    """Poll until every run is finished; {run id: final status}."""
    started, status = time.monotonic(), {}
    while time.monotonic() - started < timeout:
        for run_id in run_ids:
            run = dev.graphql("query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }",
                              {"id": run_id})["runOrError"]
            status[run_id] = run.get("status", run["__typename"])
        if all(s in TERMINAL_RUN_STATUSES for s in status.values()):
            return status
        time.sleep(1)
    raise AssertionError(f"runs not finished after {timeout:.0f}s: {status}\n{dev.log_tail()}")


def _stop(dev: DagsterDev, mutation: str, instigator_id: str, attempts: int = 5) -> dict:
    """One stop toggle. The daemon may be writing the instigator's first state at the same moment (Dagster
    answers 500: "InstigatorState ... is already present in storage"); the toggle then succeeds on retry."""
    for attempt in range(attempts):
        try:
            return dev.graphql(f"mutation($id: String) {{ {mutation}(id: $id) {{ __typename }} }}",
                               {"id": instigator_id})[mutation]
        except urllib.error.HTTPError as exc:
            if exc.code != 500 or attempt == attempts - 1:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def stop_all_instigators(dev: DagsterDev) -> list[str]:
    """Stop every running sensor and schedule of the location (the UI's toggles), so that only the runs a
    test launches happen; then wait for any sensor tick still in flight. Returns what was stopped."""
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    repository = dev.graphql("""
        query($selector: RepositorySelector!) { repositoryOrError(repositorySelector: $selector) {
          __typename ... on Repository {
            sensors { id name sensorState { status } } schedules { id name scheduleState { status } } } } }""",
        {"selector": selector})["repositoryOrError"]
    assert repository["__typename"] == "Repository", repository
    stopped = []
    for sensor in repository["sensors"]:
        if sensor["sensorState"]["status"] == "RUNNING":
            result = _stop(dev, "stopSensor", sensor["id"])
            assert result["__typename"] == "StopSensorMutationResult", result
            stopped.append(sensor["name"])
    for schedule in repository["schedules"]:
        if schedule["scheduleState"]["status"] == "RUNNING":
            result = _stop(dev, "stopRunningSchedule", schedule["id"])
            assert result["__typename"] == "ScheduleStateResult", result
            stopped.append(schedule["name"])
    deadline = time.monotonic() + 30
    for name in (s["name"] for s in repository["sensors"]):
        while time.monotonic() < deadline:
            ticks = dev.graphql("""
                query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
                  ... on Sensor { sensorState { ticks(limit: 1) { status } } } } }""",
                {"selector": {**selector, "sensorName": name}})["sensorOrError"]["sensorState"]["ticks"]
            if not ticks or ticks[0]["status"] != "STARTED":
                break
            time.sleep(0.5)
    return stopped


# ------------------------------------------------------------------------------------------- Chromium


def chromium_executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render_page(url: str, screenshot: Path, profile_dir: Path, budget_ms: int = 15000) -> str:
    """Render `url` in headless Chromium: a screenshot to `screenshot` and the DOM after the page's scripts
    ran for `budget_ms` of virtual time (virtual time waits for pending requests, so a slow server still
    gets its answers in). Returns the DOM."""
    command = [
        chromium_executable(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--hide-scrollbars", f"--user-data-dir={profile_dir}", "--window-size=1600,1000",
        f"--virtual-time-budget={budget_ms}", f"--screenshot={screenshot}", "--dump-dom", url,
    ]
    done = subprocess.run(command, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise AssertionError(f"chromium exited with {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout.decode("utf-8", errors="replace")


class _TextCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag, attrs):
        self._skipping += tag in ("script", "style", "noscript")

    def handle_endtag(self, tag):
        self._skipping -= tag in ("script", "style", "noscript") and self._skipping > 0

    def handle_data(self, data):
        if not self._skipping and data.strip():
            self.parts.append(data.strip())


def visible_texts(html: str) -> set[str]:
    """The text nodes a person sees (scripts and styles left out): what the UI rendered, not what it
    shipped."""
    collector = _TextCollector()
    collector.feed(html)
    return set(collector.parts)
