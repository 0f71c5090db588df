"""A bounded HTTP/1.1 load generator, run as its own process so its CPU is not the server's:
`python -m mlops_assets.benchmarks.load_generator --url URL --concurrency N --duration S --body FILE`.

N connections with keep-alive, each sending the same POST back to back (a closed loop: at most N requests in
flight). The first `--warmup` seconds are not counted; then every response completed within `--duration`
seconds counts, as wrk counts: a 2xx is a success, anything else (another status, a refused or reset
connection, a timeout, a malformed response) a failure with its reason. Requests still in flight when the
window closes are abandoned and reported as `in_flight_at_end`. Latency is from the first byte written to the
last byte of the body read; p50/p99 are nearest-rank percentiles of the counted requests.

`--track-version FIELD` reads `"FIELD": "..."` from each 2xx body (the first one) and reports how many responses each version
served and when (seconds from the start of the window) the served version changed.

SIGINT or SIGTERM closes the window early (`--duration` is then the longest it may last).
Prints one JSON object on stdout. Raw asyncio streams (uvloop when installed) keep the client's own cost per
request far below a server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

MAX_FAILURE_EXAMPLES = 5


class ProtocolError(Exception):
    """The server's reply is not the HTTP/1.1 this client understands."""


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least p % of the values at or below it)."""
    if not sorted_values:
        return None
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is not in (0, 100]")
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


@dataclass
class Window:
    """What one measurement window saw, across every connection."""

    start: float
    end: float
    latencies: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    failure_examples: list[dict] = field(default_factory=list)
    versions: Counter = field(default_factory=Counter)
    version_changes: list[dict] = field(default_factory=list)
    in_flight_at_end: int = 0
    _last_version: str | None = None

    def counts(self, at: float) -> bool:
        return self.start <= at <= self.end

    def success(self, latency: float, at: float, version: str | None) -> None:
        if not self.counts(at):
            return
        self.latencies.append(latency)
        if version is not None:
            self.versions[version] += 1
            if version != self._last_version:
                self.version_changes.append({"at_s": round(at - self.start, 3), "version": version})
                self._last_version = version

    def failure(self, reason: str, at: float) -> None:
        if not self.counts(at):
            return
        self.failures[reason] += 1
        if len(self.failure_examples) < MAX_FAILURE_EXAMPLES:
            self.failure_examples.append({"at_s": round(at - self.start, 3), "reason": reason})

    def summary(self, concurrency: int, rows_per_request: int | None = None) -> dict:
        latencies = sorted(self.latencies)
        seconds = self.end - self.start
        failed = sum(self.failures.values())
        ms = lambda v: None if v is None else round(v * 1000, 3)  # noqa: E731
        out = {
            # the window's start on the wall clock, so another process can place its own events in the window
            "window_start_unix": round(time.time() - (time.perf_counter() - self.start), 3),
            "concurrency": concurrency, "duration_s": round(seconds, 3), "requests": len(latencies),
            "failures": failed, "failure_reasons": dict(self.failures), "failure_examples": self.failure_examples,
            "throughput_rps": round(len(latencies) / seconds, 2) if seconds > 0 else None,
            "p50_ms": ms(percentile(latencies, 50)), "p99_ms": ms(percentile(latencies, 99)),
            "max_ms": ms(latencies[-1] if latencies else None), "in_flight_at_end": self.in_flight_at_end,
        }
        if rows_per_request is not None:
            out["rows_per_request"] = rows_per_request
            out["rows_per_s"] = round(out["throughput_rps"] * rows_per_request, 1) if seconds > 0 else None
        if self.versions:
            out["versions"] = dict(self.versions)
            out["version_changes"] = self.version_changes
        return out


def build_request(url: str, body: bytes) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"--url {url!r}: only http://host:port/path is supported")
    port = parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = (f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return parts.hostname, port, head.encode("ascii") + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server keeps the connection open) for one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise ProtocolError(f"bad status line {lines[0][:60]!r}") from None
    length, chunked, keep_alive = None, False, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and value.strip().lower() == b"close":
            keep_alive = False
    if chunked:
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size + 2)
            del body[-2:]
        return status, bytes(body), keep_alive
    if length is None:
        return status, await reader.read(), False  # the body runs to the end of the connection
    return status, await reader.readexactly(length), keep_alive


async def connection_loop(host: str, port: int, request: bytes, window: Window, timeout: float,
                          track_version: re.Pattern | None) -> None:
    reader = writer = None
    try:
        while (started := time.perf_counter()) < window.end:
            try:
                async with asyncio.timeout(timeout):
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, port)
                    writer.write(request)
                    status, body, keep_alive = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError, ValueError,
                    TimeoutError) as exc:
                reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                window.failure(reason, time.perf_counter())
                writer = _close(writer)
                if isinstance(exc, OSError):
                    await asyncio.sleep(0.01)  # a refused connection must not spin the loop
                continue
            done = time.perf_counter()
            if 200 <= status < 300:
                version = None
                if track_version is not None and (match := track_version.search(body)):
                    version = match.group(1).decode("utf-8", "replace")
                window.success(done - started, done, version)
            else:
                window.failure(f"HTTP {status}", done)
            if not keep_alive:
                writer = _close(writer)
    finally:
        _close(writer)


def _close(writer):
    if writer is not None:
        writer.close()
    return None


async def run(url: str, body: bytes, concurrency: int, duration: float, warmup: float, timeout: float,
              track_version: str | None = None, rows_per_request: int | None = None) -> dict:
    host, port, request = build_request(url, body)
    field_pattern = None
    if track_version:
        field_pattern = re.compile(rb'"' + re.escape(track_version.encode()) + rb'"\s*:\s*"([^"]*)"')
    begin = time.perf_counter()
    window = Window(start=begin + warmup, end=begin + warmup + duration)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):  # stop early: the window closes now, the figures are printed
        loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(connection_loop(host, port, request, window, timeout, field_pattern))
             for _ in range(concurrency)]
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, window.end - time.perf_counter()))
        window.end = max(window.start, time.perf_counter())
    except TimeoutError:
        pass
    # Loops still awaiting a reply once the window has closed are abandoned, as wrk does at the end of a run.
    _, pending = await asyncio.wait(tasks, timeout=0.05)
    window.in_flight_at_end = len(pending)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return window.summary(concurrency, rows_per_request)


# ------------------------------------------------------------------------------------- wrk, when installed

WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
"""
_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk_seconds_to_ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"wrk latency {text!r} not understood")
    return float(match.group(1)) * _WRK_UNITS[match.group(2)]


def parse_wrk(output: str, concurrency: int, duration: float, rows_per_request: int | None = None) -> dict:
    """wrk --latency's report in the shape `run` returns (non-2xx/3xx replies and socket errors are failures)."""
    total = int(re.search(r"(\d+) requests in ([0-9.]+)(\w+),", output).group(1))
    seconds = wrk_seconds_to_ms(re.search(r"requests in ([0-9.]+\w+),", output).group(1)) / 1000
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    reasons = {}
    if non_2xx:
        reasons["non-2xx/3xx"] = int(non_2xx.group(1))
    if socket:
        for name, count in zip(("connect", "read", "write", "timeout"), socket.groups()):
            if int(count):
                reasons[name] = int(count)
    ok = total - reasons.get("non-2xx/3xx", 0)
    quantiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, flags=re.M))
    out = {"load_generator": "wrk", "concurrency": concurrency, "duration_s": round(seconds, 3), "requests": ok,
           "failures": sum(reasons.values()), "failure_reasons": reasons, "failure_examples": [],
           "throughput_rps": round(ok / seconds, 2) if seconds else None,
           "p50_ms": wrk_seconds_to_ms(quantiles["50"]) if "50" in quantiles and ok else None,
           "p99_ms": wrk_seconds_to_ms(quantiles["99"]) if "99" in quantiles and ok else None,
           "max_ms": None, "in_flight_at_end": None}
    if rows_per_request is not None:
        out["rows_per_request"] = rows_per_request
        out["rows_per_s"] = round(out["throughput_rps"] * rows_per_request, 1) if seconds else None
    return out


def _whole_seconds(seconds: float) -> int:
    """wrk takes whole seconds only; the figures use the duration wrk reports."""
    return max(1, math.ceil(seconds))


def run_wrk(url: str, body: Path, concurrency: int, duration: float, warmup: float, timeout: float,
            rows_per_request: int | None = None) -> dict:
    """The same measurement by wrk (Debian's `wrk` package): a warm-up run, then the counted run."""
    import os
    import shutil
    import subprocess
    import tempfile

    wrk = shutil.which("wrk")
    if wrk is None:
        raise FileNotFoundError("wrk is not installed (apt-get install wrk), use the built-in client")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT)
        script.flush()
        env = dict(os.environ, BENCH_BODY=str(Path(body).resolve()))
        base = [wrk, "-t1", f"-c{concurrency}", "--latency", f"--timeout={timeout:g}s", "-s", script.name]
        if warmup > 0:
            subprocess.run([*base, f"-d{_whole_seconds(warmup)}s", url], env=env, capture_output=True, check=True)
        done = subprocess.run([*base, f"-d{_whole_seconds(duration)}s", url], env=env, capture_output=True,
                              text=True, check=True)
    return parse_wrk(done.stdout, concurrency, duration, rows_per_request)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="http://host:port/path to POST to")
    parser.add_argument("--body", required=True, type=Path, help="file holding the JSON request body")
    parser.add_argument("--concurrency", type=int, default=1, help="connections, each one request at a time")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds counted")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before the counted window")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a request counts as failed")
    parser.add_argument("--rows", type=int, default=None, help="rows per request, to report rows/s")
    parser.add_argument("--wrk", action="store_true", help="measure with wrk instead (no --track-version)")
    parser.add_argument("--track-version", metavar="FIELD", default=None,
                        help="count the served versions of 2xx replies, read from this JSON field")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.duration <= 0 or args.warmup < 0 or args.timeout <= 0:
        parser.error("--concurrency must be >= 1, --duration and --timeout > 0, --warmup >= 0")
    try:
        body = args.body.read_bytes()
    except OSError as exc:
        parser.error(f"--body {args.body}: {exc.strerror or exc}")
    if args.wrk:
        if args.track_version:
            parser.error("--track-version needs the built-in client, not --wrk")
        result = run_wrk(args.url, args.body, args.concurrency, args.duration, args.warmup, args.timeout, args.rows)
        print(json.dumps(result))
        return 0
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(run(args.url, body, args.concurrency, args.duration, args.warmup, args.timeout,
                        args.track_version, args.rows))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
