"""A canary's rollout: its frozen plan, the evidence of one window, the ramp decision, its state between days,
and the daily step that ties them together. No Dagster here: the serving asset loads the inputs, calls
`step_canary` and applies what it returns.

- A `CanaryPlan` is frozen at start: its terms (steps, window, guardrails copied from the spec's
  [deployment] policy) are stored with a sha256 of their canonical JSON; `verify` refuses an edited plan.
- The score-shift guardrail compares the canary's live scores with its *own* scores on its training data
  (its monitoring reference, as prediction_drift_report does for the champion): it catches training/serving
  skew and a model gone wild. Against the champion's scores it would also fire on a retrain that legitimately
  differs from a stale champion, which is the point of retraining after drift; that comparison is kept as
  evidence, and the labels judge quality.
- Latency is the ratio of the times `score_batch` recorded in the ledger for the canary and for the champion
  on the same rows.
- `advance` is a pure function of a plan and one window's evidence; `step_canary` turns its decision into
  registry actions (alias moves, audit entries) for the caller to apply, in order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.evaluation.report import HIGHER_IS_BETTER, metric_function
from mlops_assets.core.io.atomic import write_atomic
from mlops_assets.core.monitoring.drift import prediction_drift
from mlops_assets.core.monitoring.drift_profile import ReferenceProfile
from mlops_assets.core.serving.shadow import finite_or_none, ks_statistic, paired_rows, task_of, threshold_of

# ------------------------------------------------------------------------------------------------- plan


class PlanTampered(ValueError):
    """A canary plan's terms no longer match the sha256 recorded when it started."""


@dataclass(frozen=True)
class CanaryCriteria:
    steps: tuple[float, ...]
    window_days: int
    key_metric: str
    higher_is_better: bool
    max_metric_drop: float
    max_score_shift: float
    max_latency_ratio: float
    min_rows_per_step: int


@dataclass(frozen=True)
class CanaryPlan:
    version: str
    champion_version: str
    salt: str
    started_at: str
    criteria: CanaryCriteria
    sha256: str  # of the canonical JSON of the terms: everything above except started_at

    def terms(self) -> dict:
        return {"version": self.version, "champion_version": self.champion_version, "salt": self.salt,
                "criteria": asdict(self.criteria)}

    @property
    def first_share(self) -> float:
        return self.criteria.steps[0]

    def to_json(self) -> str:
        return json.dumps({**self.terms(), "started_at": self.started_at, "sha256": self.sha256},
                          sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "CanaryPlan":
        raw = json.loads(text)
        crit = dict(raw["criteria"])
        crit["steps"] = tuple(crit["steps"])
        return cls(raw["version"], raw["champion_version"], raw["salt"], raw["started_at"],
                   CanaryCriteria(**crit), raw["sha256"])


def _terms_sha256(terms: dict) -> str:
    canonical = json.dumps(terms, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def start_canary(spec: DatasetSpec, version: str, champion_version: str, *, salt: str | None = None,
                 started_at: str | None = None) -> CanaryPlan:
    """Freeze the spec's current [deployment] guardrails into a plan for this canary."""
    policy = spec.deployment
    criteria = CanaryCriteria(
        steps=tuple(float(s) for s in policy.canary_steps), window_days=policy.canary_window_days,
        key_metric=spec.key_metric, higher_is_better=HIGHER_IS_BETTER[spec.key_metric],
        max_metric_drop=policy.max_metric_drop, max_score_shift=policy.max_score_shift,
        max_latency_ratio=policy.max_latency_ratio, min_rows_per_step=policy.min_rows_per_step,
    )
    salt = version if salt is None else salt
    started_at = started_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    draft = CanaryPlan(version, champion_version, salt, started_at, criteria, "")
    return CanaryPlan(version, champion_version, salt, started_at, criteria, _terms_sha256(draft.terms()))


def verify(plan: CanaryPlan) -> CanaryPlan:
    """The plan, if its terms still hash to the sha256 recorded at start; else PlanTampered."""
    actual = _terms_sha256(plan.terms())
    if actual != plan.sha256:
        raise PlanTampered(
            f"canary plan for {plan.version} was changed after it started (recorded sha256 {plan.sha256[:12]}…, "
            f"now {actual[:12]}…); refusing to judge it by criteria that moved. Roll back and start a new canary."
        )
    return plan


# --------------------------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class WindowEvidence:
    """One window of canary traffic at one share, compared with the champion on the same rows."""

    share: float  # the canary share served during the window
    days: int  # days of traffic in the window
    rows: int  # canary rows the champion also scored (compared rows)
    canary_metric: float | None = None  # realised key metric on the labelled compared rows; None: labels not in
    champion_metric: float | None = None
    labelled_rows: int = 0
    score_shift: float | None = None  # KS statistic, canary's live scores vs its own training scores
    score_shift_vs_champion: float | None = None  # KS, canary vs champion scores on the compared rows (evidence)
    latency_ratio: float | None = None  # canary / champion scoring time per row


def canary_evidence(rows: pd.DataFrame, plan: CanaryPlan, share: float, labels: pd.DataFrame | None = None,
                    score_reference: ReferenceProfile | None = None) -> WindowEvidence:
    """Evidence from one window's ledger rows: the canary's rows paired with the champion's opinion on them.
    `score_reference` is the canary's monitoring reference profile (without it, score shift is not judged
    and the step cannot pass)."""
    canary = rows[(rows["model_version"] == plan.version) & (rows["route"] == "canary")]
    champion = rows[(rows["model_version"] == plan.champion_version) & (rows["route"] != "canary")]
    pairs = paired_rows(canary, champion, labels)
    days = pd.to_datetime(rows["timestamp"]).dt.date.nunique() if len(rows) else 0
    canary_scores = pairs["score_a"].to_numpy(float)
    own_shift = (finite_or_none(prediction_drift(score_reference, canary_scores).statistic)
                 if score_reference is not None and len(pairs) else None)
    evidence = dict(share=share, days=int(days), rows=len(pairs), score_shift=own_shift,
                    latency_ratio=_recorded_latency_ratio(canary, champion[champion["route"] == "shadow"]),
                    score_shift_vs_champion=ks_statistic(canary_scores, pairs["score_b"].to_numpy(float)))
    if labels is not None:
        known = pairs["label"].notna().to_numpy()
        metric = metric_function(task_of(rows), plan.criteria.key_metric, threshold=threshold_of(rows))
        evidence["labelled_rows"] = int(known.sum())
        if known.any():
            y = pairs.loc[known, "label"].to_numpy(float)
            evidence["canary_metric"] = finite_or_none(metric(y, pairs.loc[known, "score_a"].to_numpy(float)))
            evidence["champion_metric"] = finite_or_none(metric(y, pairs.loc[known, "score_b"].to_numpy(float)))
    return WindowEvidence(**evidence)


def _recorded_latency_ratio(canary: pd.DataFrame, champion_shadow: pd.DataFrame) -> float | None:
    """Median over the window's days of canary / champion time per row, as score_batch recorded them."""
    if "latency_ms_per_1k" not in canary.columns or "latency_ms_per_1k" not in champion_shadow.columns:
        return None

    def per_day(frame):
        day = pd.to_datetime(frame["timestamp"]).dt.date
        return frame["latency_ms_per_1k"].astype(float).groupby(day).median()

    ratios = (per_day(canary) / per_day(champion_shadow)).dropna()
    ratios = ratios[np.isfinite(ratios)]
    return float(ratios.median()) if len(ratios) else None


# --------------------------------------------------------------------------------------------- decision


@dataclass(frozen=True)
class CanaryDecision:
    action: str  # "hold" | "ramp" | "complete" | "rollback"
    share: float  # the share the evidence was collected at
    next_share: float  # the share to serve next (0 after a rollback)
    reasons: list[str] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)  # the window's figures, for the audit log

    def to_dict(self) -> dict:
        return asdict(self)


def advance(plan: CanaryPlan, evidence: WindowEvidence) -> CanaryDecision:
    """Judge one window: a guardrail breach rolls back; a clean, complete window ramps to the next step
    (or completes after the last); anything short of enough evidence holds at the current share.

    Latency is judged on any window; metric and score shift only once the window holds `min_rows_per_step`
    compared rows (fewer would roll back on noise). Passing needs the full window of days and the labels.
    """
    c = verify(plan).criteria
    step = next((i for i, s in enumerate(c.steps) if math.isclose(s, evidence.share)), None)
    if step is None:
        raise ValueError(f"share {evidence.share} is not a step of the plan {list(c.steps)}")
    share = c.steps[step]
    breaches, waiting = [], []

    if evidence.latency_ratio is not None and evidence.latency_ratio > c.max_latency_ratio:
        breaches.append(f"latency ratio {evidence.latency_ratio:.2f} exceeds {c.max_latency_ratio:.2f}")
    enough_rows = evidence.rows >= c.min_rows_per_step
    if not enough_rows:
        waiting.append(f"{evidence.rows} compared rows, need {c.min_rows_per_step}")
    if enough_rows and evidence.score_shift is not None and evidence.score_shift > c.max_score_shift:
        breaches.append(f"score shift from its training scores (KS) {evidence.score_shift:.3f} exceeds "
                        f"{c.max_score_shift:.3f}")
    have_metric = evidence.canary_metric is not None and evidence.champion_metric is not None
    if enough_rows and have_metric:
        drop = evidence.champion_metric - evidence.canary_metric
        drop = drop if c.higher_is_better else -drop
        if drop > c.max_metric_drop:
            breaches.append(f"{c.key_metric} {evidence.canary_metric:.4f} vs champion {evidence.champion_metric:.4f}: "
                            f"drop {drop:.4f} exceeds {c.max_metric_drop:.4f}")
    seen = asdict(evidence)
    if breaches:
        return CanaryDecision("rollback", share, 0.0, breaches, seen)

    if evidence.days < c.window_days:
        waiting.append(f"{evidence.days} of {c.window_days} days observed")
    if not have_metric:
        waiting.append(f"no realised {c.key_metric} for both models yet (labels pending)")
    if evidence.latency_ratio is None:
        waiting.append("no latency measurement")
    if evidence.score_shift is None:
        waiting.append("no score shift against the canary's training scores")
    if waiting:
        return CanaryDecision("hold", share, share, waiting, seen)

    passed = [f"{c.key_metric} {evidence.canary_metric:.4f} vs champion {evidence.champion_metric:.4f}",
              f"score shift {evidence.score_shift:.3f}",
              f"latency ratio {evidence.latency_ratio:.2f}",
              f"{evidence.rows} rows over {evidence.days} days"]
    if step == len(c.steps) - 1:
        return CanaryDecision("complete", share, 1.0, [f"all guardrails passed at {share:.0%}: promote"] + passed, seen)
    return CanaryDecision("ramp", share, c.steps[step + 1], [f"all guardrails passed at {share:.0%}"] + passed, seen)


# ------------------------------------------------------------------------------------------------ state


@dataclass(frozen=True)
class CanaryState:
    plan: CanaryPlan
    share: float
    step_started: str  # first day served at this share

    def to_json(self) -> str:
        return json.dumps({"canary_plan": json.loads(self.plan.to_json()), "share": self.share,
                           "step_started": self.step_started}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CanaryState":
        raw = json.loads(text)
        return cls(CanaryPlan.from_json(json.dumps(raw["canary_plan"])), raw["share"], raw["step_started"])


class CanaryStateFile:
    """One file: the canary being rolled out now (absent when there is none)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> CanaryState | None:
        return CanaryState.from_json(self.path.read_text()) if self.path.exists() else None

    def save(self, state: CanaryState) -> None:
        write_atomic(self.path, state.to_json().encode())

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def begin(spec: DatasetSpec, version: str, champion: str, first_day: str) -> CanaryState:
    plan = start_canary(spec, version, champion)
    return CanaryState(plan, plan.first_share, first_day)


# ------------------------------------------------------------------------------------------- daily step


@dataclass(frozen=True)
class AliasMove:
    """Move `version` to alias `to` in the registry (which logs the move)."""

    version: str
    to: str
    actor: str
    reason: str


@dataclass(frozen=True)
class AuditRecord:
    """An audit-log entry that moves no alias."""

    version: str
    action: str
    actor: str
    reason: str
    details: dict


@dataclass(frozen=True)
class CanaryWindow:
    """What a step is judged on: the ledger rows of its days, their labels (None while none have landed) and
    the canary's own training-score profile."""

    rows: pd.DataFrame
    labels: pd.DataFrame | None = None
    score_reference: ReferenceProfile | None = None


@dataclass(frozen=True)
class CanaryStep:
    action: str  # "start" | "none" | "wait" | "hold" | "ramp" | "complete" | "rollback"
    new_state: CanaryState | None = None  # save this as the running canary's state
    clear_state: bool = False  # no canary runs after this step: remove the saved state
    registry_actions: tuple[AliasMove | AuditRecord, ...] = ()  # to apply in order
    metadata: dict = field(default_factory=dict)  # what to report about the step


def step_canary(state: CanaryState | None, *, canary_version: str | None, champion_version: str | None,
                day: str, spec: DatasetSpec, read_window: Callable[[list[str]], CanaryWindow],
                actor: str) -> CanaryStep:
    """One day of the canary lifecycle, given the saved state and the registry's canary and champion.

    A version newly on the canary alias starts a canary the next day (a new plan frozen from `spec`); with no
    canary the state is cleared; a window still filling waits; a full window is judged by `advance`: rollback
    archives the canary, complete makes it champion, ramp moves to the next share from the next day, hold
    stays. `read_window(days)` is called only when a window is judged, with its days (ISO dates, oldest first).
    """
    if canary_version and (state is None or state.plan.version != canary_version):
        started = begin(spec, canary_version, champion_version, _next_day(day))
        record = AuditRecord(canary_version, "canary_start", actor, f"canary starts on {started.step_started}",
                             {"plan_sha256": started.plan.sha256, "share": started.share,
                              "criteria": started.plan.terms()["criteria"]})
        return CanaryStep("start", new_state=started, registry_actions=(record,), metadata={
            "action": "start", "version": canary_version, "share": started.share,
            "plan_sha256": started.plan.sha256})
    if state is None or canary_version is None:
        return CanaryStep("none", clear_state=True, metadata={"action": "none", "why": "no canary running"})

    days = [d.isoformat() for d in pd.date_range(state.step_started, day).date]
    if len(days) < state.plan.criteria.window_days:
        return CanaryStep("wait", metadata={"action": "wait", "share": state.share,
                                            "window_started": state.step_started})
    window = read_window(days)
    evidence = canary_evidence(window.rows, state.plan, state.share, window.labels,
                               score_reference=window.score_reference)
    decision = advance(state.plan, evidence)
    reason = "; ".join(decision.reasons) or decision.action
    new_state, clear = None, False
    if decision.action == "rollback":
        act, clear = AliasMove(canary_version, "archived", actor, f"canary rolled back: {reason}"), True
    elif decision.action == "complete":
        act, clear = AliasMove(canary_version, "champion", actor, f"canary completed: {reason}"), True
    elif decision.action == "ramp":
        act = AuditRecord(canary_version, "canary_ramp", actor, reason,
                          {"from": decision.share, "to": decision.next_share, "evidence": decision.evidence})
        new_state = replace(state, share=decision.next_share, step_started=_next_day(day))
    else:
        act = AuditRecord(canary_version, "canary_hold", actor, reason,
                          {"share": decision.share, "evidence": decision.evidence})
    return CanaryStep(decision.action, new_state=new_state, clear_state=clear, registry_actions=(act,), metadata={
        "action": decision.action, "version": canary_version, "share": decision.share,
        "next_share": decision.next_share, "reasons": reason, "evidence": decision.evidence})


def _next_day(day: str) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
