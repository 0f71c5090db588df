"""Online serving, side by side with MLflow (`make bench-serving`, i.e. `python -m mlops_assets.benchmarks.serving`).

The same fitted scikit-learn pipeline (the project's trainer on Elec2: ColumnTransformer + HistGradientBoosting)
is served by this project's service (`mlops serve`, champion of a throwaway registry) and by MLflow's
`mlflow models serve` (MLflow 3.17.2 with its defaults, one uvicorn worker, from the benchmark's own virtual
environment under .bench/, built from the package registry on first use). A load generator in a separate
process (`load_generator`) drives each from loopback with keep-alive connections: single-row and 100-row
requests at concurrency 1, 16 and 64, each after a warm-up, measurements of the two servers interleaved so a
change in the machine's load hits both. The in-process `pipeline.predict_proba` call is the floor: measured at
the start, and again just before and just after the project's concurrency-1 cell of each request size, whose
target uses the mean of those two (the load of a shared machine drifts over a run of several minutes). The
service does not make that call: it scores with the compiled preprocessor (features.compiled_preprocessor, the
same matrix bit for bit) and the estimator; that call's own cost is printed beside the floor.

Then, under load at concurrency 16, the successor version is promoted to champion and rolled back with
`mlops promote` / `mlops rollback`: failed requests and the moments the served version changed. Last, the
service is killed (SIGKILL) under the same load: answered predictions missing from the ledger are what a crash
loses.

Prints one table, the floor, the swap's timeline, the target checks (PASS/FAIL) and the load average.
Options: --quick (a short smoke run), --duration / --warmup (seconds per measurement), --only project|mlflow,
--wrk (measure the table with wrk when it is installed),
--venv DIR (MLflow's environment), --out FILE (the figures as JSON), --keep (keep the work folder).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlops_assets.benchmarks import serving_setup as setup
from mlops_assets.benchmarks.serving_report import report
from mlops_assets.core.config.settings import PROJECT_DIR
from mlops_assets.core.serving.service_config import ServeConfig

ROWS = (1, 100)
CONCURRENCY = (1, 16, 64)
SWAP_CONCURRENCY = 16
FLOOR_BUDGET_SECONDS = 5.0  # per floor cell: `repeats` calls, or fewer (at least 20) on a slow, busy machine
VERSION_FIELD = "model_version"  # the field of each prediction naming the version that scored it
SCORE_FIELD = re.compile(rb'"score"\s*:\s*([-+0-9.eE]+)')


def log(message: str) -> None:
    print(f"[bench-serving] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- request bodies


def project_path(model: setup.BenchModel) -> str:
    return f"/models/{model.spec.name}/predict"


def project_body(model: setup.BenchModel, rows: int) -> bytes:
    """One row as a JSON object, a batch as an array of objects (the service's contract)."""
    records = setup.request_records(model, rows)
    return json.dumps(records[0] if rows == 1 else records).encode()


def mlflow_body(model: setup.BenchModel, rows: int) -> bytes:
    return json.dumps({"dataframe_records": json.loads(model.model_inputs(rows).to_json(orient="records"))}).encode()


def post(url: str, body: bytes) -> bytes:
    import urllib.request

    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.read()


def served_scores(server: str, reply: bytes) -> list[float]:
    if server == "mlflow":
        return [row[1] for row in json.loads(reply)["predictions"]]
    return [float(x) for x in SCORE_FIELD.findall(reply)]


# ------------------------------------------------------------------------------------------- measurements


def in_process_floor(model: setup.BenchModel, repeats: int, rows_list=ROWS) -> tuple[dict[int, float],
                                                                                   dict[str, dict[int, float]]]:
    """Median seconds of `pipeline.predict_proba` on a ready DataFrame of 1 and of 100 rows, with the default
    OpenMP/BLAS threads and with one thread: the floor is the cheaper of the two (on a busy machine the
    default threads can cost far more than the call itself). Returns (floor, both medians)."""
    medians: dict[str, dict[int, float]] = {"default threads": {}, "1 thread": {}}
    for label, limit in (("default threads", None), ("1 thread", 1)):
        for rows in rows_list:
            medians[label][rows] = call_median(model, rows, limit, repeats)
    floor = {rows: min(m[rows] for m in medians.values()) for rows in rows_list}
    return floor, medians


def call_median(model: setup.BenchModel, rows: int, limit: int | None, repeats: int, pause: float = 0.0,
                service_call: bool = False) -> float:
    """Median seconds of `pipeline.predict_proba` on `rows` rows, back to back (or each after `pause` seconds
    asleep: a served call at concurrency 1 always follows a wait for the next request). With `service_call`,
    of the call the service makes instead (`predict_scores`: the compiled preprocessor, then the estimator)."""
    from threadpoolctl import threadpool_limits

    from mlops_assets.core.training.trainer import predict_scores

    pipeline = model.champion.pipeline
    call = (lambda x: predict_scores(pipeline, model.spec, x)) if service_call else pipeline.predict_proba
    with threadpool_limits(limits=limit):
        frame = model.model_inputs(rows)
        for _ in range(10):
            call(frame)
        times, budget_end = [], time.perf_counter() + FLOOR_BUDGET_SECONDS
        while len(times) < repeats and (len(times) < 20 or time.perf_counter() < budget_end):
            if pause:
                time.sleep(pause)
            start = time.perf_counter()
            call(frame)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_command(url: str, body: Path, rows: int, concurrency: int, duration: float, warmup: float,
                 track_version: str | None = None, wrk: bool = False) -> list[str]:
    argv = [sys.executable, "-m", "mlops_assets.benchmarks.load_generator", "--url", url, "--body", str(body),
            "--rows", str(rows), "--concurrency", str(concurrency), "--duration", str(duration),
            "--warmup", str(warmup)]
    return argv + (["--track-version", track_version] if track_version else []) + (["--wrk"] if wrk else [])


def load_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(PROJECT_DIR))


def measure(url: str, body: Path, rows: int, concurrency: int, duration: float, warmup: float,
            wrk: bool = False) -> dict:
    done = subprocess.run(load_command(url, body, rows, concurrency, duration, warmup, wrk=wrk), capture_output=True,
                          text=True, env=load_env(), timeout=duration + warmup + 120)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout)


def start_load(argv: list[str]) -> subprocess.Popen:
    """A load generator running until `stop_load` (its duration is an upper bound)."""
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=load_env())


def stop_load(generator: subprocess.Popen) -> dict:
    """Stop it (SIGTERM: it reports what it counted so far) and read its figures, or {"error": why}."""
    generator.send_signal(signal.SIGTERM)
    out, err = generator.communicate(timeout=120)
    if generator.returncode != 0:
        return {"error": f"load generator failed: {err[-500:]}"}
    return json.loads(out)


def served_champion(server: setup.Server, model: str) -> str | None:
    """The champion the service says it serves (its /models listing)."""
    import urllib.request

    try:
        with urllib.request.urlopen(server.base_url + "/models", timeout=10) as reply:
            listing = json.loads(reply.read())
    except (OSError, ValueError):  # a starved service may not answer in time: ask again until the deadline
        return None
    return next((m.get("champion") for m in listing.get("models", []) if m.get("model") == model), None)


def swap_under_load(model: setup.BenchModel, server: setup.Server, body: Path, registry_url: str, artifacts: Path,
                    versions: list[str], settle: float, warmup: float, wait_limit: float = 60.0) -> dict:
    """Promote the successor, then roll back, while the load generator runs at SWAP_CONCURRENCY; the CLI does
    both, as an operator would, each after the service has said it serves the previous step's champion.
    Event times are seconds from the start of the load generator's counted window."""
    generator = start_load(load_command(server.base_url + project_path(model), body, 1, SWAP_CONCURRENCY, 3600,
                                        warmup, track_version=VERSION_FIELD))
    common = ["--model", model.spec.name, "--registry", registry_url, "--artifacts", str(artifacts),
              "--actor", "bench-serving"]
    steps = [(f"mlops promote {versions[1]} --to champion", versions[1],
              ["promote", versions[1], "--to", "champion", "--reason", "serving benchmark: swap under load"]),
             ("mlops rollback", versions[0], ["rollback", "--reason", "serving benchmark: rollback under load"])]
    events = []  # (unix time, what)
    error = None
    try:
        time.sleep(warmup + settle)
        for what, expected, args in steps:
            started = time.time()
            done = subprocess.run([sys.executable, "-m", "mlops_assets.cli", *args, *common], capture_output=True,
                                  text=True, env=load_env())
            if done.returncode != 0:
                error = f"{what} exited {done.returncode}: {done.stderr.strip()[-300:]}"
                events.append((started, f"{what} FAILED"))
                break
            events.append((started, f"{what} (the command took {time.time() - started:.2f} s)"))
            deadline = time.time() + wait_limit
            while (champion := served_champion(server, model.spec.name)) != expected and time.time() < deadline:
                time.sleep(0.05)
            events.append((time.time(), f"/models names {champion} champion"))
            if champion != expected:
                error = f"the service still named {champion} champion {wait_limit:.0f} s after {what}"
                break
            time.sleep(settle)
    finally:
        load = stop_load(generator)
    if "error" in load:
        return load
    return {"load": load, "champion": versions[0], "successor": versions[1], "error": error,
            "events": [{"at_s": round(t - load["window_start_unix"], 2), "what": what} for t, what in events]}


def online_ledger_rows(data_dir: Path, model: str) -> int:
    """Rows in the model's online ledger parts (what the service has flushed)."""
    import duckdb

    parts = sorted((data_dir / "models" / model / "ledger" / "online").glob("*/*.parquet"))
    if not parts:
        return 0
    return duckdb.execute("SELECT count(*) FROM read_parquet(?)", [[str(p) for p in parts]]).fetchall()[0][0]


def crash_under_load(model: setup.BenchModel, server: setup.Server, body: Path, data_dir: Path, settle: float,
                     flush_seconds: float) -> dict:
    """SIGKILL the service under single-row load at SWAP_CONCURRENCY: answered predictions missing from the
    ledger are what a crash loses (bounded by design by the flush interval plus the flush in progress)."""
    time.sleep(flush_seconds * 2 + 0.5)  # every earlier answer flushed: the count below starts from a settled ledger
    before = online_ledger_rows(data_dir, model.spec.name)
    generator = start_load(load_command(server.base_url + project_path(model), body, 1, SWAP_CONCURRENCY, 3600, 0.0))
    try:
        time.sleep(settle)
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        time.sleep(0.5)
    finally:
        load = stop_load(generator)
    if "error" in load:
        return load
    answered, recorded = load["requests"], online_ledger_rows(data_dir, model.spec.name) - before
    rate = answered / settle if settle else 0.0
    return {"answered": answered, "recorded": recorded, "lost": answered - recorded,
            "lost_seconds": (answered - recorded) / rate if rate else None, "flush_seconds": flush_seconds}


# ------------------------------------------------------------------------------------------------- driver


def run(args) -> int:
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    servers: dict[str, setup.Server] = {}
    notes, results, swap = [], [], None
    try:
        log("training the model")
        model = setup.prepare_model()
        registry_url, artifacts, versions = setup.register_versions(model, work / "registry")
        notes.append(f"load generator: {'wrk' if args.wrk else 'built-in asyncio client'}, a separate process")
        notes.append(f"model: {model.spec.name} ({model.source}), {type(model.champion.pipeline[-1]).__name__} "
                     f"after a ColumnTransformer; champion {versions[0]}, successor {versions[1]}")
        if args.only in (None, "mlflow"):
            python = setup.ensure_mlflow_venv(Path(args.venv), log)
            model_dir, how = setup.export_to_mlflow(model, python, work / "mlflow")
            notes.append(f"MLflow {setup.MLFLOW_VERSION}: saved by mlflow.sklearn.save_model as {how['format']}"
                         + (f" (skops_trusted_types: {', '.join(how['trusted_types']) or 'none needed'})"
                            if how["format"] == "skops" else f" (skops refused: {how.get('skops_error')})"))
            log("starting mlflow models serve")
            servers["mlflow"] = setup.start_mlflow(python, model_dir, work / "mlflow.log")
        if args.only in (None, "project"):
            log("starting mlops serve")
            try:
                servers["project"] = setup.start_project(model, registry_url, artifacts, work / "data",
                                                         work / "project.log")
            except RuntimeError as exc:
                notes.append(f"project service not measured: {str(exc)[:600]}")
        urls = {"project": project_path(model), "mlflow": "/invocations"}
        bodies = {}
        for name, server in servers.items():
            make = project_body if name == "project" else mlflow_body
            for rows in ROWS:
                bodies[name, rows] = work / f"{name}-{rows}.json"
                bodies[name, rows].write_bytes(make(model, rows))
            reply = post(server.base_url + urls[name], bodies[name, 100].read_bytes())
            expected = model.champion.pipeline.predict_proba(model.model_inputs(100))[:, 1]
            scores = served_scores(name, reply)
            same = len(scores) == 100 and max(abs(a - b) for a, b in zip(scores, expected)) < 1e-9
            notes.append(f"{name}: 100 scores {'equal' if same else 'DIFFER from'} the in-process pipeline's")
        log("in-process floor")
        floor, floor_medians = in_process_floor(model, 40 if args.quick else 300)
        for label, medians in floor_medians.items():
            notes.append(f"in-process pipeline.predict_proba, {label}: "
                         + ", ".join(f"{rows} row(s) {s * 1000:.2f} ms" for rows, s in medians.items()))
        repeats = 40 if args.quick else 300
        for rows in ROWS:
            for concurrency in CONCURRENCY:
                for name, server in servers.items():
                    log(f"{name}: {rows} row(s), concurrency {concurrency}")
                    adjacent = name == "project" and concurrency == 1  # the floor target's cell
                    if adjacent:  # the floor again just before and after: a change of load hits both sides
                        around = [in_process_floor(model, repeats, (rows,))[0][rows]]
                    try:
                        result = measure(server.base_url + urls[name], bodies[name, rows], rows, concurrency,
                                         args.duration, args.warmup, wrk=args.wrk)
                    except (RuntimeError, subprocess.SubprocessError, ValueError) as exc:
                        log(f"{name}: {rows} row(s), concurrency {concurrency} not measured: {exc}")
                        result = {"concurrency": concurrency, "requests": 0, "failures": 0,
                                  "error": str(exc)[:300]}
                    results.append({"server": name, "rows": rows, **result})
                    if adjacent:
                        around.append(in_process_floor(model, repeats, (rows,))[0][rows])
                        notes.append(f"in-process floor around the project's concurrency-1 cell, {rows} row(s): "
                                     f"{around[0] * 1000:.2f} ms before, {around[1] * 1000:.2f} ms after "
                                     f"(the target uses their mean; {floor[rows] * 1000:.2f} ms at the start)")
                        floor[rows] = statistics.fmean(around)
        paused = {rows: call_median(model, rows, 1, repeats, pause=0.001) for rows in ROWS}
        notes.append("in-process pipeline.predict_proba, 1 thread, each call after 1 ms asleep (as a served call "
                     "waits for its next request; not the floor): "
                     + ", ".join(f"{rows} row(s) {s * 1000:.2f} ms" for rows, s in paused.items()))
        own = {rows: call_median(model, rows, 1, repeats, service_call=True) for rows in ROWS}
        notes.append("in-process, the service's own model call (predict_scores: the compiled preprocessor, the same "
                     "matrix as the ColumnTransformer's, then the estimator), 1 thread, back to back: "
                     + ", ".join(f"{rows} row(s) {s * 1000:.2f} ms" for rows, s in own.items())
                     + "; the served figures include it, the floor the target names is the pipeline's call")
        if "project" in servers:
            log("promotion and rollback under load")
            try:
                swap = swap_under_load(model, servers["project"], bodies["project", 1], registry_url, artifacts,
                                       versions, settle=max(args.duration / 2, 1.0), warmup=args.warmup)
            except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
                swap = {"error": f"swap under load not completed: {type(exc).__name__}: {exc}"}
            log("crash (SIGKILL) under load")
            flush = ServeConfig().ledger_flush_seconds
            try:
                crash = crash_under_load(model, servers["project"], bodies["project", 1], work / "data",
                                         settle=max(args.duration / 2, 2.0), flush_seconds=flush)
            except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
                crash = {"error": f"{type(exc).__name__}: {exc}"}
            notes.append(
                f"crash under load (SIGKILL at concurrency {SWAP_CONCURRENCY}, 1-row requests, ledger flushed every "
                f"{flush:g} s): " + (crash["error"] if "error" in crash else
                                     f"{crash['answered']} answered, {crash['recorded']} in the ledger, "
                                     f"{crash['lost']} lost = {crash['lost_seconds']:.2f} s of traffic"))
    finally:
        for server in servers.values():
            server.stop()
        if args.keep:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = report(results, floor, swap, load_before, os.getloadavg(), notes)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps({"results": results, "floor_s": floor, "swap": swap, "notes": notes},
                                             indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (0.5 s warm-up, 1.5 s measured)")
    parser.add_argument("--duration", type=float, default=None, help="seconds measured per cell (default 8)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up per cell (default 2)")
    parser.add_argument("--only", choices=("project", "mlflow"), default=None, help="serve one side only")
    parser.add_argument("--venv", default=str(setup.DEFAULT_VENV), help="MLflow's virtual environment (built if absent)")
    parser.add_argument("--wrk", action="store_true",
                        help="measure the table with wrk (apt-get install wrk) instead of the built-in client; "
                             "the swap under load always uses the built-in client, which reads served versions")
    parser.add_argument("--out", help="write the figures as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (registry, logs, MLflow model)")
    args = parser.parse_args(argv)
    # SIGTERM (or SIGINT where a shell ignores it) unwinds like Ctrl-C, so `run` stops the servers it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    args.duration = args.duration or (1.5 if args.quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
