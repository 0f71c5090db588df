"""The detection benchmark's one doorway into the core: every call it makes into training, monitoring, gates and
serving goes through here, so a change of a core API is adapted in this file alone.

Plain functions, no Dagster, the same steps the assets run: train on the spec's window and build the version's
monitoring reference (candidate_model), the daily drift and performance reports (data_drift_report,
performance_report), the promotion gates (evaluation_report), the volume check on a day's rows, and the canary
step day by day over ledger rows from `score_batch` (batch_scoring, canary_step). A piece of the core that does
not exist yet answers None, and the benchmark prints "not available yet".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.evaluation import gates as gate_module
from mlops_assets.core.evaluation.report import evaluate, latency_ms_per_1k
from mlops_assets.core.monitoring import reports as monitoring
from mlops_assets.core.monitoring.drift import confirm_drift, drift_report, earlier_reports
from mlops_assets.core.monitoring.reference import MonitoringReference
from mlops_assets.core.serving import canary as canary_core
from mlops_assets.core.serving import scoring
from mlops_assets.core.serving.scoring import ServingModel, ledger_labels
from mlops_assets.core.training import trainer as training
from mlops_assets.core.training.manifest import plan_training_window

try:  # performance judged over a trailing window of rows
    from mlops_assets.core.monitoring import performance_window
except ImportError:  # a core that judges the day alone
    performance_window = None

NOT_AVAILABLE = "not available yet"


@dataclass
class Model:
    version: str
    as_of: dt.date
    pipeline: object
    reference: MonitoringReference | None  # None: built without one (served, never monitored)


@dataclass(frozen=True)
class Served:
    """What the monitoring of one served day says, and what serving it cost in errors."""

    drift_status: str  # OK, WARN or ERROR
    drift_share: float
    flagged: list[str]  # monitored features drifting beyond their floor
    effects: dict[str, float]
    performance_status: str
    performance: dict  # metric, realised, estimated (label-free, classification), limits when the core has them
    scores: np.ndarray


# ------------------------------------------------------------------------------------------------ training


def fit_model(spec: DatasetSpec, frames: dict[dt.date, pd.DataFrame], as_of: dt.date, *, version: str | None = None,
              relabel=None, with_reference: bool = True) -> Model:
    """Train on the spec's window ending at `as_of` and build the version's monitoring reference, as
    candidate_model does (most of a fit's cost: skip it, `with_reference=False`, where nothing is monitored).
    `relabel(train_frame) -> frame` makes deliberately damaged candidates (canaries)."""
    window = plan_training_window(as_of, list(frames), spec.training)
    train = pd.concat([frames[d] for d in window.train_days], ignore_index=True)
    validation = pd.concat([frames[d] for d in window.validation_days], ignore_index=True)
    if relabel is not None:
        train = relabel(train)
    model = training.train(spec, spec.training, train, git_commit="bench")
    if not with_reference:
        return Model(version or f"{spec.name}@{as_of.isoformat()}", as_of, model.pipeline, None)
    reference = monitoring.build_reference(spec, model.pipeline, train, validation,
                                           latency_ms_per_1k(model.pipeline, spec, validation))
    return Model(version or f"{spec.name}@{as_of.isoformat()}", as_of, model.pipeline, reference)


def benchmark_frame(spec: DatasetSpec, frames: dict[dt.date, pd.DataFrame], as_of: dt.date) -> pd.DataFrame:
    window = plan_training_window(as_of, list(frames), spec.training)
    return pd.concat([frames[d] for d in window.benchmark_days], ignore_index=True)


def train_frame(spec: DatasetSpec, frames: dict[dt.date, pd.DataFrame], as_of: dt.date) -> pd.DataFrame:
    window = plan_training_window(as_of, list(frames), spec.training)
    return pd.concat([frames[d] for d in window.train_days], ignore_index=True)


# ---------------------------------------------------------------------------------------------- monitoring


def monitor_day(spec: DatasetSpec, model: Model, day: dt.date, frame: pd.DataFrame,
                window: dict[str, pd.DataFrame], earlier: list[tuple[dt.date, pd.DataFrame]] = ()) -> Served:
    """Data drift of the day's rows and the day's performance report. `window` holds the served days' rows
    (columns score, label; labels landed) by ISO day, today's included, for a core that judges performance over
    a trailing window of rows. The report is judged twice, as the pipeline does: the morning after the day,
    before its labels land (label-free estimate, with earlier days' labels), and again once they have; the
    day's status is the worse of the two, since the retrain sensor sees both."""
    report = drift_report(model.reference.profile, frame, spec.monitoring)
    if report.day_status == "ERROR":  # as data_drift_report does: one of the previous days with rows must agree
        rows_of = {d.isoformat(): rows for d, rows in earlier}
        report = confirm_drift(report, earlier_reports(model.reference.profile, list(rows_of), rows_of.__getitem__,
                                                       spec.monitoring))
    scores = training.predict_scores(model.pipeline, spec, frame)
    labels = training.labels(spec, frame)
    window[day.isoformat()] = pd.DataFrame({"score": scores, "label": labels.astype(float)})
    flagged = [f for f in report.drifted_features if spec.feature(f).monitor]
    effects = {f.feature: round(float(f.effect_size), 4) for f in report.features}
    performance = _performance(spec, model, day, window)
    return Served(report.status, float(report.drift_share), flagged, effects, performance["status"], performance,
                  scores)


def _performance(spec: DatasetSpec, model: Model, day: dt.date, window: dict[str, pd.DataFrame]) -> dict:
    """Status, realised figure and the label-free estimate's figure of the same rows (classification)."""
    policy, today = spec.monitoring, window[day.isoformat()]
    if performance_window is None:  # the day alone, fixed relative drops
        labelled = monitoring.performance_day(spec, model.reference, today["score"].to_numpy(),
                                              today["label"].to_numpy(), len(today), policy)
        blind = monitoring.performance_day(spec, model.reference, today["score"].to_numpy(), None, len(today), policy)
        estimate = blind.estimated if spec.is_classification else None
        realised = (float(np.mean((today["score"] >= spec.deployment.decision_threshold) == today["label"]))
                    if spec.is_classification else labelled.realised)
        return {"metric": "accuracy_at_threshold" if spec.is_classification else "rmse", "window_rows": len(today),
                "status": _worst(labelled.status, blind.status), "realised": realised, "estimated": estimate}
    unlabelled = {day.isoformat()}  # the morning after the day: its own labels not in yet
    later = performance_window.collect_window(day.isoformat(), lambda d: window.get(d), policy)
    blind_rows = later.assign(label=np.where(later["day"].isin(unlabelled), np.nan, later["label"]))
    blind = performance_window.judge_performance(spec, model.reference, blind_rows, policy)
    landed = performance_window.judge_performance(spec, model.reference, later, policy)
    estimate = landed.estimated - landed.estimate_correction if landed.estimated is not None else None
    return {"metric": landed.metric, "window_rows": landed.window_rows, "status": _worst(blind.status, landed.status),
            "realised": landed.realised, "estimated": estimate, "limits_source": landed.limits_source}


def _worst(*statuses: str) -> str:
    return max(statuses, key=("OK", "WARN", "ERROR").index)


def dormant_features(model: Model) -> tuple[str, ...]:
    """Numeric features constant in the training rows (Elec2's Victoria columns before they went live)."""
    return tuple(p.name for p in model.reference.profile.features
                 if p.kind == "numeric" and p.count and p.std <= 1e-9 * abs(p.mean))


# ------------------------------------------------------------------------------------------------- gates


def leakage_verdict(spec: DatasetSpec, train: pd.DataFrame, benchmark: pd.DataFrame, candidate: Model,
                    champion: Model | None) -> dict | None:
    """Whether the promotion gates block `candidate` for leakage, with the gates' messages; None while the core
    only checks row keys (a leaking feature cannot be seen that way)."""
    try:
        from mlops_assets.core.evaluation.leakage import analyse_target_leakage
    except ImportError:
        return None
    kwargs = {"seed": spec.training.seed}
    if hasattr(spec.gates, "leakage_sample_rows"):
        kwargs["sample_rows"] = spec.gates.leakage_sample_rows
    analysis = analyse_target_leakage(spec, train, benchmark, **kwargs)
    report = evaluate(spec, candidate.pipeline, champion.pipeline if champion else None, benchmark, spec.gates)
    result = gate_module.evaluate_gates(report, spec.gates, champion is not None,
                                        training_keys=train[spec.key_columns],
                                        benchmark_keys=benchmark[spec.key_columns], leakage=analysis)
    leaks = [r for r in result.results if "leak" in r.name]
    return {"blocked": any(not r.passed for r in leaks),
            "gates": {r.name: {"passed": r.passed, "message": r.message} for r in leaks}}


def volume_verdict(spec: DatasetSpec, counts: dict[str, int], day: dt.date, rows: int) -> dict | None:
    """Whether ingestion's volume check blocks a day of `rows` rows, the expectation coming from the champion's
    training days' counts (`counts`: ISO day -> rows); None while the core has no volume check."""
    try:
        from mlops_assets.core.ingestion.volume import judge_volume
    except ImportError:
        return None
    verdict = judge_volume(rows, day, counts, "the champion's training window", spec.ingestion)
    return {"blocked": not verdict.passed, "message": verdict.message}


# ----------------------------------------------------------------------------------------------- canary


@dataclass
class CanaryRun:
    outcome: str  # "complete", "rollback", or "pending" when the horizon ended first
    days: int  # days served from the canary's first day to the decision (or the horizon)
    steps: list[dict] = field(default_factory=list)  # one per judged window: day, action, reasons


def run_canary(spec: DatasetSpec, champion: Model, candidate: Model, frames: dict[dt.date, pd.DataFrame],
               first_day: dt.date, max_days: int) -> CanaryRun:
    """Serve `candidate` as a canary beside `champion` from `first_day`, one day at a time, through the serving
    core: `score_batch` writes the day's ledger rows at the current share, and each morning `step_canary`
    judges the window with the labels landed by then (a day's labels land `label_delay_days` after it)."""
    if candidate.version == champion.version:
        candidate = replace(candidate, version=candidate.version + "-canary")
    ledger: dict[dt.date, pd.DataFrame] = {}
    timings: dict[dt.date, object] = {}
    start = first_day - dt.timedelta(days=1)
    step = canary_core.step_canary(None, canary_version=candidate.version, champion_version=champion.version,
                                   day=start.isoformat(), spec=spec, read_window=_never, actor="bench")
    state, run = step.new_state, CanaryRun("pending", 0)
    days = [d for d in sorted(frames) if first_day <= d < first_day + dt.timedelta(days=max_days)]
    for day in days:
        ledger[day], timings[day] = _score(frames[day], spec, champion, candidate, state, day)
        landed = day + dt.timedelta(days=1 - spec.label_delay_days)  # the step runs the morning after `day`

        def read_window(window_days: list[str]) -> canary_core.CanaryWindow:
            chosen = [dt.date.fromisoformat(d) for d in window_days]
            rows = pd.concat([ledger[d] for d in chosen if d in ledger], ignore_index=True)
            labelled = [frames[d] for d in chosen if d in frames and d <= landed]
            labels = ledger_labels(pd.concat(labelled, ignore_index=True), spec) if labelled else None
            latency = tuple(timings[d] for d in chosen if timings.get(d) is not None)
            if "latency" in canary_core.CanaryWindow.__dataclass_fields__:
                return canary_core.CanaryWindow(rows, labels, candidate.reference.profile, latency)
            return canary_core.CanaryWindow(rows, labels, candidate.reference.profile)

        step = canary_core.step_canary(state, canary_version=candidate.version, champion_version=champion.version,
                                       day=day.isoformat(), spec=spec, read_window=read_window, actor="bench")
        run.days = (day - first_day).days + 1
        if step.action in ("hold", "ramp", "complete", "rollback"):
            run.steps.append({"day": day.isoformat(), "action": step.action, "share": step.metadata.get("share"),
                              "reasons": step.metadata.get("reasons")})
        if step.new_state is not None:
            state = step.new_state
        if step.action in ("complete", "rollback"):
            run.outcome = step.action
            break
    return run


def _score(frame: pd.DataFrame, spec: DatasetSpec, champion: Model, candidate: Model, state, day: dt.date) -> tuple:
    """The day's ledger rows and, when the core times both models in CPU, the batch's timings."""
    args = (frame, spec, ServingModel(champion.version, champion.pipeline),
            ServingModel(candidate.version, candidate.pipeline))
    kwargs = dict(canary_share=state.share, salt=state.plan.salt, scored_at=pd.Timestamp(day, tz="UTC"))
    if hasattr(scoring, "score_batch_timed"):
        scored = scoring.score_batch_timed(*args, **kwargs)
        return scored.rows, scored.latency
    return scoring.score_batch(*args, **kwargs), None


def _never(days):  # the first step only starts the canary; it reads no window
    raise AssertionError("a starting canary reads no window")
