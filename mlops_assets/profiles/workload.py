"""The same work on any profile, to compare profiles and to time them: a backfill of N days of the synthetic
model (features through `<model>_daily_ingestion_job`, one run per day; then the labels through the landing
sensor's requests), a candidate trained and gated as of the day before the last, and the last day scored. It
prints what it left as JSON: every table's partitions and row counts, every version's artifact sha256 and
gate result, the prediction ledger's rows, and which Celery workers ran the steps.

Runs in its caller's environment (`MLOPS_*`, `DAGSTER_HOME`): the embedded profile's, or the production
profile's from `Stack.env`, where the same runs execute their steps on the Celery workers.

    python -m mlops_assets.profiles.workload --days 30 --concurrency 2 --out result.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dagster as dg

MODEL = "synthetic"
WORKER_KEY = "Celery worker"


def embedded_env(root: Path, spec: Path) -> dict[str, str]:
    """The embedded profile's environment in `root` (a fresh DAGSTER_HOME with the shipped instance YAML, a
    data folder), for running this module next to a production `Stack` with the same spec."""
    from mlops_assets.core.config.settings import PROJECT_DIR

    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_DIR / "mlops_assets" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env.update(DAGSTER_HOME=str(home.resolve()), MLOPS_DATA_DIR=str((root / "data").resolve()), MLOPS_SPECS=str(spec),
               PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_DIR), env.get("PYTHONPATH")])))
    return env


def _definitions():
    from mlops_assets.core.config.settings import Settings
    from mlops_assets.defs import build_definitions

    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    return build_definitions(Settings.from_env())


_DEFS = None


def run_request(serialised: str) -> tuple[str, bool, str]:
    """Execute one serialised RunRequest against DAGSTER_HOME's instance, as the replay does (in this process,
    or with its steps on the executor the settings chose); (run id, success, first error)."""
    from mlops_assets.demo.launch import classify_failure, execute_request

    global _DEFS
    _DEFS = _DEFS or _definitions()
    request = dg.deserialize_value(serialised, dg.RunRequest)
    with dg.DagsterInstance.get() as instance:
        outcome = execute_request(_DEFS, instance, request, dict(request.tags))
    error = "" if outcome.success else classify_failure(outcome, request, request.job_name or "assets").error
    return outcome.run_id, outcome.success, error


def run_all(requests: list[dg.RunRequest], concurrency: int) -> list[tuple[str, bool, str]]:
    """Side by side in `concurrency` processes (each the run's orchestrator), as a backfill's runs are."""
    serialised = [dg.serialize_value(r) for r in requests]
    if concurrency <= 1:
        return [run_request(s) for s in serialised]
    with ProcessPoolExecutor(concurrency, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(run_request, serialised))


def history(spec, days: int, seed: int = 11) -> dict:
    from mlops_assets.demo import synthetic

    config = synthetic.ScenarioConfig("stable", spec.start_date, days, rows_per_day=200, seed=seed)
    return {b.day: b.features.merge(b.labels, on=spec.key_columns) for b in synthetic.generate_days(spec, config)}


def deliver(project, frames: dict, kind: str) -> None:
    from mlops_assets.core.ingestion.landing import features_file_name, labels_file_name

    spec = project.spec
    name, columns = ((features_file_name, spec.batch_columns) if kind == "features"
                     else (labels_file_name, spec.label_columns))
    for day, frame in frames.items():
        project.landing.deliver(name(day), frame[columns].to_csv(index=False, lineterminator="\n").encode())


def label_requests(defs, project) -> list[dg.RunRequest]:
    """What the landing sensor asks for, one tick: a run per delivered labels file."""
    sensor = next(s for s in defs.sensors if s.name == f"{MODEL}_landing_sensor")
    with dg.DagsterInstance.get() as instance:
        ctx = dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
        return list(sensor(ctx).run_requests)


def fingerprint(defs, project, run_ids: list[str]) -> dict:
    store, registry, ledger = project.store, project.registry, project.ledger
    tables = {}
    for key in sorted(defs.resolve_asset_graph().get_all_asset_keys()):
        if key.path[0] == MODEL and (partitions := store.partitions(key.path[-1])):
            tables[key.path[-1]] = {p: len(store.read(key.path[-1], p)) for p in partitions}
    versions = {v.version: {"artifact_sha256": v.artifact.sha256, "gates_passed": v.gates_passed,
                            "aliases": sorted(v.aliases)} for v in registry.list_versions()}
    served = {}
    for day in ledger.days():
        rows = ledger.day(day)
        stable = rows.drop(columns=[c for c in rows.columns if c.endswith("_at")])  # when it was written
        csv = stable.sort_values(list(stable.columns)).to_csv(index=False)
        served[day] = {"rows": len(rows), "sha256": hashlib.sha256(csv.encode()).hexdigest()}
    return {"tables": tables, "versions": versions, "ledger": served, "workers": step_workers(run_ids)}


def step_workers(run_ids: list[str]) -> dict[str, int]:
    """How many steps each Celery worker ran: the executor records, per step, the worker that took it."""
    counts: dict[str, int] = {}
    with dg.DagsterInstance.get() as instance:
        for run_id in run_ids:
            for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
                data = record.dagster_event.event_specific_data if record.dagster_event else None
                worker = (getattr(data, "metadata", None) or {}).get(WORKER_KEY)
                if worker is not None:
                    name = getattr(worker, "value", worker)
                    counts[name] = counts.get(name, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=2, help="runs side by side (default 2)")
    parser.add_argument("--only", choices=["backfill", "all"], default="all")
    parser.add_argument("--repeat-run", type=int, default=0,
                        help="then re-run day one's ingestion this many times, one after the other, and report "
                             "the median wall time of a run")
    parser.add_argument("--out", default=None, help="write the result as JSON to this file")
    args = parser.parse_args(argv)

    defs = _definitions()
    project = defs.resources["portfolio"].portfolio.model(MODEL)
    with dg.DagsterInstance.get():  # its storage created here, once, not by the runs' processes at the same time
        pass
    frames = history(project.spec, args.days)
    days = sorted(frames)
    timings, run_ids, failures = {}, [], []

    def stage(name, requests):
        started = time.monotonic()
        outcomes = run_all(requests, args.concurrency)
        timings[name] = round(time.monotonic() - started, 2)
        run_ids.extend(r for r, _, _ in outcomes)
        failures.extend(f"{name}: {e}" for _, ok, e in outcomes if not ok)
        print(f"[workload] {name}: {len(requests)} run(s) in {timings[name]:.1f}s", flush=True)

    deliver(project, frames, "features")
    ingest = f"{MODEL}_daily_ingestion_job"
    stage("backfill", [dg.RunRequest(job_name=ingest, partition_key=d.isoformat(), tags={"mlops/model": MODEL})
                       for d in days])
    if args.only == "all":
        deliver(project, frames, "labels")
        stage("labels", label_requests(defs, project))
        stage("train", [dg.RunRequest(job_name=f"{MODEL}_train_candidate_job", partition_key=days[-2].isoformat(),
                                      tags={"mlops/model": MODEL})])
        stage("score", [dg.RunRequest(job_name=f"{MODEL}_score_and_monitor_job", partition_key=days[-1].isoformat(),
                                      tags={"mlops/model": MODEL})])
    if args.repeat_run:
        rerun = dg.RunRequest(job_name=ingest, partition_key=days[0].isoformat(), tags={"mlops/model": MODEL})
        walls = []
        for _ in range(args.repeat_run):
            started = time.monotonic()
            run_all([rerun], 1)
            walls.append(time.monotonic() - started)
        timings["run_median"] = round(statistics.median(walls), 3)
        print(f"[workload] one ingestion run (2 steps), median of {len(walls)}: {timings['run_median']:.2f}s")
    result = {"timings": timings, "failures": failures, **fingerprint(defs, project, run_ids)}
    text = json.dumps(result, indent=1, sort_keys=True, default=str)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    print(f"[workload] {len(run_ids)} runs, {len(failures)} failed; steps per Celery worker: "
          f"{result['workers'] or 'none (not on Celery)'}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
