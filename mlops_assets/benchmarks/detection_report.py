"""The detection benchmark's figures as plain-text tables (`mlops_assets.benchmarks.detection` prints them)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from mlops_assets.core.config.spec import DatasetSpec


def table(header: list[str], rows: list[list]) -> str:
    cells = [[_fmt(v) for v in row] for row in [header] + rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths)] + lines[1:])


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if np.isnan(v) else f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v) or "-"
    return "-" if v is None else str(v)


def print_synthetic(figures: dict, spec: DatasetSpec, onset_day: int) -> None:
    m = spec.monitoring
    print(f"\n1. Synthetic scenarios ({Path(spec.source).name}): model on days 0..{spec.training.window_days - 1}, "
          f"onset day {onset_day}; drift_alpha={m.drift_alpha}, drift_min_effect={m.drift_min_effect}, "
          f"warn/error share {m.warn_drift_share}/{m.error_drift_share}. One row per seed.")
    rows = []
    for scenario, runs in figures.items():
        for r in runs:
            post = r["served_days_after_onset"]
            rows.append([scenario, r["seed"], f'{r["alarm_days_before_onset"]}/{r["served_days_before_onset"]}',
                         r["wrong_flags_before_onset"], r.get("delay_days"), r.get("status_at_detection"),
                         r.get("precision"), r.get("recall"), f'{r["alarm_days_after_onset"]}/{post}' if post else None,
                         r["flagged_after_onset"] if scenario in ("concept_drift", "prior_shift") else None,
                         r["accuracy_before_onset"], r["accuracy_after_onset"] if post else None,
                         r["performance_error_days_after_onset"] if post else None])
    print(table(["scenario", "seed", "alarms pre", "wrong flags pre", "delay", "status", "precision", "recall",
                 "alarms post", "flagged post", "acc pre", "acc post", "perf ERROR post"], rows))


def print_elec2(figures: dict, spec: DatasetSpec, change: dt.date) -> None:
    m = spec.monitoring
    print(f"\n2. Elec2 ({Path(spec.source).name}): first model as of {figures['first_as_of']}; dormant (constant in "
          f"training): {', '.join(figures['dormant_features']) or '-'}; change {change}.\n   drift_min_effect="
          f"{m.drift_min_effect}, constant_min_effect={m.constant_min_effect}, even_weight_share="
          f"{m.even_weight_share}, warn/error share {m.warn_drift_share}/{m.error_drift_share}\n   weights of the "
          f"first model {figures['weights']}")
    sources = [("first model's own training days", figures["in_window_effects"])]
    sources += [(f"served before change, {p}", f["effects_before_change"]) for p, f in figures["policies"].items()
                if p in ("never", "weekly")]
    sources += [("served 9+ weeks after change, weekly", f["effects_9w_after_change"])
                for p, f in figures["policies"].items() if p == "weekly"]
    rows = [[label, name, q["p50"], q["p95"], q["p99"], q["max"]] for label, qs in sources for name, q in qs.items()
            if name not in figures["dormant_features"] or "after" in label]
    print("Daily effect size (Wasserstein / reference std) of the monitored features:")
    print(table(["days", "feature", "p50", "p95", "p99", "max"], rows))
    rows = [[p, d["days_before_change"], d["error_days_before_change"], d["warn_days_before_change"],
             d["error_days_90d_before_change"], d["first_error_after_change"], d["delay_days"],
             d["flagged_at_detection"], d["error_days_first_8_weeks_after_change"]]
            for p, f in figures["policies"].items() for d in [f["detection"]]]
    print(table(["policy", "days pre", "ERROR pre", "WARN pre", "ERROR 90d pre", "first ERROR after", "delay",
                 "flagged then", "ERROR 8w after"], rows))
    print(f"\n3. Elec2 accuracy at {spec.deployment.decision_threshold:g} of the daily champion (every retrain promoted; "
          "gates not simulated):")
    rows = [[p, f["retrains"], f["retrains_before_change"], f["accuracy_all"], f["accuracy_before_change"],
             f["accuracy_from_change"], f["accuracy_1998"],
             f'{f["performance_error_days_before_change"]}/{f["performance_error_days_from_change"]}', f["seconds"]]
            for p, f in figures["policies"].items()]
    print(table(["policy", "retrains", "before change", "acc all", "acc pre-change", "acc from change", "acc 1998",
                 "perf ERROR pre/post", "seconds"], rows))
