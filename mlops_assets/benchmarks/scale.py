"""Scale of the unattended loop, printed as figures (`make bench-scale`, part of `make bench`; i.e.
`python -m mlops_assets.benchmarks.scale`). Each figure is printed with the command that measures it alone.

- ingest: a generated day of ROWS rows (the synthetic generator, written as CSV by DuckDB) ingested by
  core/ingestion/ingest.py in a fresh subprocess: CSV size, wall time, rows/s, peak resident memory (VmHWM
  from /proc/self/status, read by the subprocess itself: a child's ru_maxrss starts at its parent's peak) and
  its ratio to the CSV's size; against a baseline run in the same command on the same file, also in a fresh
  subprocess: `pandas.read_csv(dtype=str)` alone (the first step of the in-memory path the ingest replaced:
  a lower bound of its cost), or with `--baseline old` that whole path (read_batch, validate_batch, write).
- sensor: one tick of the landing sensor's logic (core/ingestion/watch.py plan_tick) with N days of archived
  history and no new file, and with NEW new files landed: the tick reads the landing zone only, so its cost
  stays flat as the archive grows.
- s3 (only when asked): the daily cycle at the first --history with every piece of state on S3 (moto_server,
  from moto[server], in a process of its own on 127.0.0.1) and in a local folder, in the same command: wall
  time per day and S3 requests per daily cycle by kind (GET, PUT, LIST, HEAD, DELETE), counted by a botocore
  event hook on boto3's client and on DuckDB's s3fs file system.
- daily: the daily cycle of one day (score_and_monitor_job: batch scoring, canary step, shadow report and the
  four monitoring reports, run by Dagster in process) with H days of history (labeled synthetic days loaded
  straight into the warehouse, as many served days in the prediction ledger and scoring stats, and the job
  run on the day before): the median wall time over the last 5 days, at each H, and the ratio to the
  smallest H (target <= 1.2).

No figure is asserted: it prints a table and exits 0 unless something fails.
Options: --only ingest|sensor|daily|s3, --rows N (5,000,000), --baseline read_csv|old|none, --archive 0,100,1000,3000,
--new N (20), --history 30,1000, --keep (leave the temporary folder).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = Path(__file__).resolve().parents[2] / "data" / "specs" / "synthetic.toml"
MIB = 1 << 20
START = dt.date(2025, 1, 1)  # the synthetic spec's start_date
DAILY_START = dt.date(2020, 1, 1)  # the daily cycle's history starts here (up to ~2,000 days before today)
DAILY_TARGET_RATIO = 1.2
MEMORY_TARGET_RATIO = 2.0
ROWS_PER_S_TARGET = 500_000


def _command(*args: str) -> str:
    return "python -m mlops_assets.benchmarks.scale " + " ".join(args)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def _status(field: str) -> int:
    """A /proc/self/status figure in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def _reset_peak() -> None:
    """Start VmHWM again from the current resident size (Linux: /proc/self/clear_refs, value 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def _child(function: str, *args) -> dict:
    """Run `function(*args)` of this module in a fresh interpreter; it prints one JSON line."""
    code = f"import sys, json; from mlops_assets.benchmarks.scale import {function}; {function}(*json.loads(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, json.dumps([str(a) for a in args])],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    if done.returncode != 0:
        raise RuntimeError(f"{function} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ ingest


def generate_day_csv(path: str, rows: str, seed: str = "0") -> None:
    """A day of the synthetic generator's stable scenario, written as CSV by DuckDB (pandas' to_csv takes ~30 s
    for 5 million rows); run in a child so the benchmark's own process stays small."""
    import duckdb

    from mlops_assets.core.config.spec import load_spec
    from mlops_assets.demo import synthetic

    spec = load_spec(SPEC)
    started = time.perf_counter()
    day = synthetic.generate_day(spec, synthetic.ScenarioConfig("stable", START, 1, rows_per_day=int(rows),
                                                                seed=int(seed)), 0).features
    con = duckdb.connect()
    con.register("day", day)
    con.execute(f"COPY day TO '{path}' (HEADER, DELIMITER ',')")
    print(json.dumps({"seconds": time.perf_counter() - started, "bytes": Path(path).stat().st_size}))


def measure_ingest(csv: str, root: str) -> None:
    """Ingest `csv` as the synthetic model's features file of START, through a local landing zone."""
    from mlops_assets.core.config.spec import load_spec
    from mlops_assets.core.ingestion.ingest import ingest
    from mlops_assets.core.ingestion.kept import Archive, Quarantine
    from mlops_assets.core.ingestion.landing import LocalLanding, features_file_name
    from mlops_assets.core.io.storage import PartitionStore

    spec, folder = load_spec(SPEC), Path(root)
    landing = LocalLanding(folder / "landing")
    landing.root.mkdir(parents=True, exist_ok=True)
    os.link(csv, landing.root / features_file_name(START))  # delivered without a copy
    messages = []
    imported = _status("VmRSS")
    _reset_peak()
    started = time.perf_counter()
    outcome = ingest(landing, Archive(folder / "archive"), Quarantine(folder / "quarantine"),
                     PartitionStore(folder / "warehouse"), spec, "features", START.isoformat(),
                     progress=messages.append)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak": _status("VmHWM"), "imported": imported, "rows": outcome.rows,
                      "accepted": outcome.accepted, "path": outcome.read_path, "progress_messages": len(messages)}))


def measure_read_csv(csv: str) -> None:
    """The baseline: pandas.read_csv of the same file as the in-memory path read it (every column text)."""
    import pandas as pd

    imported = _status("VmRSS")
    _reset_peak()
    started = time.perf_counter()
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[""])
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak": _status("VmHWM"), "imported": imported, "rows": len(frame)}))


def measure_old(csv: str, root: str) -> None:
    """The baseline: the whole in-memory path the ingest replaced (bytes, read_batch, pandera, store.write)."""
    from mlops_assets.core.config.spec import load_spec
    from mlops_assets.core.ingestion.validation import read_batch, validate_batch
    from mlops_assets.core.io.storage import PartitionStore

    spec = load_spec(SPEC)
    imported = _status("VmRSS")
    _reset_peak()
    started = time.perf_counter()
    content = Path(csv).read_bytes()
    frame = read_batch(content, "features.csv", START.isoformat(), spec, "features")
    result = validate_batch(frame, spec, START.isoformat())
    if result.passed:
        PartitionStore(Path(root)).write("raw_batch", START.isoformat(), frame)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak": _status("VmHWM"), "imported": imported, "rows": len(frame)}))


def bench_ingest(rows: int, baseline: str, work: Path, table: list) -> None:
    command = _command("--only ingest", f"--rows {rows}", f"--baseline {baseline}")
    print(f"ingest: a generated day of {rows:,} rows ({_load()})")
    csv = work / "day.csv"
    made = _child("generate_day_csv", csv, rows)
    size = made["bytes"]
    print(f"  generated {csv.name}: {size / MIB:,.1f} MiB in {made['seconds']:.1f} s (synthetic generator, stable)")
    new = _child("measure_ingest", csv, work / "ingest")
    rate, ratio = new["rows"] / new["seconds"], new["peak"] / size
    print(f"  streaming ingest: {new['seconds']:.1f} s, {rate:,.0f} rows/s (target >= {ROWS_PER_S_TARGET:,}); "
          f"accepted={new['accepted']} through the {new['path']} path, {new['progress_messages']} progress messages")
    print(f"    peak RSS {new['peak'] / MIB:,.0f} MiB = {ratio:.2f} x the CSV (target <= {MEMORY_TARGET_RATIO} x), "
          f"of which {new['imported'] / MIB:,.0f} MiB were the interpreter and its imports before it started "
          f"(growth {(new['peak'] - new['imported']) / MIB:,.0f} MiB = {(new['peak'] - new['imported']) / size:.2f} x)")
    table += [
        ("ingest: CSV size", f"{size / MIB:,.1f} MiB ({rows:,} rows)", command),
        ("ingest: wall time, rows/s", f"{new['seconds']:.1f} s, {rate:,.0f} rows/s", command),
        ("ingest: peak RSS (fresh process)", f"{new['peak'] / MIB:,.0f} MiB = {ratio:.2f} x the CSV (growth "
                                             f"{(new['peak'] - new['imported']) / size:.2f} x)", command),
    ]
    if baseline == "none":
        return
    if baseline == "old":
        old = _child("measure_old", csv, work / "old")
        what = "in-memory path (read_batch + validate_batch + write)"
    else:
        old = _child("measure_read_csv", csv)
        what = "pandas.read_csv(dtype=str) alone"
    growth, old_growth = new["peak"] - new["imported"], old["peak"] - old["imported"]
    print(f"  baseline, {what}: {old['seconds']:.1f} s, {old['rows'] / old['seconds']:,.0f} rows/s, peak RSS "
          f"{old['peak'] / MIB:,.0f} MiB = {old['peak'] / size:.2f} x the CSV (growth {old_growth / size:.2f} x)")
    print(f"  streaming ingest against it: {new['seconds'] / old['seconds']:.2f} x its time, "
          f"{new['peak'] / old['peak']:.2f} x its peak RSS, {growth / old_growth:.2f} x its growth")
    table += [
        (f"baseline: {what}", f"{old['seconds']:.1f} s, peak {old['peak'] / MIB:,.0f} MiB = "
                              f"{old['peak'] / size:.2f} x the CSV (growth {old_growth / size:.2f} x)", command),
        ("ingest / baseline", f"{new['seconds'] / old['seconds']:.2f} x the time, {new['peak'] / old['peak']:.2f} x "
                              f"the peak RSS", command),
    ]


# ------------------------------------------------------------------------------------------------ sensor


def bench_sensor(archive_sizes: list[int], new_files: int, work: Path, table: list) -> None:
    from mlops_assets.core.ingestion.kept import Archive, Quarantine
    from mlops_assets.core.ingestion.landing import LocalLanding, features_file_name
    from mlops_assets.core.ingestion.watch import PartitionWindow, plan_tick

    command = _command("--only sensor", "--archive " + ",".join(map(str, archive_sizes)), f"--new {new_files}")
    print(f"sensor: one landing-sensor tick (plan_tick) against the archived history ({_load()})")
    first = dt.date(2015, 1, 1)
    today = first + dt.timedelta(days=max(archive_sizes) + new_files + 10)
    window = PartitionWindow(first=first, last=None, last_now=today - dt.timedelta(days=1), today=today)
    content = Path(SPEC).read_bytes()  # a few KiB per file: the cost measured is the tick's, not hashing
    base = None
    for n in archive_sizes:
        folder = work / f"sensor-{n}"
        landing, archive = LocalLanding(folder / "landing"), Archive(folder / "archive")
        quarantine = Quarantine(folder / "quarantine")
        landing.root.mkdir(parents=True)
        for i in range(n):
            day = first + dt.timedelta(days=i)
            archive.accept(features_file_name(day), day.isoformat(), content + str(i).encode())
        cursor = plan_tick(landing, archive, quarantine, None, window).cursor
        idle = []
        for _ in range(7):
            started = time.perf_counter()
            plan = plan_tick(landing, archive, quarantine, cursor, window)
            idle.append(time.perf_counter() - started)
        for i in range(new_files):
            day = first + dt.timedelta(days=n + i)
            landing.deliver(features_file_name(day), content + f"new {i}".encode())
        started = time.perf_counter()
        plan = plan_tick(landing, archive, quarantine, cursor, window)
        busy = time.perf_counter() - started
        assert len(plan.requests) == new_files
        idle_ms = 1000 * statistics.median(idle)
        base = base if base is not None else idle_ms
        print(f"  {n:>5,} archived days: tick with 0 new files {idle_ms:.2f} ms (median of 7), "
              f"with {new_files} new files {1000 * busy:.1f} ms ({plan.hashed} hashed)")
        table.append((f"sensor tick, {n:,} archived days", f"0 new: {idle_ms:.2f} ms; {new_files} new: "
                                                            f"{1000 * busy:.1f} ms", command))


# ------------------------------------------------------------------------------------------------ daily


QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def daily_cycle(history: int, work: Path, measured: int = 5, rows_per_day: int = 120, storage_url: str = "") -> dict:
    """Build a code location with `history` days of labeled data, a champion trained on the last weeks, and
    every earlier day served (ledger and scoring stats, as batch_scoring writes them) and the day before the
    measured ones run by the job; then time score_and_monitor_job on the last `measured` days. With an S3
    `storage_url`, also count the S3 requests of each measured day, by kind."""
    import dagster as dg

    from mlops_assets.core.config.settings import Settings
    from mlops_assets.core.config.spec import load_spec
    from mlops_assets.core.serving.scoring import ServingModel, score_batch
    from mlops_assets.defs import build_definitions
    from mlops_assets.demo import synthetic
    from mlops_assets.demo.history import load_labeled_days

    # The synthetic spec, with partitions from DAILY_START: 1,000 days from the spec's own start would reach
    # past today, and a day is a partition only once it is over.
    text = SPEC.read_text()
    assert f'start_date = "{START.isoformat()}"' in text
    spec_path = work / SPEC.name
    work.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(text.replace(f'start_date = "{START.isoformat()}"', f'start_date = "{DAILY_START.isoformat()}"'))
    spec = load_spec(spec_path)
    settings = Settings.for_data_dir(work / "data", spec_path, storage_url=storage_url)
    defs = build_definitions(settings)
    project = defs.resources["portfolio"].portfolio.model(spec.name)
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    cfg = synthetic.ScenarioConfig("stable", DAILY_START, history, rows_per_day=rows_per_day, seed=5)
    days = {b.day: b.features.merge(b.labels, on=spec.key_columns) for b in synthetic.generate_days(spec, cfg)}
    load_labeled_days(project.store, spec, days, sorted(days))

    def run(job: str, day: dt.date):
        result = defs.resolve_job_def(f"{spec.name}_{job}").execute_in_process(
            instance=instance, partition_key=day.isoformat(), run_config=QUIET, resources=defs.resources,
            raise_on_error=False)
        if not result.success:
            raise RuntimeError(f"{job} failed for {day}")

    # days before `served_until` are served history, the next one a warm-up run of the job (as the loop ran
    # it yesterday: its cost summary then exists), the last `measured` days are measured
    served_until = history - measured - 1
    run("train_candidate_job", DAILY_START + dt.timedelta(days=served_until - 1))
    registry = project.registry
    version = registry.version_for("champion")
    if version is None:
        raise RuntimeError("the first candidate did not become champion")
    champion = ServingModel(version, registry.load_model(version))
    for i in range(served_until):
        key = (DAILY_START + dt.timedelta(days=i)).isoformat()
        table = project.store.read("feature_table", key)
        cpu, wall = time.process_time(), time.perf_counter()
        rows = score_batch(table, spec, champion, None, None, canary_share=0.0, salt="")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        project.ledger.write(rows, replace_days=True)
        project.store.write_json("scoring_stats", key, {"rows": len(table), "cpu_seconds": cpu, "wall_seconds": wall,
                                                        "champion": version, "canary": None, "canary_share": 0.0,
                                                        "shadow": None})
    run("score_and_monitor_job", DAILY_START + dt.timedelta(days=served_until))
    setup = time.perf_counter() - started
    from mlops_assets.core.io.objects_s3 import S3_REQUESTS

    counter = S3_REQUESTS if storage_url else None  # every request of the run's stores, boto3's and DuckDB's
    times, requests = [], []
    for i in range(served_until + 1, history):
        if counter is not None:
            counter.reset()
        began = time.perf_counter()
        run("score_and_monitor_job", DAILY_START + dt.timedelta(days=i))
        times.append(time.perf_counter() - began)
        if counter is not None:
            requests.append({**counter.by_verb(), "total": counter.total()})
    return {"history": history, "setup_seconds": setup, "seconds": times, "median": statistics.median(times),
            "requests": requests}


def bench_daily(histories: list[int], work: Path, table: list) -> None:
    import warnings

    warnings.filterwarnings("ignore", message=".*is currently in (preview|beta).*")
    warnings.filterwarnings("ignore", message=".*get_sensor_def will return.*")
    command = _command("--only daily", "--history " + ",".join(map(str, histories)))
    print(f"daily: score_and_monitor_job for one day against its history ({_load()})")
    base = None
    for h in histories:
        found = daily_cycle(h, work / f"daily-{h}")
        base = base if base is not None else found["median"]
        ratio = found["median"] / base
        shown = ", ".join(f"{s:.2f}" for s in found["seconds"])
        print(f"  {h:>5,} days of history: {found['median']:.2f} s per day (median of {shown} s; setup "
              f"{found['setup_seconds']:.0f} s), {ratio:.2f} x the {histories[0]}-day figure "
              f"(target <= {DAILY_TARGET_RATIO})")
        table.append((f"daily cycle, {h:,} days of history", f"{found['median']:.2f} s/day, {ratio:.2f} x", command))


# ------------------------------------------------------------------------------------------------ s3


def bench_s3(history: int, work: Path, table: list) -> None:
    """The daily cycle with every piece of state on S3 (moto_server in a process of its own, over HTTP), against the
    local folder in the same command: wall time and S3 requests per day by kind."""
    import socket
    import uuid
    import warnings

    import boto3

    warnings.filterwarnings("ignore", message=".*is currently in (preview|beta).*")
    warnings.filterwarnings("ignore", message=".*get_sensor_def will return.*")
    # moto's server in a process of its own: in this one it would share the GIL with the run it serves
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                            "AWS_ENDPOINT_URL")}
    try:
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                          AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
        for _ in range(100):  # until it answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3").create_bucket(Bucket=bucket)
        command = _command("--only s3", f"--history {history}")
        print(f"s3: score_and_monitor_job for one day, {history} days of history, state in a local folder and on "
              f"S3 (moto_server on 127.0.0.1, its own process) ({_load()})")
        local = daily_cycle(history, work / "s3-local")
        on_s3 = daily_cycle(history, work / "s3-s3", storage_url=f"s3://{bucket}/state")
    finally:
        server.terminate()
        server.wait(timeout=30)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    verbs = sorted({v for r in on_s3["requests"] for v in r} - {"total"})
    per_verb = {v: statistics.median(r.get(v, 0) for r in on_s3["requests"]) for v in verbs}
    total = statistics.median(r["total"] for r in on_s3["requests"])
    ratio = on_s3["median"] / local["median"]
    print(f"  local folder: {local['median']:.2f} s per day (median of "
          f"{', '.join(f'{x:.2f}' for x in local['seconds'])} s)")
    print(f"  S3:           {on_s3['median']:.2f} s per day (median of "
          f"{', '.join(f'{x:.2f}' for x in on_s3['seconds'])} s), {ratio:.2f} x the local folder")
    print(f"  S3 requests per daily cycle (median of {len(on_s3['requests'])} days): {total:.0f} = "
          + ", ".join(f"{v} {per_verb[v]:.0f}" for v in verbs))
    table.append(("daily cycle on S3 vs local", f"{on_s3['median']:.2f} vs {local['median']:.2f} s/day, "
                  f"{ratio:.2f} x", command))
    table.append(("S3 requests per daily cycle", f"{total:.0f} (" + ", ".join(f"{v} {per_verb[v]:.0f}"
                                                                            for v in verbs) + ")", command))


# ------------------------------------------------------------------------------------------------ main


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("ingest", "sensor", "daily", "s3"))
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--baseline", choices=("read_csv", "old", "none"), default="read_csv")
    parser.add_argument("--archive", type=_ints, default=[0, 100, 1000, 3000])
    parser.add_argument("--new", type=int, default=20)
    parser.add_argument("--history", type=_ints, default=[30, 1000])
    parser.add_argument("--keep", action="store_true", help="leave the temporary folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mlops-scale-"))
    table: list[tuple[str, str, str]] = []
    try:
        if args.only in (None, "ingest"):
            bench_ingest(args.rows, args.baseline, work, table)
        if args.only in (None, "sensor"):
            bench_sensor(args.archive, args.new, work, table)
        if args.only in (None, "daily"):
            bench_daily(args.history, work, table)
        if args.only == "s3":  # not part of the default run: it needs moto[server]
            bench_s3(args.history[0], work, table)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nscale figures ({_load()} at the end)")
    width = max(len(f) for f, _, _ in table)
    value_width = max(len(v) for _, v, _ in table)
    for figure, value, command in table:
        print(f"  {figure:<{width}}  {value:<{value_width}}  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
