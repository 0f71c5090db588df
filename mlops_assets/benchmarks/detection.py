"""Do the loop's decisions hold on data nobody tuned for? Drift, performance, canary, leakage and volume figures
per scenario, each against its target (`python -m mlops_assets.benchmarks.detection`).

Plain core functions, no Dagster, every call through `detection_core` (the same steps the assets run), with
every spec's [monitoring] and [deployment] at what the spec says (the benchmark never overrides a policy).
Scenario families (`--only`):

- classification: the synthetic scenarios of data/specs/synthetic.toml (mlops_assets/demo/synthetic.py,
  500 rows a day): stable, gradual and abrupt covariate shift, concept drift, prior shift.
- regression: an hourly load at 24 rows a day with trend and daily/weekly seasonality
  (mlops_assets/demo/synthetic_regression.py, benchmarks/specs/synthetic_regression.toml): stable, feature
  shift, concept change.
- elec2: the real Elec2 history; its Victoria columns go live on 1997-05-04 (data/elec2/README.md).
- canary: candidates known to be better (trained on post-change data, the champion on pre-change data) and
  worse (trained on label-shuffled data, the champion on the same window) served as canaries day by day
  through the serving core, labels landing `label_delay_days` later.
- leakage: an honest candidate, one with a feature that is the target plus a little noise, and one with two
  features that sum to the target, through the promotion gates.
- volume: every ordinary served day and a day with 1/24 of its rows, through the volume check.

Per scenario: alert days in stable periods, days from onset to the first flag, served quality under three
policies (never retrained; weekly on the trailing window; "served": retrained when a data-drift or performance
check is ERROR, with the spec's cooldown, as the retrain sensor does; every retrain promoted, gates and canary
not simulated), and the label-free estimate's error against realised accuracy (classification).
Options: --quick (one seed, short horizons, Elec2 without weekly), --seeds N (default 5), --only FAMILY
(repeatable), --jobs N (worker processes, default 2), --out FILE (the figures as JSON). The full run took
307 s on 2 cores under a load average of about 3 from other jobs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from mlops_assets.benchmarks import detection_core as core
from mlops_assets.benchmarks.detection_report import print_family
from mlops_assets.benchmarks.detection_scoring import (DayRecord, canary_tally, estimate_error, onset_to_flag,
                                                       quality, stable_alerts, volume_tally)
from mlops_assets.core.config.spec import DatasetSpec, FeatureSpec, load_spec
from mlops_assets.core.features import engineering as features
from mlops_assets.core.ingestion.validation import read_batch
from mlops_assets.core.io.atomic import write_atomic
from mlops_assets.core.io.json_safe import json_safe
from mlops_assets.core.monitoring.drift import earlier_days
from mlops_assets.core.monitoring.retraining import FailedCheck, RetrainState, plan_retrains
from mlops_assets.core.training import trainer as training
from mlops_assets.demo import history as replay
from mlops_assets.demo import synthetic
from mlops_assets.demo import synthetic_regression

DATA = Path(__file__).resolve().parents[2] / "data"
SPECS = {"classification": DATA / "specs" / "synthetic.toml",
         "regression": Path(__file__).resolve().parent / "specs" / "synthetic_regression.toml",
         "elec2": DATA / "specs" / "elec2.toml"}
ELEC2_CSV = DATA / "elec2" / "elec2_timestamped.csv"
ELEC2_CHANGE = dt.date(1997, 5, 4)  # the Victoria columns go live (data/elec2/README.md)
SCENARIOS = {"classification": synthetic.SCENARIOS, "regression": synthetic_regression.SCENARIOS}
CONCEPT = {"classification": "concept_drift", "regression": "concept_change"}
FAMILIES = ("classification", "regression", "elec2", "canary", "leakage", "volume")
POLICIES = ("never", "weekly", "served")
SERVED_DAYS_AFTER_ONSET = 30
CANARY_HORIZON_DAYS = 40
WINDOW_KEPT_DAYS = 60  # served days kept for a core that judges performance over a trailing window


# ------------------------------------------------------------------------------------------------ frames


def labeled_frame(spec: DatasetSpec, batch) -> pd.DataFrame:
    return features.join_labels(features.engineer(batch.features, spec), batch.labels, spec)[0]


def scenario_frames(family: str, spec: DatasetSpec, scenario: str, seed: int, onset_day: int, days: int, **kw):
    """The labeled frames of one synthetic scenario, by day, and its ground truth (onset, drifting features)."""
    if family == "classification":
        cfg = synthetic.ScenarioConfig(scenario, spec.start_date, days, onset_day=onset_day, seed=seed, **kw)
        truth = synthetic.ground_truth(spec, cfg)
        batches = synthetic.generate_days(spec, cfg)
    else:
        cfg = synthetic_regression.RegressionScenario(scenario, spec.start_date, days, onset_day=onset_day,
                                                      seed=seed, **kw)
        truth = synthetic_regression.ground_truth(spec, cfg)
        batches = synthetic_regression.generate_days(spec, cfg)
    return {b.day: labeled_frame(spec, b) for b in batches}, truth


def labeled_days(spec: DatasetSpec, history: dict[dt.date, pd.DataFrame]) -> dict[dt.date, pd.DataFrame]:
    """Labeled examples per day, through the same read/engineer/join steps as replay.load_labeled_days (typed
    once over the whole history, then split by day: the steps are row-wise, so the rows are the same)."""
    whole = pd.concat(history.values(), ignore_index=True)
    batch = read_batch(replay._csv(whole[spec.batch_columns]), "history", "history", spec, "features")
    labels = read_batch(replay._csv(whole[spec.label_columns]), "history", "history", spec, "labels")
    joined = features.join_labels(features.engineer(batch, spec), labels, spec)[0]
    return {day: frame.reset_index(drop=True) for day, frame in replay.split_by_day(joined, spec).items()}


def first_as_of(spec: DatasetSpec, frames: dict) -> dt.date:
    return min(frames) + dt.timedelta(days=spec.training.window_days - 1)


# ----------------------------------------------------------------------------------------------- serving


def day_record(spec: DatasetSpec, model: core.Model, day: dt.date, frame: pd.DataFrame, window,
               earlier: list[tuple[dt.date, pd.DataFrame]] = ()) -> DayRecord:
    """The day served by `model`, monitored unless the model has no reference (then only its errors count).
    `earlier`: the previous days with rows, newest first (what confirms an ERROR-level drift day)."""
    labels = training.labels(spec, frame)
    if model.reference is None:
        scores = training.predict_scores(model.pipeline, spec, frame)
        record = DayRecord(day.isoformat(), model.as_of.isoformat(), "OK", "OK", [], len(frame))
    else:
        served = core.monitor_day(spec, model, day, frame, window, earlier)
        scores = served.scores
        record = DayRecord(day.isoformat(), model.as_of.isoformat(), served.drift_status, served.performance_status,
                           served.flagged, len(frame), drift_share=round(served.drift_share, 4),
                           estimated=served.performance.get("estimated"),
                           realised=served.performance.get("realised"), performance_metric=served.performance["metric"])
    if spec.is_classification:
        record.correct = int(np.sum((scores >= spec.deployment.decision_threshold) == labels))
    else:
        record.abs_error, record.sq_error = float(np.abs(scores - labels).sum()), float(((scores - labels) ** 2).sum())
    for old in [d for d in window if d < (day - dt.timedelta(days=WINDOW_KEPT_DAYS)).isoformat()]:
        del window[old]  # older than any window the core reads
    return record


def run_policy(spec: DatasetSpec, frames: dict[dt.date, pd.DataFrame], as_of: dt.date, policy: str,
               last_day: dt.date | None = None, monitor: bool = True) -> tuple[list[DayRecord], list[dict]]:
    """Serve every day after `as_of` with the current model; retrain as `policy` says. A retrain as of day D
    (labels of D land with the monitoring of D) serves from D + 1. `monitor=False` (never or weekly: only
    their errors are used) skips the monitoring references, most of a retrain's cost."""
    monitor = monitor or policy == "served"  # its retrains follow the monitoring
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {POLICIES}")
    days = [d for d in sorted(frames) if d > as_of and (last_day is None or d <= last_day)]
    model = core.fit_model(spec, frames, as_of, with_reference=monitor)
    state, event, records, retrains = RetrainState(), 0, [], []
    window: dict[str, pd.DataFrame] = {}
    days_with_rows = [d.isoformat() for d in frames if len(frames[d])]
    for day in days:
        if policy == "weekly" and (day - model.as_of).days > 7:
            model = core.fit_model(spec, frames, day - dt.timedelta(days=1), with_reference=monitor)
            retrains.append({"as_of": model.as_of.isoformat(), "reason": "weekly"})
            window.clear()  # a new version is judged on its own rows
        earlier = [dt.date.fromisoformat(d) for d in earlier_days(day.isoformat(), days_with_rows)]
        record = day_record(spec, model, day, frames[day], window, [(d, frames[d]) for d in earlier])
        records.append(record)
        if policy != "served":
            continue
        failures = []
        for check, status in (("data_drift_ok", record.drift_status), ("performance_ok", record.performance_status)):
            if status == "ERROR":
                event += 1
                failures.append(FailedCheck(event, check, record.day))
        labeled = [d.isoformat() for d in frames if d <= day]
        for request in plan_retrains(state, failures, labeled, spec.monitoring.retrain_cooldown_days):
            model = core.fit_model(spec, frames, dt.date.fromisoformat(request.as_of))
            retrains.append({"as_of": request.as_of, "reason": f"{request.check} ERROR on {request.incident_day}"})
            window.clear()
    return records, retrains


def policy_figures(spec: DatasetSpec, frames, as_of: dt.date, onset: dt.date | None, policies, watched=()) -> dict:
    """Monitoring figures of the served policy, and served quality under every policy in `policies`."""
    return summarise(spec, {p: run_policy(spec, frames, as_of, p, monitor=False) for p in policies}, onset, watched)


def summarise(spec: DatasetSpec, runs: dict[str, tuple[list[DayRecord], list[dict]]], onset: dt.date | None,
              watched=()) -> dict:
    served, _ = runs["served"]
    out = {"stable": stable_alerts(served, onset), "flag": onset_to_flag(served, onset, watched),
           "quality": {p: {"all": quality(r, spec.task), "after_onset": quality(r, spec.task, start=onset)
                           if onset else None} for p, (r, _) in runs.items()},
           "retrains": {p: len(log) for p, (_, log) in runs.items()}, "served_retrain_log": runs["served"][1]}
    if spec.is_classification:
        out["estimate"] = estimate_error(served, onset)
        out["performance_metric"] = served[0].performance_metric if served else None
    return out


# --------------------------------------------------------------------------------------------- families


def synthetic_task(family: str, scenario: str, seed: int, quick: bool) -> dict:
    spec = load_spec(SPECS[family])
    onset_day = spec.training.window_days + (10 if quick else 20)
    frames, truth = scenario_frames(family, spec, scenario, seed, onset_day,
                                    onset_day + (10 if quick else SERVED_DAYS_AFTER_ONSET))
    policies = ("never", "served") if quick else POLICIES
    figures = policy_figures(spec, frames, first_as_of(spec, frames), truth.onset, policies, truth.drifting_features)
    return {"scenario": scenario, "seed": seed, "onset": truth.onset, **figures}


def elec2_task(policy: str) -> tuple[list[DayRecord], list[dict]]:
    """One policy over the whole Elec2 history (a task of its own: the policies are independent)."""
    spec = load_spec(SPECS["elec2"])
    frames = labeled_days(spec, replay.load_history(ELEC2_CSV, spec))
    return run_policy(spec, frames, first_as_of(spec, frames), policy, monitor=False)


def elec2_summary(runs: dict[str, tuple[list[DayRecord], list[dict]]]) -> dict:
    """The Elec2 figures: the ground truth is the Victoria columns, constant in the first model's window."""
    spec = load_spec(SPECS["elec2"])
    frames = labeled_days(spec, replay.load_history(ELEC2_CSV, spec))
    as_of = first_as_of(spec, frames)
    dormant = core.dormant_features(core.fit_model(spec, frames, as_of))
    return {"scenario": "victoria_goes_live", "seed": None, "onset": ELEC2_CHANGE, "first_as_of": as_of,
            "watched_features": list(dormant), **summarise(spec, runs, ELEC2_CHANGE, dormant)}


def canary_task(family: str, seed: int, quick: bool) -> list[dict]:
    """Two canaries after a concept change: a better candidate (post-change window) against the stale
    pre-change champion, and a worse one (the same window, labels shuffled) against a post-change champion."""
    spec = load_spec(SPECS[family])
    window, delay = spec.training.window_days, spec.label_delay_days
    onset_day = window + 5
    horizon = 20 if quick else CANARY_HORIZON_DAYS
    frames, truth = scenario_frames(family, spec, CONCEPT[family], seed, onset_day, onset_day + window + delay + horizon)
    post_as_of = truth.onset + dt.timedelta(days=window - 1)
    first_day = post_as_of + dt.timedelta(days=delay + 1)  # trainable once its last labels land, serving next day
    stale = core.fit_model(spec, frames, truth.onset - dt.timedelta(days=1), version="stale")
    fresh = core.fit_model(spec, frames, post_as_of, version="fresh")
    rng = np.random.default_rng([seed, 99])

    def shuffled(train: pd.DataFrame) -> pd.DataFrame:
        return train.assign(**{spec.target: rng.permutation(train[spec.target].to_numpy())})

    worse = core.fit_model(spec, frames, post_as_of, version="shuffled", relabel=shuffled)
    out = []
    for kind, champion, candidate in (("better", stale, fresh), ("worse", fresh, worse)):
        run = core.run_canary(spec, champion, candidate, frames, first_day, horizon)
        out.append({"family": family, "seed": seed, "kind": kind, "outcome": run.outcome, "days": run.days,
                    "last_reasons": run.steps[-1]["reasons"] if run.steps else None, "steps": run.steps})
    return out


def with_leaks(spec: DatasetSpec, frames: dict, how: str, seed: int) -> tuple[DatasetSpec, dict]:
    """The spec and frames with a leaking feature: "single" = the target plus a little noise (a post-outcome
    field), "pair" = two features that sum to the target exactly, each alone uninformative."""
    rng = np.random.default_rng([seed, 7])
    y_std = float(np.std(np.concatenate([training.labels(spec, f) for f in frames.values()]))) or 1.0
    names = ["leak_total"] if how == "single" else ["leak_part_a", "leak_part_b"]
    out = {}
    for day, frame in frames.items():
        y = training.labels(spec, frame).astype(float)
        if how == "single":
            extra = {names[0]: y + rng.normal(0, 0.1 * y_std, len(y))}
        else:
            a = rng.normal(0, 3 * y_std, len(y))
            extra = {names[0]: a, names[1]: y - a}
        out[day] = frame.assign(**extra)
    added = tuple(FeatureSpec(n, "numeric") for n in names)
    return replace(spec, features=spec.features + added), out


def leakage_task(family: str, seed: int) -> dict:
    spec = load_spec(SPECS[family])
    if family == "elec2":
        history = replay.load_history(ELEC2_CSV, spec)
        frames = labeled_days(spec, {d: f for d, f in sorted(history.items())[:spec.training.window_days]})
    else:
        frames, _ = scenario_frames(family, spec, "stable", seed, 0, spec.training.window_days)
    as_of = max(frames)
    out = {"family": family, "seed": seed}
    for how in ("honest", "single", "pair"):
        s, f = (spec, frames) if how == "honest" else with_leaks(spec, frames, how, seed)
        candidate = core.fit_model(s, f, as_of)
        out[how] = core.leakage_verdict(s, core.train_frame(s, f, as_of), core.benchmark_frame(s, f, as_of),
                                        candidate, None)
    return out


def volume_task(family: str, seed: int, quick: bool) -> dict:
    """Every served day of a stable stream must pass the volume check; a day cut to 1/24 of its rows must not."""
    spec = load_spec(SPECS[family])
    served = 10 if quick else SERVED_DAYS_AFTER_ONSET
    if family == "elec2":
        frames = labeled_days(spec, dict(sorted(replay.load_history(ELEC2_CSV, spec).items())
                                         [:spec.training.window_days + served]))
    else:
        frames, _ = scenario_frames(family, spec, "stable", seed, 0, spec.training.window_days + served)
    as_of = first_as_of(spec, frames)
    window = [d for d in sorted(frames) if d <= as_of][-spec.training.window_days:]
    counts = {d.isoformat(): len(frames[d]) for d in window}  # what the champion's reference stores
    served_days = [d for d in sorted(frames) if d > as_of]
    ordinary = [core.volume_verdict(spec, counts, d, len(frames[d])) for d in served_days]
    cut = [core.volume_verdict(spec, counts, d, max(1, len(frames[d]) // 24)) for d in served_days]
    return {"family": family, "seed": seed, "rows_per_day": float(np.median(list(counts.values()))),
            "ordinary": volume_tally(ordinary, expect_blocked=False), "low": volume_tally(cut, expect_blocked=True)}


def _run(task: tuple):
    # One BLAS/OpenMP thread per worker: oversubscribed threads make small predictions slow.
    name, *args = task
    with threadpool_limits(limits=1):
        return {"synthetic": synthetic_task, "elec2": elec2_task, "canary": canary_task,
                "leakage": leakage_task, "volume": volume_task}[name](*args)


# ---------------------------------------------------------------------------------------------- output


def family_tasks(family: str, seeds: list[int], quick: bool) -> list[tuple]:
    if family in ("classification", "regression"):
        return [("synthetic", family, s, seed, quick) for s in SCENARIOS[family] for seed in seeds]
    if family == "elec2":
        return [("elec2", p) for p in (("never", "served") if quick else POLICIES)]
    if family == "canary":
        return [("canary", f, seed, quick) for f in ("classification", "regression") for seed in seeds]
    if family == "leakage":
        return [("leakage", f, seeds[0]) for f in ("classification", "regression", "elec2")]
    return [("volume", f, seeds[0], quick) for f in ("classification", "regression", "elec2")]


def collect(family: str, results: list, quick: bool) -> dict:
    if family == "elec2":
        policies = ("never", "served") if quick else POLICIES
        with threadpool_limits(limits=1):
            return {"runs": [elec2_summary(dict(zip(policies, results)))]}
    if family == "canary":
        runs = [r for pair in results for r in pair]
        by_family = {f: canary_tally([r for r in runs if r["family"] == f]) for f in ("classification", "regression")}
        return {"tally": by_family, "runs": runs}
    return {"runs": results}


def write_json(path: Path, payload: dict) -> None:
    """The figures as strict JSON: NaN becomes null, dates become text."""
    write_atomic(path, json.dumps(json_safe(payload), indent=2, allow_nan=False).encode())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, short horizons")
    parser.add_argument("--seeds", type=int, default=5, help="synthetic seeds (default 5)")
    parser.add_argument("--only", choices=FAMILIES, action="append", help="a scenario family (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON to this file")
    args = parser.parse_args(argv)
    argv_text = list(sys.argv[1:] if argv is None else argv)
    figures: dict = {"started": dt.datetime.now().isoformat(timespec="seconds"), "argv": argv_text}
    seeds = list(range(1 if args.quick else args.seeds))
    started = time.perf_counter()
    families = [f for f in FAMILIES if f in (args.only or FAMILIES)]
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        pending = {f: [pool.submit(_run, t) for t in family_tasks(f, seeds, args.quick)] for f in families}
        for family in families:
            figures[family] = collect(family, [p.result() for p in pending[family]], args.quick)
            command = "python -m mlops_assets.benchmarks.detection --only " + family + (" --quick" if args.quick else "")
            print_family(family, figures[family], load_spec(SPECS.get(family, SPECS["classification"])), command)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(f"\ntotal {figures['seconds']} s")
    if args.out:
        write_json(args.out, figures)
    return figures


if __name__ == "__main__":
    main()
