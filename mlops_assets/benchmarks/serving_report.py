"""The serving benchmark's table and its target checks: plain functions over the load generator's results.

A result is the load generator's JSON with `server` ("project" or "mlflow") and `rows` added; the floor is
the in-process pipeline call's median seconds per rows-per-request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

THROUGHPUT_RATIO_TARGET = 10.0  # single-row req/s at concurrency 64, project / MLflow's default server
FLOOR_RATIO_TARGET = 1.5  # p50 at concurrency 1, project / in-process pipeline call


@dataclass(frozen=True)
class Target:
    name: str
    measured: str  # the figures compared, as printed
    passed: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "not measured"}[self.passed]


def find(results: list[dict], server: str, rows: int, concurrency: int) -> dict | None:
    for result in results:
        if (result["server"], result["rows"], result["concurrency"]) == (server, rows, concurrency):
            return result
    return None


def _usable(result: dict | None) -> bool:
    return result is not None and result.get("requests", 0) > 0


def targets(results: list[dict], floor_s: dict[int, float], swap: dict | None) -> list[Target]:
    out = []
    ours, theirs = find(results, "project", 1, 64), find(results, "mlflow", 1, 64)
    if _usable(ours) and _usable(theirs):
        ratio = ours["throughput_rps"] / theirs["throughput_rps"]
        out.append(Target(f"single-row req/s at concurrency 64 >= {THROUGHPUT_RATIO_TARGET:g}x MLflow's",
                          f"{ours['throughput_rps']:.0f} vs {theirs['throughput_rps']:.0f} req/s = {ratio:.1f}x",
                          ratio >= THROUGHPUT_RATIO_TARGET))
    else:
        out.append(Target(f"single-row req/s at concurrency 64 >= {THROUGHPUT_RATIO_TARGET:g}x MLflow's", "-", None))
    for rows in sorted(floor_s):
        ours = find(results, "project", rows, 1)
        name = f"p50 at concurrency 1, {rows} row(s), within {FLOOR_RATIO_TARGET:g}x the in-process call"
        if _usable(ours):
            floor_ms = floor_s[rows] * 1000
            ratio = ours["p50_ms"] / floor_ms
            out.append(Target(name, f"{ours['p50_ms']:.2f} vs {floor_ms:.2f} ms = {ratio:.2f}x",
                              ratio <= FLOOR_RATIO_TARGET))
        else:
            out.append(Target(name, "-", None))
    for rows in sorted({r["rows"] for r in results}):
        ours, theirs = find(results, "project", rows, 16), find(results, "mlflow", rows, 16)
        name = f"p99 at concurrency 16, {rows} row(s), below MLflow's p50"
        if _usable(ours) and _usable(theirs):
            out.append(Target(name, f"{ours['p99_ms']:.1f} vs {theirs['p50_ms']:.1f} ms",
                              ours["p99_ms"] < theirs["p50_ms"]))
        else:
            out.append(Target(name, "-", None))
    name = "0 failed requests across a promotion and a rollback under load"
    if swap is None or not _usable(swap.get("load")):
        out.append(Target(name, (swap or {}).get("error") or "-", None))
    else:
        failed = swap["load"]["failures"]
        served = [change["version"] for change in swap["load"].get("version_changes", [])]
        # The successor served, then the champion again and nothing else; on a slow service the first counted
        # reply may already come from the successor.
        swapped = served in ([swap["champion"], swap["successor"], swap["champion"]],
                             [swap["successor"], swap["champion"]])
        measured = (f"{failed} failed of {swap['load']['requests'] + failed}; served "
                    f"{' -> '.join(served) or 'no version'}" + (f"; {swap['error']}" if swap.get("error") else ""))
        out.append(Target(name, measured, failed == 0 and swapped and not swap.get("error")))
    return out


def _cell(value, spec: str) -> str:
    width = int(spec.split(".")[0])
    return f"{'-':>{width}}" if value is None else format(value, spec)


def table(results: list[dict]) -> list[str]:
    head = f"{'server':<8} {'rows':>4} {'conc':>4} {'req/s':>9} {'rows/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'failed':>6}"
    lines = [head, "-" * len(head)]
    for r in sorted(results, key=lambda r: (r["rows"], r["concurrency"], r["server"] != "project")):
        lines.append(f"{r['server']:<8} {r['rows']:>4} {r['concurrency']:>4} {_cell(r.get('throughput_rps'), '9.1f')} "
                     f"{_cell(r.get('rows_per_s'), '10.0f')} {_cell(r.get('p50_ms'), '9.2f')} "
                     f"{_cell(r.get('p99_ms'), '9.2f')} {r.get('failures', 0):>6}")
    return lines


def report(results: list[dict], floor_s: dict[int, float], swap: dict | None, load_before: tuple, load_after: tuple,
           notes: list[str] = ()) -> str:
    lines = [*notes, ""] if notes else []
    lines += table(results)
    lines.append("")
    for rows, seconds in sorted(floor_s.items()):
        lines.append(f"in-process floor, {rows:>3} row(s): pipeline.predict_proba median {seconds * 1000:.2f} ms "
                     "(the cheaper of default threads and 1 thread; the mean of the medians just before and "
                     "after the project's concurrency-1 cell when measured there)")
    if swap is not None and swap.get("load"):
        load = swap["load"]
        lines.append("")
        lines.append(f"swap under load (project, 1 row, concurrency {load['concurrency']}): "
                     f"{load['requests']} ok, {load['failures']} failed {load['failure_reasons'] or ''}")
        timeline = [(e["at_s"], e["what"]) for e in swap.get("events", [])]
        timeline += [(c["at_s"], f"first counted reply from {c['version']}") for c in load.get("version_changes", [])]
        for at, what in sorted(timeline):
            lines.append(f"  {at:6.2f} s  {what}")
    lines.append("")
    lines.append("targets:")
    for target in targets(results, floor_s, swap):
        lines.append(f"  {target.verdict:<12} {target.name}: {target.measured}")
    lines.append("")
    lines.append("load average (1, 5, 15 min): before " + ", ".join(f"{x:.2f}" for x in load_before)
                 + "; after " + ", ".join(f"{x:.2f}" for x in load_after) + f" ({os.cpu_count()} cores)")
    return "\n".join(lines)
