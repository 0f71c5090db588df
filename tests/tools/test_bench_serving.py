"""The serving benchmark's load generator (statistics, failures, versions, early stop) and its table and target
logic, against tiny stub HTTP servers in this process; no MLflow and no model here."""

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from mlops_assets.benchmarks import load_generator as lg
from mlops_assets.benchmarks import serving
from mlops_assets.benchmarks.serving_report import report, table, targets


class StubServer:
    """A keep-alive HTTP/1.1 server on a free port: every `fail_every`-th request gets a 503, each reply takes
    `delay` seconds (one at a time when `serial`, as a single-worker server would), and names `version`."""

    def __init__(self, delay=0.0, fail_every=0, serial=False):
        self.delay, self.fail_every, self.serial = delay, fail_every, serial
        self.version, self.count, self.writers = "v1", 0, set()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        self.lock = asyncio.Lock()
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/predict"
        ready.set()
        self.loop.run_forever()

    async def _handle(self, reader, writer):
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                await reader.readexactly(length)
                self.count += 1
                failing = self.fail_every and self.count % self.fail_every == 0
                if self.serial:
                    async with self.lock:
                        await asyncio.sleep(self.delay)
                elif self.delay:
                    await asyncio.sleep(self.delay)
                body = json.dumps({"predictions": [{"score": 0.25, "model_version": self.version}]}).encode()
                status = b"503 Service Unavailable" if failing else b"200 OK"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _shutdown(self):
        self.server.close()
        for writer in self.writers:
            writer.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    def close(self):
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def body(tmp_path):
    path = tmp_path / "body.json"
    path.write_text('{"x": 1}')
    return path


def generate(url, body, *extra, concurrency=1, duration=1.0, warmup=0.2):
    done = subprocess.run([sys.executable, "-m", "mlops_assets.benchmarks.load_generator", "--url", url,
                           "--body", str(body), "--concurrency", str(concurrency), "--duration", str(duration),
                           "--warmup", str(warmup), *extra], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert lg.percentile(values, 50) == 50.0 and lg.percentile(values, 99) == 99.0
    assert lg.percentile(values, 100) == 100.0 and lg.percentile([7.0], 99) == 7.0
    assert lg.percentile([1.0, 2.0, 3.0], 50) == 2.0 and lg.percentile([], 50) is None
    with pytest.raises(ValueError):
        lg.percentile(values, 0)


def test_window_counts_only_what_completes_inside_it():
    window = lg.Window(start=10.0, end=12.0)
    window.success(0.5, 9.9, "v1")  # warm-up: not counted
    window.success(0.004, 10.5, "v1")
    window.success(0.002, 11.0, "v2")
    window.success(0.003, 11.5, "v2")
    window.failure("HTTP 503", 11.8)
    window.failure("timeout", 12.5)  # after the window
    out = window.summary(concurrency=4, rows_per_request=100)
    assert (out["requests"], out["failures"], out["failure_reasons"]) == (3, 1, {"HTTP 503": 1})
    assert out["throughput_rps"] == 1.5 and out["rows_per_s"] == 150.0
    assert (out["p50_ms"], out["p99_ms"], out["max_ms"]) == (3.0, 4.0, 4.0)
    assert out["versions"] == {"v1": 1, "v2": 2}
    assert [c["version"] for c in out["version_changes"]] == ["v1", "v2"]
    assert out["version_changes"][1]["at_s"] == 1.0


def test_read_response_handles_length_chunked_and_close():
    async def parse(raw):
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await lg.read_response(reader)

    assert asyncio.run(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")) == (200, b"{}", True)
    chunked = b"HTTP/1.1 422 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    assert asyncio.run(parse(chunked)) == (422, b"abcde", True)
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"
    assert asyncio.run(parse(closing)) == (200, b"x", False)
    with pytest.raises(lg.ProtocolError):
        asyncio.run(parse(b"garbage\r\n\r\n"))


def test_load_generator_counts_failures_latency_and_served_versions(body):
    server = StubServer(delay=0.02, fail_every=5)
    try:
        threading.Timer(0.9, lambda: setattr(server, "version", "v2")).start()
        out = generate(server.url, body, "--track-version", "model_version", "--rows", "1", concurrency=2)
    finally:
        server.close()
    total = out["requests"] + out["failures"]
    assert out["failure_reasons"].keys() == {"HTTP 503"}
    assert 0.1 < out["failures"] / total < 0.3  # every 5th request
    assert out["p50_ms"] >= 20.0  # each reply waits 20 ms: a latency below that is measured wrong
    assert out["throughput_rps"] < 2 / 0.02 * 1.05  # two connections, 20 ms each
    assert [c["version"] for c in out["version_changes"]] == ["v1", "v2"]
    assert sum(out["versions"].values()) == out["requests"]


def test_load_generator_stops_early_on_sigterm_and_reports_refused_connections(body, tmp_path):
    server = StubServer()
    try:
        argv = [sys.executable, "-m", "mlops_assets.benchmarks.load_generator", "--url", server.url, "--body",
                str(body), "--duration", "300", "--warmup", "0.2"]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        server.close()
    result = json.loads(out)
    assert result["requests"] > 0 and result["duration_s"] < 30
    refused = generate("http://127.0.0.1:9/x", body, duration=0.5, warmup=0.0)  # the discard port: nothing listens
    assert refused["requests"] == 0 and refused["failures"] > 0
    assert set(refused["failure_reasons"]) <= {"ConnectionRefusedError", "OSError"}


def result(server, rows, concurrency, rps, p50, p99, failures=0):
    return {"server": server, "rows": rows, "concurrency": concurrency, "requests": int(rps * 8),
            "throughput_rps": rps, "rows_per_s": rps * rows, "p50_ms": p50, "p99_ms": p99, "failures": failures}


def test_targets_compare_the_project_with_mlflow_and_the_floor():
    floor = {1: 0.003, 100: 0.0032}
    results = [result("project", 1, 64, 900, 20, 60), result("mlflow", 1, 64, 60, 900, 2600),
               result("project", 1, 1, 400, 4.0, 6.0), result("project", 100, 1, 250, 5.0, 8.0),
               result("project", 1, 16, 800, 15, 40), result("mlflow", 1, 16, 55, 280, 900),
               result("project", 100, 16, 300, 40, 300), result("mlflow", 100, 16, 30, 280, 900)]
    swap = {"champion": "a", "successor": "b", "load": {"requests": 500, "failures": 0, "version_changes": [
        {"at_s": 0, "version": "a"}, {"at_s": 2, "version": "b"}, {"at_s": 5, "version": "a"}]}}
    assert [t.passed for t in targets(results, floor, swap)] == [True, True, False, True, False, True]
    # 900 / 60 = 15x passes; 500 / 60 = 8.3x does not
    results[0] = result("project", 1, 64, 500, 20, 60)
    assert targets(results, floor, swap)[0].passed is False and "8.3x" in targets(results, floor, swap)[0].measured
    # a failed request, or a swap that never came back, fails the last target
    failed = {**swap, "load": {**swap["load"], "failures": 1}}
    assert targets(results, floor, failed)[-1].passed is False
    stuck = {**swap, "load": {**swap["load"], "version_changes": swap["load"]["version_changes"][:2]}}
    assert targets(results, floor, stuck)[-1].passed is False
    late = {**swap, "load": {**swap["load"], "version_changes": swap["load"]["version_changes"][1:]}}
    assert targets(results, floor, late)[-1].passed is True  # no reply counted before the promotion took effect
    other = {**swap, "load": {**swap["load"], "version_changes": [{"at_s": 0, "version": "c"}] + swap["load"][
        "version_changes"][1:]}}
    assert targets(results, floor, other)[-1].passed is False
    # nothing from MLflow: its comparisons are not measured rather than passed
    ours = [r for r in results if r["server"] == "project"]
    assert [t.passed for t in targets(ours, floor, None)] == [None, True, False, None, None, None]


def test_table_and_report_print_every_cell():
    results = [result("project", 1, 1, 400, 4.0, 6.0), result("mlflow", 1, 1, 60, 15.0, 30.0),
               {**result("mlflow", 100, 64, 0, None, None), "requests": 0}]
    lines = table(results)
    assert len(lines) == 2 + 3 and lines[2].startswith("project") and lines[3].startswith("mlflow")
    assert lines[4].split()[-3:] == ["-", "-", "0"]
    text = report(results, {1: 0.002}, None, (1.0, 2.0, 3.0), (1.5, 2.0, 3.0), ["model: x"])
    assert "in-process floor,   1 row(s): pipeline.predict_proba median 2.00 ms" in text
    assert "FAIL" in text and "not measured" in text and "before 1.00, 2.00, 3.00" in text


def test_measure_and_targets_against_stub_servers(body):
    """The whole measuring path on stubs: a fast server against a slow single-worker one at concurrency 64."""
    fast, slow = StubServer(), StubServer(delay=0.05, serial=True)
    try:
        results = [{"server": name, "rows": 1, **serving.measure(stub.url, body, 1, 64, duration=1.0, warmup=0.3)}
                   for name, stub in (("project", fast), ("mlflow", slow))]
    finally:
        fast.close()
        slow.close()
    [throughput] = [t for t in targets(results, {}, None) if "concurrency 64" in t.name]
    assert results[1]["throughput_rps"] <= 1 / 0.05 * 1.05  # one at a time, 50 ms each
    assert throughput.passed is True, throughput.measured


WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8000/predict
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    1.01ms  40.00ms   90.00%
  Latency Distribution
     50%  850.00us
     75%    2.00ms
     90%    3.00ms
     99%    1.20s
  1000 requests in 5.00s, 1.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 10
Requests/sec:    200.00
"""


def test_wrk_report_is_read_in_the_same_shape():
    out = lg.parse_wrk(WRK_OUTPUT, concurrency=16, duration=5.0, rows_per_request=100)
    assert (out["requests"], out["failures"]) == (990, 15)
    assert out["failure_reasons"] == {"non-2xx/3xx": 10, "read": 2, "timeout": 3}
    assert (out["p50_ms"], out["p99_ms"], out["throughput_rps"], out["rows_per_s"]) == (0.85, 1200.0, 198.0, 19800.0)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_wrk_measures_a_stub_in_the_same_shape(body):
    server = StubServer(fail_every=4)
    try:
        out = generate(server.url, body, "--wrk", "--rows", "1", concurrency=4, duration=1.0, warmup=0.0)
    finally:
        server.close()
    assert out["load_generator"] == "wrk" and out["requests"] > 0
    assert 0.15 < out["failures"] / (out["requests"] + out["failures"]) < 0.35  # every 4th reply is a 503
    assert out["p50_ms"] is not None and out["p50_ms"] <= out["p99_ms"]


def test_wrk_report_with_no_reply_has_no_percentiles():
    nothing = WRK_OUTPUT.replace("1000 requests in", "0 requests in").replace("Non-2xx or 3xx responses: 10\n", "")
    out = lg.parse_wrk(nothing, concurrency=64, duration=1.0)
    assert (out["requests"], out["p50_ms"], out["p99_ms"]) == (0, None, None)
