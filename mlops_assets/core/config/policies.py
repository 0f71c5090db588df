"""The policies of a dataset spec: how candidates are trained, gated, monitored and deployed.

Each is a frozen dataclass whose defaults are the documented defaults; `spec.py` loads them from the spec's
[training], [gates], [ingestion], [monitoring], [deployment] and [slo] tables (a key's type is its default's type) and runs the
checks below, which need more than a type.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrainingPolicy:
    """How candidates are trained: the data window, the estimator and its parameters, the seed."""

    window_days: int = 28
    validation_days: int = 3
    benchmark_days: int = 3
    estimator: str = "hist_gradient_boosting"
    params: dict = field(default_factory=dict)
    seed: int = 42


@dataclass(frozen=True)
class GatePolicy:
    """Promotion gates, fixed in the spec so they are known before any candidate is trained."""

    key_metric: str = ""  # default: roc_auc for classification, rmse for regression
    min_improvement: float = 0.0  # candidate must beat champion by this much beyond the CI noise
    # No slice's key metric may be worse than the champion's by more, beyond its paired bootstrap noise: absolute
    # for bounded scores (AUC, accuracy), a fraction of the champion's value for error metrics (MAE, RMSE).
    max_slice_drop: float = 0.05
    max_latency_ms_per_1k: float = 500.0
    max_artifact_mb: float = 50.0
    max_calibration_error: float = 0.1  # expected calibration error (classification)
    floors: dict = field(default_factory=dict)  # absolute floors for the first model, e.g. {roc_auc = 0.6}
    bootstrap_samples: int = 200
    min_slice_rows: int = 30  # slices with fewer benchmark rows are reported but not gated (too noisy)
    # Target leakage (core/evaluation/leakage.py), on held-out lower 95 % confidence bounds: a feature alone, or a
    # linear fit of the numeric ones, at or above this is near-deterministic of the target. Classification (ROC
    # AUC): honest Elec2 nswprice, from which the target is defined, reaches 0.994 alone (bound 0.985).
    max_leakage_auc: float = 0.999
    # Regression (R²): 0.98 leaves 2 % of the target's variance, a residual of 14 % of its standard deviation.
    max_leakage_r2: float = 0.98
    leakage_error_ratio: float = 0.1
    leakage_sample_rows: int = 20000  # rows sampled from each of training and benchmark for the analysis


@dataclass(frozen=True)
class IngestionPolicy:
    """The day's volume check (core/ingestion/volume.py): rows per day against the expected volume."""

    # A day fails below center - volume_z x spread, the spread from the baseline days' own counts (at least a
    # Poisson count's). 4: a Poisson feed of 24 rows a day has a bound of 4.4 (1 row fails; an ordinary day falls
    # below it with odds under 1e-6); a 1 %-spread feed of 5 million blocks 4.8 million, not 4.9 million.
    volume_z: float = 4.0
    volume_min_days: int = 7  # fewer baseline days and the volume is reported, not judged
    volume_history_days: int = 56  # before any champion: the accepted days (up to this many) before the day


@dataclass(frozen=True)
class MonitoringPolicy:
    """Thresholds for the daily monitoring reports; WARN below `error_*`, ERROR at or above."""

    drift_alpha: float = 0.05  # false-discovery rate across features
    # Each feature's drift floor comes from its reference's day-to-day spread (core/monitoring/drift_floors.py);
    # this is the least floor: Wasserstein in reference stds (numeric), Jensen-Shannon (categorical). A shift
    # below it is not worth an alert however quiet the reference (a million rows make any shift significant).
    drift_min_effect: float = 0.1
    # Floor for a numeric feature that was constant in the reference (e.g. an imputed source): it has no std
    # and no spread, so its effect is relative to the constant.
    constant_min_effect: float = 0.1
    drift_floors: dict = field(default_factory=dict)  # feature -> floor, overriding the measured one
    # Importance weight that the drifting features must carry for an ERROR (a retrain); any monitored feature
    # drifting beyond its floor is at least a WARN, whatever its weight.
    error_drift_share: float = 0.3
    # Performance is judged over a trailing window of whole days holding at least this many rows (fewer when
    # performance_max_days is reached first). At 500 rows accuracy's sampling std is at most 0.022 (0.018 at
    # 80 % accuracy) and ROC AUC's about 0.02: a drop of a few points shows, where one day of 24-165 rows
    # mostly shows noise. A day of 500 rows or more is a window on its own.
    performance_min_rows: int = 500
    # The cap, in calendar days: two weeks covers weekly cycles and keeps a drop from being diluted by long
    # history (a drop shows in full within two windows), at 20 rows a day as at 5 million.
    performance_max_days: int = 14
    # Limits in standard deviations of the metric over reference chunks of the window's size, on the worse
    # side of the reference's level (NannyML's default k is 3).
    performance_warn_std: float = 2.0
    performance_error_std: float = 3.0
    warn_cost_ratio: float = 2.0
    error_cost_ratio: float = 5.0
    retrain_cooldown_days: int = 7


@dataclass(frozen=True)
class DeploymentPolicy:
    """How a new version reaches traffic: the decision threshold, the canary ramp and the guardrails that stop
    it. A canary copies these when it starts, so editing the spec later does not move a running canary's goalposts."""

    # Classification: a score at or above it decides "positive". The one threshold: serving decides by it, and
    # evaluation (F1, accuracy) and monitoring (baseline, estimated and realised accuracy) count decisions at it.
    decision_threshold: float = 0.5
    canary_steps: list = field(default_factory=lambda: [0.05, 0.25, 0.5, 1.0])  # shares of entities, ending at 1
    canary_window_days: int = 2  # least days of traffic judged at each step (a step holds longer until decided)
    # Every guardrail below decides on a 95 % interval: beyond the limit rolls back, within it passes, between holds.
    # Realised key metric, how far the canary may trail the champion on the same labelled rows: in absolute units
    # for bounded scores (2 points of AUC or accuracy), as a share of the champion's value for error metrics
    # (2 % more MAE, RMSE or log loss), so one number means the same for any target's units.
    max_metric_drop: float = 0.02
    # KS of the canary's live scores vs its own training scores (serving skew): a canary is a fresh retrain, so its
    # live inputs resemble its training rows; 30 % of the score mass moved, beyond sampling noise, is a unit error,
    # a missing feature or a stale transform rather than a week of ordinary change.
    max_score_shift: float = 0.3
    # Canary / champion CPU time per row on the same rows: twice the cost is a regression worth stopping; a
    # retrain of the same estimator differs by far less, and CPU time on interleaved repeats is not wall-clock noise.
    max_latency_ratio: float = 2.0
    # Labelled rows below which the metric's bootstrap interval is not trusted (a percentile bootstrap on fewer
    # understates its own width): the step holds.
    min_rows_per_step: int = 30
    auto_canary: bool = False  # a candidate that passes its gates starts as a canary without a person


@dataclass(frozen=True)
class SloPolicy:
    """Loop-health SLOs: how far each part of the unattended loop may fall behind before its check fails.

    Every threshold is in days of the loop's clock (see core/monitoring/slo.py for what "now" is), never in
    rows: a feed of 20 rows a day and one of 5 million stall the same way. The defaults allow one late day
    (a file or a scoring run of millions of rows still on its way when the check runs) and flag a stall on the
    second morning it lasts.
    """

    # Data freshness: the last complete day (yesterday) may still be missing; the day before may not.
    max_ingest_delay_days: int = 1
    # Prediction staleness: how many days the last scored day may trail the last complete day.
    max_scoring_delay_days: int = 1
    # Label coverage: a day's labels are due label_delay_days after it; this many days late still passes.
    label_grace_days: int = 1
    # Retraining cadence: days a retrain request may stay unanswered by a candidate trained on the data it
    # asked for, counted from its incident day plus label_delay_days (a realised-performance incident is only
    # known once its labels land).
    max_retrain_wait_days: int = 2
    # Champion age (WARN): days between the champion's as-of date (the last day of data it learnt from) and now.
    # A month: room for a retrain to pass its gates and ramp through a canary (two to three weeks from as-of date
    # to champion in the Elec2 demo), short enough that a loop no longer producing champions shows within one.
    max_champion_age_days: int = 30
    # Hour (UTC) of the daily loop-health evaluation, after the 06:00 scoring schedule; also the deadline of
    # Dagster's own freshness check on raw_batch for models without an end_date (yesterday's file by then).
    evaluation_hour_utc: int = 7


# ------------------------------------------------------------------------------------------- checks


def training_problems(policy: TrainingPolicy) -> list[str]:
    if policy.validation_days + policy.benchmark_days >= policy.window_days:
        return ["training: window_days must exceed validation_days + benchmark_days"]
    return []


def monitoring_problems(policy: MonitoringPolicy) -> list[str]:
    out = [f"monitoring.drift_floors.{name}: expected a number >= 0, got {floor!r}"
           for name, floor in policy.drift_floors.items()
           if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not floor >= 0]
    return out  # ranges and the WARN-before-ERROR order: rules.py


def deployment_problems(policy: DeploymentPolicy) -> list[str]:
    steps = policy.canary_steps
    out = []
    if not steps or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in steps):
        out.append(f"deployment.canary_steps: expected a non-empty list of shares, got {steps!r}")
    elif not (all(0 < x <= 1 for x in steps) and all(a < b for a, b in zip(steps, steps[1:])) and steps[-1] == 1):
        out.append(f"deployment.canary_steps: shares must rise strictly within (0, 1] and end at 1, got {steps!r}")
    if policy.decision_threshold > 1:
        out.append(f"deployment.decision_threshold: a probability threshold in [0, 1], got {policy.decision_threshold!r}")
    if policy.canary_window_days < 1:
        out.append("deployment.canary_window_days: must be at least 1")
    return out


def slo_problems(policy: SloPolicy, label_delay_days: int) -> list[str]:
    out = []
    if policy.evaluation_hour_utc > 23:
        out.append(f"slo.evaluation_hour_utc: an hour of the day in 0..23, got {policy.evaluation_hour_utc}")
    # A champion is label_delay_days old the day its labels allow training it, and may wait
    # max_retrain_wait_days more for its run: an age limit within that fails every champion from its first day.
    floor = label_delay_days + policy.max_retrain_wait_days
    if policy.max_champion_age_days <= floor:
        out.append(f"slo.max_champion_age_days: must exceed dataset.label_delay_days + slo.max_retrain_wait_days "
                   f"({label_delay_days} + {policy.max_retrain_wait_days} = {floor}): a champion is at least that "
                   f"old the day it can be trained, got {policy.max_champion_age_days}")
    return out
