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
- Every guardrail decides on a confidence interval, never on a point estimate (see canary_evidence.py): the
  whole interval beyond its limit rolls back, the whole interval within it passes, anything between holds at the
  share and says how many more rows (or timed repeats) would decide it. A step's window grows while it holds
  (it starts at the step's first day), so evidence accumulates until it decides.
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

import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.evaluation.metric_scale import drop_units
from mlops_assets.core.evaluation.report import HIGHER_IS_BETTER
from mlops_assets.core.io.objects import ObjectFile, ObjectNotFound
from mlops_assets.core.io.json_safe import json_safe
from mlops_assets.core.monitoring.drift_profile import ReferenceProfile
from mlops_assets.core.serving.canary_evidence import (WindowEvidence, plan_seed, repeats_needed, score_rows_needed,
                                                       window_evidence)
from mlops_assets.core.serving.scoring import CpuLatency

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


def canary_evidence(rows: pd.DataFrame, plan: CanaryPlan, share: float, labels: pd.DataFrame | None = None,
                    score_reference: ReferenceProfile | None = None,
                    latency: tuple[CpuLatency, ...] = ()) -> WindowEvidence:
    """The evidence of one window of ledger rows for `plan` (see canary_evidence.window_evidence), its bootstrap
    seeded by the plan."""
    return window_evidence(rows, plan.version, plan.champion_version, plan.criteria.key_metric, share, labels,
                           score_reference, tuple(latency), seed=plan_seed(plan.sha256))


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


@dataclass(frozen=True)
class Verdict:
    """One guardrail on one window: "breach", "pass" or "hold", and why, with the figures."""

    guardrail: str
    outcome: str
    message: str


def metric_verdict(c: CanaryCriteria, evidence: WindowEvidence) -> Verdict:
    """Breach only when the whole interval of the drop lies beyond max_metric_drop; pass only when it lies within;
    otherwise hold and say how many labelled rows would decide it."""
    m, limit = evidence.metric, c.max_metric_drop
    if m is None:
        return Verdict("metric", "hold", f"no realised {c.key_metric} for both models yet (labels pending)")
    if any(math.isnan(v) for v in (m.estimate, m.low, m.high)):
        return Verdict("metric", "hold", f"{c.key_metric} undefined on the {m.rows} labelled rows (e.g. one class)")
    text = f"{m.describe()}, allowed {limit:g} {drop_units(c.key_metric)}"
    if m.rows < c.min_rows_per_step:
        return Verdict("metric", "hold", f"{text}: {m.rows} labelled rows, need at least {c.min_rows_per_step} "
                                         "to trust a bootstrap interval")
    if m.beyond(limit):
        return Verdict("metric", "breach", f"{text}: worse beyond noise")
    if m.within(limit):
        return Verdict("metric", "pass", text)
    needed = m.rows_needed(limit)
    more = (f"about {needed - m.rows} more labelled rows to decide" if needed is not None
            else "the estimate sits on the limit")
    return Verdict("metric", "hold", f"{text}: undecided, {more}")


def latency_verdict(c: CanaryCriteria, evidence: WindowEvidence) -> Verdict:
    r, limit = evidence.latency_ratio, c.max_latency_ratio
    if r is None:
        return Verdict("latency", "hold", "no latency measurement")
    text = f"CPU time per row canary / champion {r.describe('.2f', 'timed repeats')}, allowed {limit:g}"
    if r.low > limit:
        return Verdict("latency", "breach", f"{text}: slower beyond noise")
    if r.high <= limit:
        return Verdict("latency", "pass", text)
    needed = repeats_needed(r, limit)
    more = f"about {needed - r.rows} more timed repeats" if needed is not None else "the ratio sits on the limit"
    return Verdict("latency", "hold", f"{text}: undecided, {more}")


def score_shift_verdict(c: CanaryCriteria, evidence: WindowEvidence) -> Verdict:
    s, limit = evidence.score_shift, c.max_score_shift
    if s is None:
        return Verdict("score_shift", "hold", "no score shift against the canary's training scores")
    text = f"score shift from its training scores (KS) {s.describe()}, allowed {limit:g}"
    if s.low > limit:
        return Verdict("score_shift", "breach", f"{text}: beyond sampling noise")
    if s.high <= limit:
        return Verdict("score_shift", "pass", text)
    needed = score_rows_needed(s, limit, evidence.reference_rows)
    more = f"about {needed - s.rows} more scored rows" if needed is not None else "more rows would not decide it"
    return Verdict("score_shift", "hold", f"{text}: undecided, {more}")


def advance(plan: CanaryPlan, evidence: WindowEvidence) -> CanaryDecision:
    """Judge one window: a guardrail whose whole interval lies beyond its limit rolls back; a full window whose
    every interval lies within its limit ramps to the next step (or completes after the last); anything else
    holds at the current share, saying what it still needs."""
    c = verify(plan).criteria
    step = next((i for i, s in enumerate(c.steps) if math.isclose(s, evidence.share)), None)
    if step is None:
        raise ValueError(f"share {evidence.share} is not a step of the plan {list(c.steps)}")
    share = c.steps[step]
    metric, shift = metric_verdict(c, evidence), score_shift_verdict(c, evidence)
    if metric.outcome == "pass" and shift.outcome != "pass" and evidence.score_shift is not None:
        # Labels judge quality: once the realised metric shows the canary within its limit, scores that moved
        # away from its training scores are its inputs moving (drift it was retrained for), not serving skew.
        # Without that evidence the score shift still rolls back a model gone wild.
        shift = Verdict("score_shift", "pass", f"{shift.message}; not held against it: the realised "
                                               f"{c.key_metric} shows it within its limit on the same rows")
    verdicts = [metric, shift, latency_verdict(c, evidence)]
    seen = json_safe({**asdict(evidence), "verdicts": {v.guardrail: v.outcome for v in verdicts}})
    breaches = [v.message for v in verdicts if v.outcome == "breach"]
    if breaches:
        return CanaryDecision("rollback", share, 0.0, breaches, seen)
    waiting = [v.message for v in verdicts if v.outcome == "hold"]
    if evidence.days < c.window_days:
        waiting.append(f"{evidence.days} of {c.window_days} days observed")
    if waiting:
        return CanaryDecision("hold", share, share, waiting, seen)
    passed = [v.message for v in verdicts] + [f"{evidence.rows} rows over {evidence.days} days"]
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

    def __init__(self, path: Path | ObjectFile):
        self.path = ObjectFile.of(path)  # a local file, or an object in the deployment store (S3)

    def load(self) -> CanaryState | None:
        try:
            return CanaryState.from_json(self.path.read_text())
        except ObjectNotFound:
            return None

    def save(self, state: CanaryState) -> None:
        self.path.write_bytes(state.to_json().encode())

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
    latency: tuple[CpuLatency, ...] = ()  # the days' interleaved CPU timings (their scoring stats)


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
                               score_reference=window.score_reference, latency=window.latency)
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
