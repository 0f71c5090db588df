"""The state of a running canary, kept beside its frozen plan, and the daily step that judges it.
No Dagster here: the serving assets call `canary_step` once a day."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlops_assets.core.serving import deployment
from mlops_assets.core.io.atomic import write_atomic
from mlops_assets.core.config.spec import DatasetSpec


@dataclass
class CanaryState:
    plan: deployment.CanaryPlan
    share: float
    step_started: str  # first day served at this share

    def to_json(self) -> str:
        return json.dumps({"canary_plan": json.loads(self.plan.to_json()), "share": self.share,
                           "step_started": self.step_started}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CanaryState":
        raw = json.loads(text)
        return cls(deployment.CanaryPlan.from_json(json.dumps(raw["canary_plan"])), raw["share"], raw["step_started"])


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
    plan = deployment.start_canary(spec, version, champion)
    return CanaryState(plan, plan.first_share, first_day)


def canary_step(state: CanaryState, day: str, ledger_rows: pd.DataFrame, labels: pd.DataFrame | None,
                latency_ratio: float | None, score_reference=None) -> deployment.CanaryDecision | None:
    """Judge the window that ends on `day`, or None while the window is still filling."""
    window = state.plan.criteria.window_days
    started = dt.date.fromisoformat(state.step_started)
    if (dt.date.fromisoformat(day) - started).days + 1 < window:
        return None
    evidence = deployment.canary_evidence(ledger_rows, state.plan, state.share, labels, latency_ratio,
                                          score_reference=score_reference)
    return deployment.advance(state.plan, evidence)
