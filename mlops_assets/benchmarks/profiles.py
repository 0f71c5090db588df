"""`make bench-profiles`: what the production profile costs and buys on this machine.

1. The same 30-day backfill (one `synthetic_daily_ingestion_job` run per day, 2 steps each, `--concurrency`
   runs side by side) on the embedded profile and on the production profile with 1, 2 and 4 Celery workers:
   wall time and speed-up against 1 worker, in the same command.
2. The cost of one run on each profile: the same ingestion run (one day, 2 steps) repeated in a warm process,
   median wall time, embedded (steps in the run's process) against production (steps on the workers).

Each measurement runs `mlops_assets.profiles.workload` in a fresh process, on fresh databases and folders.
Needs PostgreSQL and RabbitMQ (skipped, saying why, when either is unreachable).

    python -m mlops_assets.benchmarks.profiles [--workers 1,2,4] [--days 30] [--concurrency 4] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlops_assets.core.config.settings import PROJECT_DIR
from mlops_assets.profiles.production.stack import Stack, StackConfig, unreachable
from mlops_assets.profiles.workload import embedded_env

SPEC = PROJECT_DIR / "data" / "specs" / "synthetic.toml"


def workload_command(out: Path, args, repeat: int) -> list[str]:
    return [sys.executable, "-m", "mlops_assets.profiles.workload", "--only", "backfill", "--days", str(args.days),
            "--concurrency", str(args.concurrency), "--repeat-run", str(repeat), "--out", str(out)]


def embedded(root: Path, args) -> dict:
    out = root / "result.json"
    subprocess.run(workload_command(out, args, args.repeat), env=embedded_env(root, SPEC), cwd=PROJECT_DIR,
                   check=True)
    return json.loads(out.read_text())


def production(root: Path, args, workers: int, repeat: int) -> dict:
    config = StackConfig(f"bench_{os.getpid()}_{workers}", root / "home", root / "data", workers=workers,
                         throwaway=True, extra_env={"MLOPS_SPECS": str(SPEC)})
    out = root / "result.json"
    with Stack(config) as stack:
        code = stack.run(workload_command(out, args, repeat))
    if code != 0:
        raise SystemExit(f"the workload failed on {workers} worker(s) (exit {code}); logs in {root / 'home/logs'}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=4, help="backfill runs side by side (default 4)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of the single run (default 5)")
    args = parser.parse_args(argv)
    if reason := unreachable():
        print(f"profiles benchmark skipped: {reason}")
        return 0
    counts = [int(w) for w in args.workers.split(",")]
    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlops-profiles-") as tmp:
        base = embedded(Path(tmp) / "embedded", args)
        # the single-run cost is measured once, on the 2-worker stack (or the first one asked for)
        repeat_on = 2 if 2 in counts else counts[0]
        runs = {w: production(Path(tmp) / f"w{w}", args, w, args.repeat if w == repeat_on else 0) for w in counts}
    load_after = os.getloadavg()

    print(f"\n{args.days}-day backfill: {args.days} runs of synthetic_daily_ingestion_job (2 steps each, 200 rows a "
          f"day), {args.concurrency} runs side by side  [python -m mlops_assets.benchmarks.profiles "
          f"--workers {args.workers} --days {args.days} --concurrency {args.concurrency}]")
    print(f"{'profile':<12} {'workers':>7} {'wall s':>8} {'speed-up vs 1 worker':>21}")
    print(f"{'embedded':<12} {'-':>7} {base['timings']['backfill']:>8.1f} {'-':>21}")
    one = runs[counts[0]]["timings"]["backfill"]
    for w in counts:
        wall = runs[w]["timings"]["backfill"]
        print(f"{'production':<12} {w:>7} {wall:>8.1f} {one / wall:>20.2f}x")
    for w in counts:
        print(f"  steps per worker on {w}: {runs[w]['workers']}")
    e, p = base["timings"]["run_median"], runs[repeat_on]["timings"]["run_median"]
    print(f"one run (one day's ingestion, 2 steps), median of {args.repeat} in a warm process: embedded {e:.2f} s, "
          f"production {p:.2f} s ({p - e:+.2f} s, {p / e:.1f}x)")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} ({os.cpu_count()} cores); "
          f"{time.monotonic() - started:.0f} s in all")
    print("Why: a step on a worker mostly waits rather than computes (the run's process polls for its result once "
          "a second, every event is a PostgreSQL write, every table an S3 request), so on 1 worker the steps of the "
          "runs side by side queue behind each other, and more workers overlap their waits: that is how 4 workers "
          "can beat 2 on 2 cores. Steps that kept the cores busy could not go past 2x on this machine; scaling out "
          "means workers on more machines.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
