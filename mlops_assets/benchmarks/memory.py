"""Peak memory of each step kind, the figure a pod's memory request is sized from (`python -m
mlops_assets.benchmarks.scale --only memory`; deploy/README.md's sizing note quotes it).

For each volume (rows a day) a synthetic model is set up in a temporary folder: a labeled history of the
spec's training window straight into the warehouse, then one fresh interpreter per step kind, each running that
step's assets through Dagster in process (as a run worker or a step pod does), in the lifecycle's order:

  ingest      raw_batch (+ its inline checks) of a delivered CSV of the day
  features    feature_table of that day
  train       training_set and candidate_model (+ reproducibility check) as of the day before
  evaluate    evaluation_report (+ the eight gates) and model_promotion
  scoring     batch_scoring, canary_step, shadow_report of the day
  monitoring  the four monitoring reports of the day

Each child prints its VmHWM (peak resident set, read from /proc/self/status by itself: a child's ru_maxrss
starts at its parent's peak) and its VmRSS before the step (interpreter, Dagster and the definitions), so the
step's own growth is the difference. Training days beyond --train-max-rows rows a day are generated at that
volume (the measured day keeps the full volume): training is then reported as capped, with the rows it saw.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

MIB = 1 << 20
STEPS = {
    "ingest": ("daily_ingestion_job", ("raw_batch",)),
    "features": ("daily_ingestion_job", ("feature_table",)),
    "train": ("train_candidate_job", ("training_set", "candidate_model")),
    "evaluate": ("train_candidate_job", ("evaluation_report", "model_promotion")),
    "scoring": ("score_and_monitor_job", ("batch_scoring", "canary_step", "shadow_report")),
    "monitoring": ("score_and_monitor_job", ("data_drift_report", "prediction_drift_report",
                                             "performance_report", "cost_report")),
}
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _spec_text(start: dt.date) -> str:
    from .scale import SPEC, START

    text = SPEC.read_text()
    assert f'start_date = "{START.isoformat()}"' in text
    return text.replace(f'start_date = "{START.isoformat()}"', f'start_date = "{start.isoformat()}"')


def _days_in_window(spec) -> int:
    training = spec.training
    return training.window_days + training.validation_days + training.benchmark_days


def setup_memory(work: str, rows: str, train_rows: str) -> None:
    """The labeled history (at `train_rows` a day) and the measured day's CSV (at `rows`) in the landing zone."""
    import duckdb

    from mlops_assets.core.config.settings import Settings
    from mlops_assets.core.config.spec import load_spec
    from mlops_assets.core.ingestion.landing import features_file_name
    from mlops_assets.core.portfolio import Portfolio
    from mlops_assets.demo import synthetic
    from mlops_assets.demo.history import load_labeled_days

    from .scale import DAILY_START

    folder = Path(work)
    spec_path = folder / "synthetic.toml"
    folder.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(_spec_text(DAILY_START))
    spec = load_spec(spec_path)
    history = _days_in_window(spec) + 2
    project = Portfolio(Settings.for_data_dir(folder / "data", spec_path)).model(spec.name)
    started = time.perf_counter()
    cfg = synthetic.ScenarioConfig("stable", DAILY_START, history, rows_per_day=int(train_rows), seed=5)
    days = {b.day: b.features.merge(b.labels, on=spec.key_columns) for b in synthetic.generate_days(spec, cfg)}
    load_labeled_days(project.store, spec, days, sorted(days))
    measured = DAILY_START + dt.timedelta(days=history)
    day = synthetic.generate_day(spec, synthetic.ScenarioConfig("stable", measured, 1, rows_per_day=int(rows),
                                                                seed=6), 0).features
    project.paths.landing_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.register("day", day)
    con.execute(f"COPY day TO '{project.paths.landing_dir / features_file_name(measured)}' (HEADER, DELIMITER ',')")
    print(json.dumps({"day": measured.isoformat(), "as_of": (measured - dt.timedelta(days=1)).isoformat(),
                      "train_rows": int(train_rows) * _days_in_window(spec), "seconds": time.perf_counter() - started}))


def measure_step(work: str, step: str, partition: str) -> None:
    """Run one step kind's assets for `partition` in this (fresh) process; print its peak memory."""
    import warnings

    import dagster as dg

    from mlops_assets.core.config.settings import Settings
    from mlops_assets.defs import build_definitions

    from .scale import _reset_peak, _status

    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    folder = Path(work)
    defs = build_definitions(Settings.for_data_dir(folder / "data", folder / "synthetic.toml"))
    job, assets = STEPS[step]
    job_def = defs.resolve_job_def(f"synthetic_{job}")
    imported = _status("VmRSS")
    _reset_peak()
    started = time.perf_counter()
    result = job_def.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key=partition, run_config=QUIET,
        resources=defs.resources, raise_on_error=False,
        asset_selection=[dg.AssetKey(["synthetic", a]) for a in assets])
    seconds = time.perf_counter() - started
    # a blocking gate that fails also fails its step: say which, so a stop is not read as a crash
    failed = [f"{e.step_key.split('__')[-1]}: " + ("stopped by a blocking check" if
              "DagsterAssetCheckFailedError" in e.event_specific_data.error.message else
              e.event_specific_data.error.message.strip().splitlines()[0][:160])
              for e in result.all_events if e.is_step_failure]
    print(json.dumps({"seconds": seconds, "peak": _status("VmHWM"), "imported": imported,
                      "success": result.success, "failed": failed}))


def promote_if_gated(work: str) -> None:
    """A small history may fail the first-model floors; scoring needs a champion, so force the candidate."""
    from mlops_assets.core.config.settings import Settings
    from mlops_assets.core.portfolio import Portfolio

    folder = Path(work)
    registry = Portfolio(Settings.for_data_dir(folder / "data", folder / "synthetic.toml")).model("synthetic").registry
    forced = None
    if registry.version_for("champion") is None:
        forced = registry.version_for("candidate")
        registry.promote(forced, "champion", actor="benchmark", reason="memory benchmark needs a champion",
                         force=True)
    print(json.dumps({"forced": forced}))


def bench_memory(volumes: list[int], train_max_rows: int, work: Path, table: list,
                 steps: list[str] | None = None) -> None:
    from .scale import _child, _command, _load

    steps = steps or list(STEPS)
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise ValueError(f"unknown step kinds {unknown}: choose from {list(STEPS)}")
    steps = [s for s in STEPS if s in steps]  # the lifecycle's order: scoring needs the champion training makes
    command = _command("--only memory", "--volumes " + ",".join(map(str, volumes)),
                       f"--train-max-rows {train_max_rows}", *(["--steps " + ",".join(steps)] if
                                                                 steps != list(STEPS) else []))
    print(f"memory: peak RSS of each step kind in a fresh process ({_load()})")
    for rows in volumes:
        folder = work / f"memory-{rows}"
        train_rows = min(rows, train_max_rows)
        made = _child("setup_memory", folder, rows, train_rows, module="memory")
        print(f"  {rows:,} rows a day: history of {made['train_rows']:,} labeled rows ({train_rows:,} a day) set up "
              f"in {made['seconds']:.0f} s")
        for step in steps:
            partition = made["as_of"] if step in ("train", "evaluate") else made["day"]
            found = _child("measure_step", folder, step, partition, module="memory")
            if step == "evaluate":
                forced = _child("promote_if_gated", folder, module="memory")["forced"]
                if forced:
                    print(f"    (gates refused the first model at this volume; {forced} forced to champion)")
            note = "" if found["success"] else f" (step failed: {'; '.join(found['failed'])})"
            capped = f" (capped: {made['train_rows']:,} rows)" if step in ("train", "evaluate") and train_rows < rows \
                else ""
            print(f"    {step:<10} peak {found['peak'] / MIB:,.0f} MiB (before the step {found['imported'] / MIB:,.0f} "
                  f"MiB, growth {(found['peak'] - found['imported']) / MIB:,.0f} MiB), {found['seconds']:.1f} s"
                  f"{capped}{note}")
            table.append((f"memory: {step}, {rows:,} rows/day{capped}",
                          f"peak {found['peak'] / MIB:,.0f} MiB, {found['seconds']:.1f} s{note}", command))
