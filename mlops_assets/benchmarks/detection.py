"""Drift detection and retraining figures, printed as tables (`python -m mlops_assets.benchmarks.detection`).

Plain core functions, no Dagster; the same steps the assets run: a model trained on the spec's window, its
monitoring reference (`monitoring.build_reference`), the daily `drift_report` and `performance_day`, and
`retraining.plan_retrains` for the retrain decisions.

1. Synthetic scenarios (data/specs/synthetic.toml): a model on the first `window_days` stable days, then one
   drift report a day. Detection delay (days from onset to the first day every drifting feature is flagged
   and the status is at least WARN), precision/recall of the flagged features after onset, false alarms on
   stable days, and the realised accuracy before/after onset (concept drift and prior shift).
2. Elec2 (data/specs/elec2.toml): the Victoria columns are constant until 1997-05-04 (data/elec2/README.md).
   Daily effect sizes before the change, ERROR days before it, and the delay to the first ERROR after it.
3. Elec2 accuracy of the daily champion, deciding at the spec's decision_threshold: never retrained, retrained
   weekly on the trailing window, retrained on a drift ERROR (and on drift or performance ERROR, as the retrain
   sensor does), all with the spec's cooldown. Every retrained model is promoted: the promotion gates are not
   simulated.

Options: --quick (one synthetic seed; on Elec2 only the never-retrained and drift-triggered policies),
--seeds N (default 5), --onset DAY, --served-days N, --only synthetic|elec2, --jobs N (worker processes,
default 2), --out FILE (the same figures as JSON). The full run takes about 3 minutes on 2 idle cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from mlops_assets.benchmarks.detection_report import print_elec2, print_synthetic
from mlops_assets.core.features import engineering as features
from mlops_assets.core.monitoring import reports as monitoring
from mlops_assets.demo import history as replay
from mlops_assets.demo import synthetic
from mlops_assets.core.training import trainer as training
from mlops_assets.core.training.manifest import plan_training_window
from mlops_assets.core.io.atomic import write_atomic
from mlops_assets.core.io.json_safe import json_safe
from mlops_assets.core.monitoring.drift import drift_report
from mlops_assets.core.monitoring.drift_profile import ReferenceProfile
from mlops_assets.core.monitoring.reference import MonitoringReference
from mlops_assets.core.evaluation.report import latency_ms_per_1k
from mlops_assets.core.monitoring.retraining import FailedCheck, RetrainState, plan_retrains
from mlops_assets.core.config.spec import DatasetSpec, load_spec
from mlops_assets.core.ingestion.validation import read_batch

DATA = Path(__file__).resolve().parents[2] / "data"
ELEC2_CHANGE = dt.date(1997, 5, 4)  # the Victoria columns go live (data/elec2/README.md)
SYNTHETIC_SCENARIOS = ("stable", "gradual_shift", "abrupt_shift", "concept_drift", "prior_shift")
POLICIES = ("never", "weekly", "drift", "drift_or_performance")


# ----------------------------------------------------------------------------------------------- serving


@dataclass
class ServingModel:
    as_of: dt.date
    pipeline: object
    reference: MonitoringReference
    profile: ReferenceProfile
    dormant: tuple[str, ...]  # numeric features constant in the training rows: no importance to show


@dataclass
class DayRecord:
    day: str
    model_as_of: str
    status: str  # data drift: OK, WARN or ERROR
    drift_share: float
    flagged: list[str]
    effects: dict[str, float]
    rows: int
    correct: int  # rows whose decision (at the spec's decision_threshold) matched the label
    performance_status: str
    performance_drop: float = 0.0  # validation accuracy of the serving model minus today's
    accuracy: float = field(init=False)

    def __post_init__(self):
        self.accuracy = self.correct / self.rows if self.rows else float("nan")


def fit_model(spec: DatasetSpec, frames: dict[dt.date, pd.DataFrame], as_of: dt.date) -> ServingModel:
    """Train on the window ending at `as_of` and build its monitoring reference, as candidate_model does."""
    window = plan_training_window(as_of, list(frames), spec.training)
    train = pd.concat([frames[d] for d in window.train_days], ignore_index=True)
    validation = pd.concat([frames[d] for d in window.validation_days], ignore_index=True)
    model = training.train(spec, spec.training, train, git_commit="bench")
    reference = monitoring.build_reference(spec, model.pipeline, train, validation,
                                           latency_ms_per_1k(model.pipeline, spec, validation))
    profile = reference.profile
    dormant = tuple(p.name for p in profile.features  # as drift.py judges a constant reference
                    if p.kind == "numeric" and p.count and p.std <= 1e-9 * abs(p.mean))
    return ServingModel(as_of, model.pipeline, reference, profile, dormant)


def serve_day(spec: DatasetSpec, model: ServingModel, day: dt.date, frame: pd.DataFrame) -> DayRecord:
    report = drift_report(model.profile, frame, spec.monitoring)
    scores = training.predict_scores(model.pipeline, spec, frame)
    labels = training.labels(spec, frame)
    perf = monitoring.performance_day(spec, model.reference, scores, labels, len(frame), spec.monitoring)
    correct = int(np.sum((scores >= spec.deployment.decision_threshold) == labels))
    flagged = [f for f in report.drifted_features if spec.feature(f).monitor]  # unmonitored ones weigh 0
    effects = {f.feature: round(float(f.effect_size), 4) for f in report.features}
    return DayRecord(day.isoformat(), model.as_of.isoformat(), report.status, report.drift_share, flagged, effects,
                     len(frame), correct, perf.status, round(perf.drop, 4))


def run_policy(spec: DatasetSpec, frames: dict[dt.date, pd.DataFrame], first_as_of: dt.date, policy: str,
               last_day: dt.date | None = None) -> tuple[list[DayRecord], list[dict]]:
    """Serve every day after `first_as_of` with the current champion; retrain as `policy` says. A retrain as
    of day D (labels of D land on D + 1, with the monitoring of D) serves from D + 1."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {POLICIES}")
    days = [d for d in sorted(frames) if d > first_as_of and (last_day is None or d <= last_day)]
    model = fit_model(spec, frames, first_as_of)
    state, event, records, retrains = RetrainState(), 0, [], []
    triggers = {"drift": ("data_drift_ok",), "drift_or_performance": ("data_drift_ok", "performance_ok")}
    for day in days:
        if policy == "weekly" and (day - model.as_of).days > 7:
            model = fit_model(spec, frames, day - dt.timedelta(days=1))
            retrains.append({"as_of": model.as_of.isoformat(), "reason": "weekly"})
        record = serve_day(spec, model, day, frames[day])
        records.append(record)
        if policy not in triggers:
            continue
        failures = []
        for check, status in (("data_drift_ok", record.status), ("performance_ok", record.performance_status)):
            if check in triggers[policy] and status == "ERROR":
                event += 1
                failures.append(FailedCheck(event, check, record.day))
        labeled = [d.isoformat() for d in frames if d <= day]
        for request in plan_retrains(state, failures, labeled, spec.monitoring.retrain_cooldown_days):
            model = fit_model(spec, frames, dt.date.fromisoformat(request.as_of))
            retrains.append({"as_of": request.as_of, "reason": f"{request.check} ERROR on {request.incident_day}"})
    return records, retrains


def accuracy(records: list[DayRecord], start: dt.date | None = None, end: dt.date | None = None) -> float:
    first, last = start.isoformat() if start else "", end.isoformat() if end else "9999"
    chosen = [r for r in records if first <= r.day <= last]
    rows = sum(r.rows for r in chosen)
    return sum(r.correct for r in chosen) / rows if rows else float("nan")


# --------------------------------------------------------------------------------------------- synthetic


def labeled_frame(spec: DatasetSpec, batch: synthetic.DayBatch) -> pd.DataFrame:
    return features.join_labels(features.engineer(batch.features, spec), batch.labels, spec)[0]


def synthetic_run(spec: DatasetSpec, scenario: str, seed: int, onset_day: int, served_days: int,
                  rows_per_day: int = 500) -> dict:
    """One scenario and seed: a model on the first window, then `served_days` days of monitoring."""
    window = spec.training.window_days
    cfg = synthetic.ScenarioConfig(scenario, spec.start_date, window + served_days, onset_day=onset_day,
                                   rows_per_day=rows_per_day, seed=seed)
    truth = synthetic.ground_truth(spec, cfg)
    frames = {b.day: labeled_frame(spec, b) for b in synthetic.generate_days(spec, cfg)}
    model = fit_model(spec, frames, cfg.day(window - 1))
    records = [serve_day(spec, model, day, frame) for day, frame in frames.items() if day > model.as_of]
    return score_scenario(records, truth)


def score_scenario(records: list[DayRecord], truth: synthetic.GroundTruth) -> dict:
    """Detection figures against the scenario's ground truth (micro-averaged over the days after onset)."""
    onset = truth.onset.isoformat() if truth.onset else "9999-12-31"
    pre = [r for r in records if r.day < onset]
    post = [r for r in records if r.day >= onset]
    drifting = set(truth.drifting_features)
    out = {
        "seed": truth.seed, "served_days_before_onset": len(pre), "served_days_after_onset": len(post),
        "alarm_days_before_onset": sum(r.status != "OK" for r in pre),
        "wrong_flags_before_onset": sum(len(r.flagged) for r in pre),
        "alarm_days_after_onset": sum(r.status != "OK" for r in post),
        "error_days_after_onset": sum(r.status == "ERROR" for r in post),
        "accuracy_before_onset": accuracy(pre), "accuracy_after_onset": accuracy(post),
        "performance_alarm_days_before_onset": sum(r.performance_status != "OK" for r in pre),
        "performance_error_days_before_onset": sum(r.performance_status == "ERROR" for r in pre),
        "performance_error_days_after_onset": sum(r.performance_status == "ERROR" for r in post),
        "flagged_after_onset": sorted({f for r in post for f in r.flagged}),
    }
    if drifting:
        index = {r.day: i for i, r in enumerate(post)}
        hit = next((r for r in post if drifting <= set(r.flagged) and r.status != "OK"), None)
        flagged = sum(len(r.flagged) for r in post)
        right = sum(len(drifting & set(r.flagged)) for r in post)
        out.update(
            delay_days=index[hit.day] if hit else None, status_at_detection=hit.status if hit else None,
            precision=right / flagged if flagged else float("nan"), recall=right / (len(drifting) * len(post)),
            exact_days=sum(set(r.flagged) == drifting for r in post), drifting=sorted(drifting))
    return out


def _synthetic_task(args: tuple) -> dict:
    spec_path, scenario, seed, onset_day, served_days = args
    with threadpool_limits(limits=1):
        return synthetic_run(load_spec(spec_path), scenario, seed, onset_day, served_days)


def synthetic_figures(spec_path: Path, seeds: list[int], onset_day: int, served_days: int, pool) -> dict:
    tasks = [(spec_path, s, seed, onset_day, served_days) for s in SYNTHETIC_SCENARIOS for seed in seeds]
    runs = list(pool.map(_synthetic_task, tasks))
    return {s: [r for (_, scenario, *_), r in zip(tasks, runs) if scenario == s] for s in SYNTHETIC_SCENARIOS}


# ------------------------------------------------------------------------------------------------ Elec2


def elec2_frames(spec: DatasetSpec, csv_path: Path) -> dict[dt.date, pd.DataFrame]:
    return labeled_days(spec, replay.load_history(csv_path, spec))


def labeled_days(spec: DatasetSpec, history: dict[dt.date, pd.DataFrame]) -> dict[dt.date, pd.DataFrame]:
    """Labeled examples per day, through the same read/engineer/join steps as replay.load_labeled_days (typed
    once over the whole history, then split by day: the steps are row-wise, so the rows are the same)."""
    whole = pd.concat(history.values(), ignore_index=True)
    batch = read_batch(replay._csv(whole[spec.batch_columns]), "history", "history", spec, "features")
    labels = read_batch(replay._csv(whole[spec.label_columns]), "history", "history", spec, "labels")
    joined = features.join_labels(features.engineer(batch, spec), labels, spec)[0]
    return {day: frame.reset_index(drop=True) for day, frame in replay.split_by_day(joined, spec).items()}


def effect_quantiles(records: list[DayRecord], names: list[str]) -> dict:
    out = {}
    for name in names:
        x = np.array([r.effects[name] for r in records if np.isfinite(r.effects.get(name, np.nan))])
        if len(x):
            out[name] = {q: round(float(np.quantile(x, p)), 3)
                         for q, p in (("p50", .5), ("p95", .95), ("p99", .99), ("max", 1))}
    return out


def in_window_effects(spec: DatasetSpec, frames: dict[dt.date, pd.DataFrame], model: ServingModel) -> dict:
    """Each training day of the model against its own profile: the day-to-day variation an ordinary day has."""
    window = plan_training_window(model.as_of, list(frames), spec.training)
    records = [DayRecord(d.isoformat(), "", "", 0.0, [], {f.feature: float(f.effect_size) for f in
                         drift_report(model.profile, frames[d], spec.monitoring).features}, 0, 0, "")
               for d in window.train_days]
    return effect_quantiles(records, monitored(spec))


def monitored(spec: DatasetSpec) -> list[str]:
    return [f.name for f in spec.features if f.monitor]


def detection(records: list[DayRecord], change: dt.date, dormant: tuple[str, ...]) -> dict:
    before = [r for r in records if r.day < change.isoformat()]
    after = [r for r in records if r.day >= change.isoformat()]
    first = next((r for r in after if r.status == "ERROR" and set(dormant) & set(r.flagged)), None)
    three_months = (change - dt.timedelta(days=89)).isoformat()
    return {
        "days_before_change": len(before),
        "error_days_before_change": sum(r.status == "ERROR" for r in before),
        "warn_days_before_change": sum(r.status == "WARN" for r in before),
        "error_days_90d_before_change": sum(r.status == "ERROR" for r in before if r.day >= three_months),
        "first_error_after_change": first.day if first else None,
        "delay_days": (dt.date.fromisoformat(first.day) - change).days if first else None,
        "flagged_at_detection": first.flagged if first else None,
        "error_days_first_8_weeks_after_change": sum(r.status == "ERROR" for r in after[:56]),
        "error_days_after_change": sum(r.status == "ERROR" for r in after),
    }


def _first_as_of(spec: DatasetSpec, frames: dict) -> dt.date:
    return min(frames) + dt.timedelta(days=spec.training.window_days - 1)


def elec2_policy(spec_path: Path, csv_path: Path, policy: str) -> dict:
    """One retraining policy over the whole history (a process of its own: they are independent)."""
    with threadpool_limits(limits=1):
        spec = load_spec(spec_path)
        frames = elec2_frames(spec, csv_path)
        started = time.perf_counter()
        first_as_of = _first_as_of(spec, frames)
        records, retrains = run_policy(spec, frames, first_as_of, policy)
        dormant = fit_model(spec, frames, first_as_of).dormant
    change, settled = ELEC2_CHANGE.isoformat(), (ELEC2_CHANGE + dt.timedelta(weeks=9)).isoformat()
    before = [r for r in records if r.day < change]
    return {
        "seconds": round(time.perf_counter() - started, 1), "retrains": len(retrains),
        "retrains_before_change": sum(r["as_of"] < change for r in retrains),
        "accuracy_all": accuracy(records), "accuracy_before_change": accuracy(before),
        "accuracy_from_change": accuracy(records, start=ELEC2_CHANGE),
        "accuracy_1998": accuracy(records, start=dt.date(1998, 1, 1)),
        "served_days": len(records), "detection": detection(records, ELEC2_CHANGE, dormant),
        "performance_error_days_before_change": sum(r.performance_status == "ERROR" for r in before),
        "performance_error_days_from_change": sum(r.performance_status == "ERROR" for r in records if r.day >= change),
        "effects_before_change": effect_quantiles(before, monitored(spec)),
        # by then a trailing window holds only live Victoria data
        "effects_9w_after_change": effect_quantiles([r for r in records if r.day >= settled], monitored(spec)),
        "retrain_log": retrains,
    }


def elec2_figures(spec_path: Path, csv_path: Path, policies: tuple[str, ...], pool) -> dict:
    futures = {p: pool.submit(elec2_policy, spec_path, csv_path, p) for p in policies}
    with threadpool_limits(limits=1):
        spec = load_spec(spec_path)
        frames = elec2_frames(spec, csv_path)
        first = fit_model(spec, frames, _first_as_of(spec, frames))
        out = {"first_as_of": first.as_of.isoformat(), "dormant_features": list(first.dormant),
               "weights": {k: round(v, 3) for k, v in first.profile.weights.items()},
               "in_window_effects": in_window_effects(spec, frames, first)}
    out["policies"] = {p: f.result() for p, f in futures.items()}
    return out


# ---------------------------------------------------------------------------------------------- output


def write_json(path: Path, payload: dict) -> None:
    """The figures as strict JSON: NaN becomes null, dates become text."""
    text = json.dumps(json_safe(payload), indent=2, allow_nan=False)
    write_atomic(path, text.encode())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one synthetic seed; Elec2 drift-triggered policies only")
    parser.add_argument("--seeds", type=int, default=5, help="synthetic seeds (default 5)")
    parser.add_argument("--onset", type=int, default=40, help="synthetic onset day (default 40)")
    parser.add_argument("--served-days", type=int, default=60, help="synthetic days monitored after training")
    parser.add_argument("--only", choices=("synthetic", "elec2"))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON to this file")
    args = parser.parse_args(argv)
    figures: dict = {"started": dt.datetime.now().isoformat(timespec="seconds"),
                     "argv": list(sys.argv[1:] if argv is None else argv)}
    started = time.perf_counter()
    # Each worker runs with one BLAS/OpenMP thread: oversubscribed threads make small predictions slow.
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        if args.only in (None, "synthetic"):
            spec_path = DATA / "specs" / "synthetic.toml"
            seeds = list(range(1 if args.quick else args.seeds))
            figures["synthetic"] = synthetic_figures(spec_path, seeds, args.onset, args.served_days, pool)
            print_synthetic(figures["synthetic"], load_spec(spec_path), args.onset)
        if args.only in (None, "elec2"):
            spec_path = DATA / "specs" / "elec2.toml"
            policies = ("never", "drift") if args.quick else POLICIES
            figures["elec2"] = elec2_figures(spec_path, DATA / "elec2" / "elec2_timestamped.csv", policies, pool)
            print_elec2(figures["elec2"], load_spec(spec_path), ELEC2_CHANGE)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(f"\ntotal {figures['seconds']} s")
    if args.out:
        write_json(args.out, figures)
    return figures


if __name__ == "__main__":
    main()
