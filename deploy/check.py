"""`make deploy-check`: what can be checked of deploy/Dockerfile without a container runtime or a registry.

It reads the Dockerfile, runs its install step (deploy/install.sh, the script the image runs) into a throwaway
virtual environment, lays out the files its COPY lines put in the image and its ENV variables (container paths
mapped into a temporary folder), starts its CMD (the gRPC code server) on a free port from a folder without the
sources, and waits until `dagster api grpc-health-check` answers; then stops the server. Exit 0 when the server
answered, 1 otherwise. Not part of `make test`: the install alone takes minutes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
HEALTH_TIMEOUT_S = 180


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined and comments dropped."""
    found, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = whole.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


def env_pairs(arguments: str) -> dict[str, str]:
    """ENV KEY=VALUE ... (the form this Dockerfile uses)."""
    return dict(part.split("=", 1) for part in shlex.split(arguments))


def copy_sources(arguments: str) -> tuple[list[str], str]:
    parts = json.loads(arguments) if arguments.startswith("[") else arguments.split()
    parts = [p for p in parts if not p.startswith("--")]
    return parts[:-1], parts[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    steps = instructions(DOCKERFILE.read_text())
    work = Path(tempfile.mkdtemp(prefix="deploy-check-"))

    def local(path: str) -> Path:
        """A container path inside the temporary folder."""
        return work / path.lstrip("/")

    try:
        workdir, env = work, dict(os.environ)
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        for keyword, arguments in steps:
            if keyword == "WORKDIR":
                workdir = local(arguments)
                workdir.mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY":
                sources, target = copy_sources(arguments)
                for source in sources:
                    destination = local(target) if target.startswith("/") else workdir / target
                    origin = ROOT / source
                    if origin.is_dir():
                        shutil.copytree(origin, destination if not target.endswith("/") else
                                        destination / origin.name, dirs_exist_ok=True)
                    else:
                        into = destination / origin.name if target.endswith("/") else destination
                        into.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(origin, into)
            elif keyword == "RUN" and "install.sh" in arguments:
                # the install command, with its container paths mapped; `rm -rf /build` included
                command = re.sub(r"(?<![\w/])/[^\s;&|]+", lambda m: str(local(m.group(0))), arguments)
                command = command.replace("PYTHON=python ", f"PYTHON={shlex.quote(sys.executable)} ")
                print(f"install: {command}", flush=True)
                started = time.perf_counter()
                subprocess.run(["sh", "-c", command], check=True, env=env)
                print(f"install: done in {time.perf_counter() - started:.0f} s", flush=True)
            elif keyword == "ENV":
                for key, value in env_pairs(arguments).items():
                    value = value.replace("$PATH", env.get("PATH", ""))
                    env[key] = ":".join(str(local(v)) if v.startswith("/opt") else v for v in value.split(":"))
            elif keyword == "CMD":
                command = json.loads(arguments)
        port = free_port()
        command = [str(port) if part == "3030" else part for part in command]
        command[0] = shutil.which(command[0], path=env["PATH"]) or command[0]
        print(f"serve: {' '.join(command)} (cwd {workdir}, MLOPS_SPECS={env.get('MLOPS_SPECS')})", flush=True)
        server = subprocess.Popen(command, cwd=workdir, env=env, start_new_session=True)
        check = [shutil.which("dagster", path=env["PATH"]), "api", "grpc-health-check", "-p", str(port)]
        started, answered = time.perf_counter(), False
        try:
            while time.perf_counter() - started < HEALTH_TIMEOUT_S and server.poll() is None:
                done = subprocess.run(check, env=env, cwd=workdir, capture_output=True, text=True)
                if done.returncode == 0:
                    answered = True
                    # the code server pod's memory request is sized from this (deploy/README.md)
                    status = Path(f"/proc/{server.pid}/status")
                    if status.exists():
                        peak = [ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM:")]
                        print(f"code server peak RSS after loading the definitions: "
                              f"{int(peak[0].split()[1]) / 1024:.0f} MiB", flush=True)
                    break
                time.sleep(2)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
        waited = time.perf_counter() - started
        if answered:
            print(f"health check: the code server answered after {waited:.1f} s; stopped")
            return 0
        print(f"health check: no answer after {waited:.0f} s (server exit code {server.returncode})")
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
