"""`make chaos`: try classes of faults against the real code and say, for each, whether it was rejected with a
clear error, recovered from, or left data lost, state inconsistent or the loop wedged. Exits non-zero if
anything is lost, inconsistent or wedged. Not part of `make test` (tests/tools/test_chaos.py runs the cheapest
cases through these same functions).

    python -m mlops_assets.benchmarks.chaos [--only NAME ...] [--backfill-days N]
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

from mlops_assets.benchmarks import chaos_kills, chaos_landing, chaos_parallel
from mlops_assets.benchmarks.chaos_common import FAILURES, OUTCOMES, Result

# name -> case function(work folder) -> [Result]
CASES = {
    "landing": chaos_landing.hostile_landing,
    "kill_score": chaos_kills.kill_score,
    "kill_promote": chaos_kills.kill_promote,
    "kill_train": chaos_kills.kill_train,
    "kill_ingest": chaos_kills.kill_ingest,
    "concurrent_registry": chaos_parallel.concurrent_registry,
    "backfill": chaos_parallel.parallel_backfill,
}


def run_cases(cases: dict, echo=print) -> list[Result]:
    """Run each case in its own scratch folder; a case that raises is reported as inconsistent, with why."""
    results = []
    for name, case in cases.items():
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as work:
            try:
                got = case(Path(work))
            except Exception as exc:  # noqa: BLE001 - the suite reports, it does not stop
                got = [Result(name, "inconsistent", f"the case raised {type(exc).__name__}: {exc}"[:200])]
                echo(traceback.format_exc())
        seconds = time.perf_counter() - started
        for r in got:
            r.seconds = seconds / len(got)
        results.extend(got)
        echo(f"  {name}: {len(got)} result(s) in {seconds:.1f} s")
    return results


def totals(results: list[Result]) -> dict[str, int]:
    return {"tried": len(results), **{o: sum(r.outcome == o for r in results) for o in OUTCOMES}}


def table(results: list[Result]) -> str:
    width = max(len(r.case) for r in results)
    lines = [f"{'case':<{width}}  {'outcome':<12}  {'s':>6}  detail", "-" * (width + 100)]
    lines += [f"{r.case:<{width}}  {r.outcome:<12}  {r.seconds:>6.1f}  {r.detail.replace(chr(10), ' ')}"
              for r in results]
    lines.append("-" * (width + 100))
    lines.append("  ".join(f"{k} {v}" for k, v in totals(results).items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--backfill-days", type=int, default=60)
    args = parser.parse_args(argv)
    cases = {n: c for n, c in CASES.items() if not args.only or n in args.only}
    if "backfill" in cases:
        cases["backfill"] = functools.partial(chaos_parallel.parallel_backfill, days=args.backfill_days)
    started = time.perf_counter()
    results = run_cases(cases)
    print()
    print(table(results))
    count = totals(results)
    bad = sum(count[o] for o in FAILURES)
    print()
    print(f"command: {shlex.join([sys.executable, '-m', 'mlops_assets.benchmarks.chaos', *(argv or sys.argv[1:])])}")
    print(f"duration: {time.perf_counter() - started:.1f} s")
    print("FAILED: something was lost, left inconsistent or wedged" if bad else "OK: nothing lost, inconsistent or wedged")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
