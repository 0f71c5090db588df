"""The production profile's services on one machine, started and stopped together: the PostgreSQL databases
(Dagster instance, model registry), a RabbitMQ virtual host of its own, an S3-compatible server (moto's server
mode on a loopback port, with its bucket), and N Celery workers, each in its own process group so that stopping
them stops exactly them (never `worker terminate --all`, which would stop every worker on the broker).

`Stack.env` is the environment every process of the profile runs with (the replay, `dagster dev`, the
workers): which instance, registry, broker and executor. Plain Python, no Dagster imports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import mlops_assets

PROFILE_DIR = Path(__file__).resolve().parent
INSTANCE_YAML = PROFILE_DIR / "dagster.yaml"
CODE_ROOT = Path(mlops_assets.__file__).resolve().parents[1]  # what the children must import: this checkout
BIN = Path(sys.executable).parent  # the virtualenv's bin: dagster-celery calls a bare `celery`
DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "pyamqp://guest:guest@127.0.0.1:5672"
BACKEND = "rpc://"  # results travel back through the broker: no second server
BUCKET = "mlops-state"
# Every piece of state (warehouse, archive, ledger, artifacts, landing zone) on the profile's S3 server
# (MLOPS_STORAGE_URL); False keeps it in the local data folder, which works too on one machine.
STATE_ON_S3 = True
_NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")


class StackError(RuntimeError):
    """A service of the profile could not be started (the message says which and why)."""


def unreachable(pg_admin_url: str | None = None, broker: str | None = None) -> str | None:
    """Why the profile cannot run here (PostgreSQL or the broker not accepting connections), or None."""
    import psycopg2

    pg_admin_url = pg_admin_url or os.environ.get("MLOPS_PG_ADMIN_URL") or DEFAULT_PG_ADMIN
    try:
        psycopg2.connect(pg_admin_url, connect_timeout=3).close()
    except psycopg2.Error as exc:
        return f"PostgreSQL unreachable at {_safe(pg_admin_url)}: {str(exc).strip().splitlines()[0]}"
    broker = broker or os.environ.get("MLOPS_CELERY_BROKER") or DEFAULT_AMQP
    parts = urlsplit(broker)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=3).close()
    except OSError as exc:
        return f"Celery broker unreachable at {_safe(broker)}: {exc}"
    return None


def _safe(url: str) -> str:
    """A URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StackConfig:
    name: str          # names the databases (mlops_<name>_dagster, mlops_<name>_registry) and the vhost
    home: Path         # DAGSTER_HOME: the instance YAML, the workers' config and the services' logs
    data_dir: Path     # MLOPS_DATA_DIR
    workers: int = 2
    throwaway: bool = False  # drop the databases and the vhost on stop (tests, benchmarks)
    extra_env: dict = field(default_factory=dict)


class Stack:
    """`with Stack(config) as stack:` starts everything, `stack.env` is the profile's environment; leaving the
    block (normally, on an error, on Ctrl-C) stops everything it started."""

    def __init__(self, config: StackConfig, say=print):
        if not _NAME.fullmatch(config.name):
            raise StackError(f"invalid stack name {config.name!r}: lower-case letters, digits and _")
        config.home, config.data_dir = config.home.resolve(), config.data_dir.resolve()  # DAGSTER_HOME: absolute
        self.config, self.say = config, say
        self.pg_admin = os.environ.get("MLOPS_PG_ADMIN_URL") or DEFAULT_PG_ADMIN
        self.databases = {"instance": f"mlops_{config.name}_dagster", "registry": f"mlops_{config.name}_registry"}
        self.vhost: str | None = None
        self.workers: list[subprocess.Popen] = []
        self.moto: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.logs = config.home / "logs"

    # -- lifecycle ------------------------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        started = time.monotonic()
        if reason := unreachable(self.pg_admin, os.environ.get("MLOPS_CELERY_BROKER")):
            raise StackError(reason)
        cfg = self.config
        cfg.home.mkdir(parents=True, exist_ok=True)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        shutil.copyfile(INSTANCE_YAML, cfg.home / "dagster.yaml")
        self._create_databases()
        broker = os.environ.get("MLOPS_CELERY_BROKER") or self._broker_vhost()
        self.env = self._environment(broker)
        self._start_s3()
        # the instance's tables, created once here: processes starting together would race to create them
        subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=self.env, cwd=CODE_ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=open(self.logs / "migrate.log", "ab"))
        (cfg.home / "celery.yaml").write_text(
            f"execution:\n  config:\n    broker: '{broker}'\n    backend: '{BACKEND}'\n")
        self.start_workers(cfg.workers)
        self.say(f"[production] ready in {time.monotonic() - started:.1f}s: instance and registry on PostgreSQL, "
                 f"{len(self.workers)} Celery worker(s) on {_safe(broker)}; logs in {self.logs}")

    def stop(self) -> None:
        self.stop_workers()
        if self.moto is not None:
            _stop_group(self.moto, signal.SIGTERM, 10)
            self.moto = None
            self.say("[production] S3 server stopped")
        if self.config.throwaway:
            self.drop()

    def drop(self) -> None:
        """Drop the stack's databases and its broker vhost: everything the profile's instance and registry held."""
        self._drop_databases()
        _rabbitmqctl("delete_vhost", self.vhost or f"mlops_{self.config.name}")
        self.vhost = None

    # -- PostgreSQL -----------------------------------------------------------------------------------------
    def _admin(self):
        import psycopg2

        con = psycopg2.connect(self.pg_admin, connect_timeout=10)
        con.autocommit = True  # CREATE / DROP DATABASE cannot run in a transaction
        return con

    def _create_databases(self) -> None:
        from psycopg2 import sql

        con = self._admin()
        try:
            with con.cursor() as cur:
                for name in self.databases.values():
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone() is None:
                        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            con.close()
        self.say(f"[production] PostgreSQL databases {', '.join(self.databases.values())} ready")

    def _drop_databases(self) -> None:
        from psycopg2 import sql

        try:
            con = self._admin()
        except Exception as exc:  # noqa: BLE001 - stopping must go on; say what is left behind
            self.say(f"[production] could not drop the databases: {exc}")
            return
        try:
            with con.cursor() as cur:
                for name in self.databases.values():
                    cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            con.close()

    def database_url(self, which: str, scheme: str = "postgresql") -> str:
        parts = urlsplit(self.pg_admin)
        return urlunsplit(parts._replace(scheme=scheme, path=f"/{self.databases[which]}"))

    # -- broker ---------------------------------------------------------------------------------------------
    def _broker_vhost(self) -> str:
        """A RabbitMQ virtual host of this stack's own, so that its workers take only its runs' steps; the
        default vhost (shared with any other worker on the broker) when rabbitmqctl is not available."""
        vhost = f"mlops_{self.config.name}"
        if _rabbitmqctl("add_vhost", vhost, ok_if="already exists") and _rabbitmqctl(
                "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"):
            self.vhost = vhost
            return f"{DEFAULT_AMQP}/{vhost}"
        self.say("[production] rabbitmqctl unavailable: using the broker's default vhost (shared with any other "
                 "worker on it); set MLOPS_CELERY_BROKER to choose one")
        return f"{DEFAULT_AMQP}//"

    # -- environment ----------------------------------------------------------------------------------------
    def _environment(self, broker: str) -> dict[str, str]:
        cfg = self.config
        env = dict(os.environ)
        env.update({
            "DAGSTER_HOME": str(cfg.home),
            "MLOPS_DATA_DIR": str(cfg.data_dir),
            "MLOPS_INSTANCE_PG_URL": self.database_url("instance", "postgresql+psycopg2"),
            "MLOPS_REGISTRY_URL": self.database_url("registry"),
            "MLOPS_EXECUTOR": "celery",
            "MLOPS_CELERY_BROKER": broker,
            "MLOPS_CELERY_BACKEND": BACKEND,
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(CODE_ROOT), env.get("PYTHONPATH", "")])),
        })
        env.update(cfg.extra_env)
        return env

    # -- S3 -------------------------------------------------------------------------------------------------
    def _start_s3(self) -> None:
        """moto's server mode on a loopback port, as a process of its own (it outlives no one: stopped with the
        stack), and the bucket the profile's state goes to."""
        port = free_port()
        log = open(self.logs / "s3.log", "ab")
        self.moto = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        endpoint = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _port_open(port), 30, f"moto_server on port {port} (log {self.logs / 's3.log'})")
        self.env.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "profile",
                         "AWS_SECRET_ACCESS_KEY": "profile", "AWS_DEFAULT_REGION": "us-east-1"})
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="profile", aws_secret_access_key="profile",
                     region_name="us-east-1").create_bucket(Bucket=BUCKET)
        if STATE_ON_S3:
            self.env["MLOPS_STORAGE_URL"] = f"s3://{BUCKET}/{self.config.name}"
        self.say(f"[production] S3 server on {endpoint}, bucket {BUCKET}")

    # -- workers --------------------------------------------------------------------------------------------
    def start_workers(self, count: int) -> None:
        """`count` more workers, one task at a time each; returns once every one says it is ready."""
        first = len(self.workers) + 1
        for n in range(first, first + count):
            log = self.logs / f"worker-{n}.log"
            log.write_bytes(b"")
            self.workers.append(subprocess.Popen(
                [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                 "-y", str(self.config.home / "celery.yaml"), "-n", f"w{n}", "--", "--concurrency=1"],
                env=self.env, cwd=CODE_ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                start_new_session=True))
        for n, worker in enumerate(self.workers[first - 1:], start=first):
            log = self.logs / f"worker-{n}.log"
            _wait_for(lambda: b" ready." in log.read_bytes() or worker.poll() is not None, 120,
                      f"Celery worker w{n} (log {log})")
            if worker.poll() is not None:
                raise StackError(f"Celery worker w{n} exited with {worker.returncode}; see {log}")
            self.say(f"[production] Celery worker w{n} ready")

    def stop_workers(self) -> None:
        for worker in self.workers:
            _stop_group(worker, signal.SIGTERM, 30)
        if self.workers:
            self.say(f"[production] {len(self.workers)} Celery worker(s) stopped")
        self.workers = []

    def run(self, command: list[str], stop_grace_s: float = 60) -> int:
        """Run one command of the profile in its environment and its own process group, and wait for it.
        Ctrl-C (or SIGTERM) reaching this process is passed on to it once, as SIGINT (its own clean stop: the
        replay finishes its run in progress, `dagster dev` stops its webserver and daemon); whatever is left of
        its group `stop_grace_s` later is killed."""
        child = subprocess.Popen(command, env=self.env, cwd=CODE_ROOT, start_new_session=True,
                                 preexec_fn=_default_sigint)
        asked: list[float] = []

        def forward(_signum, _frame):
            if not asked and child.poll() is None:
                child.send_signal(signal.SIGINT)
            asked.append(time.monotonic())

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while child.poll() is None:
                if asked and time.monotonic() - asked[0] > stop_grace_s:
                    self.say(f"[production] {Path(command[0]).name} still running {stop_grace_s:.0f}s after "
                             "Ctrl-C: killed")
                    break
                time.sleep(0.2)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            _stop_group(child, signal.SIGINT, stop_grace_s if child.poll() is None and not asked else 0)
        return child.returncode


def _default_sigint() -> None:
    """A command started from a shell's background job inherits SIGINT ignored, and Python then never turns
    SIGINT into KeyboardInterrupt: `dagster dev` could not be stopped. Give it the default back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _rabbitmqctl(*args: str, ok_if: str = "") -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    try:
        done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 or bool(ok_if and ok_if in done.stdout + done.stderr)


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout_s:.0f}s")
        time.sleep(0.2)


def _stop_group(process: subprocess.Popen, sig: int, grace_s: float) -> None:
    """Signal the process group the process leads (started with start_new_session), wait until every member
    is gone (the wrapper's `celery` child finishes its task first), SIGKILL what is left after `grace_s`."""
    def group_alive() -> bool:
        process.poll()  # reap the leader, so that only live members keep the group
        try:
            os.killpg(process.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    if not group_alive():
        return
    os.killpg(process.pid, sig)
    deadline = time.monotonic() + grace_s
    while group_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_alive():
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
