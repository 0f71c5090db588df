"""The detection benchmark's figures as plain-text tables, each line with its target and whether it is met
(`mlops_assets.benchmarks.detection` prints them)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from mlops_assets.benchmarks.detection_core import NOT_AVAILABLE
from mlops_assets.benchmarks.detection_scoring import TARGETS, bias_interval, no_worse
from mlops_assets.core.config.spec import DatasetSpec

TITLES = {"classification": "Synthetic classification (data/specs/synthetic.toml, 500 rows a day)",
          "regression": "Synthetic regression (benchmarks/specs/synthetic_regression.toml, 24 rows a day, trend "
                        "and daily/weekly seasonality)",
          "elec2": "Elec2 (data/specs/elec2.toml, 48 rows a day; the Victoria columns go live on 1997-05-04)",
          "canary": "Canaries through the serving core, day by day, labels landing after the label delay",
          "leakage": "Leakage gate on candidates with a leaking feature",
          "volume": "Volume check: ordinary days and a day with 1/24 of its rows"}


def table(header: list[str], rows: list[list]) -> str:
    cells = [[_fmt(v) for v in row] for row in [header] + rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths)] + lines[1:])


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if np.isnan(v) else str(int(v)) if v.is_integer() and abs(v) >= 2 else f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        return ",".join(_fmt(x) for x in v) or "-"
    return "-" if v is None else str(v)


def _verdict(key: str, value) -> str:
    target = TARGETS[key]
    return f"{target} {target.judge(value)}"


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def print_family(family: str, figures: dict, spec: DatasetSpec, command: str) -> None:
    print(f"\n== {TITLES[family]}\n   command: {command}")
    printer = {"canary": _print_canary, "leakage": _print_leakage, "volume": _print_volume}.get(family)
    if printer:
        printer(figures, spec)
    else:
        _print_scenarios(figures, spec, real=family == "elec2")


def _by_scenario(runs: list[dict]) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for r in runs:
        out[r["scenario"]].append(r)
    return out


def _print_scenarios(figures: dict, spec: DatasetSpec, real: bool = False) -> None:
    scenarios = _by_scenario(figures["runs"])
    print("Alert days in stable periods (before the onset; every served day when nothing changes), served policy; "
          "a day counts once at its worst status:")
    if real:
        print("   (real data: its accuracy really decays between retrains, so the target counts data-drift ERROR "
              "days only; performance alerts are shown, not judged)")
    rows = []
    for name, runs in scenarios.items():
        total = {k: sum(r["stable"][k] for r in runs) for k in runs[0]["stable"]}
        rows.append([name, len(runs), total["days"], total["error_days"],
                     f'{total["drift_error_days"]}/{total["performance_error_days"]}', total["warn_days"],
                     f'{total["drift_warn_days"]}/{total["performance_warn_days"]}', total["wrong_flags"],
                     _verdict("stable_error_days", total["drift_error_days" if real else "error_days"])])
    print(table(["scenario", "seeds", "stable days", "ERROR days", "ERROR drift/perf", "WARN days",
                 "WARN drift/perf", "wrong flags", "target ERROR days"], rows))

    changed = {n: runs for n, runs in scenarios.items() if runs[0]["onset"] is not None}
    if changed:
        print("Days from onset to flag (first WARN or ERROR on or after the onset, by the monitored day; "
              "realised-performance flags are known label_delay_days later):")
        rows = []
        for name, runs in changed.items():
            delays = [r["flag"]["delay_days"] for r in runs]
            worst = None if None in delays else max(delays)
            rows.append([name, delays, [r["flag"]["delay_to_error_days"] for r in runs],
                         sorted({r["flag"]["monitor_at_flag"] or "-" for r in runs}),
                         _verdict("onset_to_flag_days", worst)])
        print(table(["scenario", "days to flag per seed", "days to ERROR per seed", "flagged by",
                     "target (worst seed)"], rows))

    metric = ["accuracy"] if spec.is_classification else ["mae", "rmse"]
    print(f"Served quality ({'/'.join(metric)}, mean over seeds; 'served' retrains on a drift or performance ERROR "
          "with the spec's cooldown, every retrain promoted; target: served no worse than never retrained beyond two "
          "standard errors):")
    rows = []
    for name, runs in scenarios.items():
        part = "after_onset" if runs[0]["onset"] is not None else "all"
        policies = list(runs[0]["quality"])
        values = {p: {m: _mean(r["quality"][p][part].get(m) for r in runs) for m in metric} for p in policies}
        key = metric[0]
        rows_per_seed = min(r["quality"]["served"][part].get("rows", 0) for r in runs)
        better = no_worse(values["served"][key], values["never"][key], rows_per_seed, spec.task)
        rows.append([name, part, *[[values[p][m] for m in metric] if p in values else "-" for p in POLICY_ORDER],
                     [_mean(r["retrains"].get(p) for r in runs) for p in ("served", "weekly")],
                     "met" if better else ("n/a" if better is None else "NOT met")])
    print(table(["scenario", "days", *[f"{p}" for p in POLICY_ORDER], "retrains served/weekly", "served vs never"],
                rows))

    if spec.is_classification:
        metrics = sorted({r.get("performance_metric") or "?" for r in scenarios[next(iter(scenarios))]})
        print(f"Label-free estimate minus the realised figure on the same rows ({'/'.join(metrics)}, per served day; "
              "bias > 0: optimistic):")
        rows = []
        for name, runs in scenarios.items():
            stable = [r["estimate"]["stable"] for r in runs]
            after = [r["estimate"]["after_onset"] for r in runs]
            bias = _mean(s["bias"] for s in stable)
            interval = bias_interval([b for s in stable for b in s.get("block_biases", [])])
            rows.append([name, _mean(s["bias"] for s in stable),
                         "-" if interval is None else f"{interval[0]:+.3f} .. {interval[1]:+.3f}",
                         _mean(s["mean_abs_error"] for s in stable),
                         _mean(a["bias"] for a in after), _mean(a["mean_abs_error"] for a in after),
                         _verdict("estimate_abs_bias_stable", None if bias is None else abs(bias))])
        print("   (95 % CI of the stable bias: t interval over runs of 14 served days, every seed's runs pooled)")
        print(table(["scenario", "bias stable", "95 % CI", "abs error stable", "bias after onset", "abs error after",
                     "target |bias stable|"], rows))


POLICY_ORDER = ("served", "never", "weekly")


def _print_canary(figures: dict, spec: DatasetSpec) -> None:
    rows = []
    for family, tally in figures["tally"].items():
        better, worse = tally["better"], tally["worse"]
        days = {k: [r["days"] for r in figures["runs"] if r["family"] == family and r["kind"] == k]
                for k in ("better", "worse")}
        rows.append([family, f'{better["completed"]}/{better["n"]}', better["pending"], days["better"],
                     _verdict("canary_better_completed", better["completed_share"]),
                     f'{worse["rolled_back"]}/{worse["n"]}', worse["pending"], days["worse"],
                     _verdict("canary_worse_rolled_back", worse["rolled_back_share"])])
    print("Better: trained on the window after a concept change, against the stale champion; worse: the same "
          "window with shuffled labels, against a champion trained on it. Days: from the canary's first day to "
          "its decision (or the horizon).")
    print(table(["family", "better completed", "pending", "days", "target", "worse rolled back", "pending", "days",
                 "target"], rows))
    reasons = defaultdict(set)
    for run in figures["runs"]:
        if run["outcome"] != ("complete" if run["kind"] == "better" else "rollback") and run["last_reasons"]:
            reasons[(run["family"], run["kind"], run["outcome"])].add(run["last_reasons"][:160])
    for (family, kind, outcome), texts in reasons.items():
        print(f"   {family} {kind} ended {outcome}, last step said: {sorted(texts)[0]}")


def _print_leakage(figures: dict, spec: DatasetSpec) -> None:
    rows = []
    for run in figures["runs"]:
        if run["honest"] is None:
            rows.append([run["family"], NOT_AVAILABLE, NOT_AVAILABLE, NOT_AVAILABLE, "-"])
            continue
        rows.append([run["family"], "passed" if not run["honest"]["blocked"] else "BLOCKED",
                     "blocked" if run["single"]["blocked"] else "passed",
                     "blocked" if run["pair"]["blocked"] else "passed",
                     "every leak blocked, honest passed: "
                     + ("met" if run["single"]["blocked"] and run["pair"]["blocked"] and not run["honest"]["blocked"]
                        else "NOT met")])
    print(table(["family", "honest candidate", "target + noise", "two parts summing to target", "target"], rows))


def _print_volume(figures: dict, spec: DatasetSpec) -> None:
    rows = []
    for run in figures["runs"]:
        ordinary, low = run["ordinary"], run["low"]
        if not ordinary["available"]:
            rows.append([run["family"], run["rows_per_day"], NOT_AVAILABLE, NOT_AVAILABLE, "-"])
            continue
        rows.append([run["family"], run["rows_per_day"], f'{ordinary["as_expected"]}/{ordinary["days"]} passed',
                     f'{low["as_expected"]}/{low["days"]} blocked',
                     f'{_verdict("volume_ordinary_days_passed", ordinary["share"])}; '
                     f'{_verdict("volume_low_day_blocked", low["share"])}'])
    print(table(["family", "rows a day", "ordinary days", "1/24 days", "targets"], rows))
