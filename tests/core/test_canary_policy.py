"""The daily canary step as a pure function: every branch of `step_canary`, on hand-made ledger rows, without
Dagster or a registry (the step returns the registry actions; the asset applies them)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core.config.spec import spec_from_dict
from mlops_assets.core.monitoring.drift_profile import ReferenceProfile
from mlops_assets.core.serving.canary import (AliasMove, AuditRecord, CanaryWindow, begin, step_canary)
from mlops_assets.core.serving.scoring import CpuLatency

ACTOR = "dagster:canary_step"
DAY = "2025-03-10"
N = 200


def make_spec(window_days=1):
    return spec_from_dict({
        "dataset": {"name": "tiny", "timestamp": "ts", "target": "y", "task": "binary_classification",
                    "entity_id": "id", "start_date": "2025-01-01"},
        "features": {"x1": {"type": "numeric"}},
        "training": {"estimator": "logistic_regression"},
        "deployment": {"canary_steps": [0.5, 1.0], "canary_window_days": window_days, "min_rows_per_step": 50},
    })


SPEC = make_spec()
RNG = np.random.default_rng(0)
LABELS_Y = (RNG.random(N) < 0.5).astype(int)
GOOD = np.clip(0.5 * LABELS_Y + 0.5 * RNG.random(N), 0, 1)  # scores that rank the labels well
TS = pd.Timestamp(DAY) + pd.to_timedelta(np.arange(N) * 60, unit="s")
ENTITIES = [f"c{i}" for i in range(N)]


def route_rows(version, route, scores, latency):
    return pd.DataFrame({"entity": ENTITIES, "timestamp": TS, "score": scores,
                         "decision": (scores >= 0.5).astype(float), "threshold": 0.5, "model_version": version,
                         "route": route, "acted_on": route != "shadow", "latency_ms_per_1k": latency})


def window(canary_scores=GOOD, cpu_ratio=1.0, labelled=True):
    """One day of a canary paired with the champion's shadow opinion, its labels, the canary's training
    scores (the same distribution as its good live scores) and the day's CPU timings (canary = ratio x champion)."""
    rows = pd.concat([route_rows("v2", "canary", canary_scores, cpu_ratio),
                      route_rows("v1", "shadow", GOOD, 1.0)], ignore_index=True)
    labels = pd.DataFrame({"entity": ENTITIES, "timestamp": TS, "label": LABELS_Y}) if labelled else None
    reference = ReferenceProfile.build(pd.DataFrame({"ts": TS, "id": ENTITIES, "x1": GOOD}), SPEC, scores=GOOD)
    champion_ms = tuple(1.0 + 0.1 * i for i in range(8))
    timing = CpuLatency(1000, tuple(cpu_ratio * t for t in champion_ms), champion_ms)
    return CanaryWindow(rows, labels, reference, (timing,))


def running(share=0.5, step_started=DAY, spec=SPEC):
    return replace(begin(spec, "v2", "v1", "2025-03-01"), share=share, step_started=step_started)


def step(state, canary_version="v2", seen=None, spec=SPEC):
    asked = []

    def read_window(days):
        asked.append(days)
        if seen is None:
            raise AssertionError("the window should not be read")
        return seen

    result = step_canary(state, canary_version=canary_version, champion_version="v1", day=DAY, spec=spec,
                         read_window=read_window, actor=ACTOR)
    return result, asked


def test_a_new_canary_starts_the_next_day_with_a_frozen_plan():
    result, _ = step(None)
    assert result.action == "start" and not result.clear_state
    state = result.new_state
    assert (state.plan.version, state.plan.champion_version, state.share, state.step_started) == (
        "v2", "v1", 0.5, "2025-03-11")
    [record] = result.registry_actions
    assert record == AuditRecord("v2", "canary_start", ACTOR, "canary starts on 2025-03-11",
                                 {"plan_sha256": state.plan.sha256, "share": 0.5,
                                  "criteria": state.plan.terms()["criteria"]})
    assert result.metadata == {"action": "start", "version": "v2", "share": 0.5, "plan_sha256": state.plan.sha256}


def test_another_version_on_the_canary_alias_replaces_the_running_canary():
    result, _ = step(running(), canary_version="v3")
    assert result.action == "start" and result.new_state.plan.version == "v3"
    assert result.new_state.share == 0.5 and result.registry_actions[0].version == "v3"


@pytest.mark.parametrize("state, canary_version", [(None, None), (running(), None)])
def test_without_a_canary_the_state_is_cleared(state, canary_version):
    result, _ = step(state, canary_version=canary_version)
    assert (result.action, result.clear_state, result.new_state, result.registry_actions) == ("none", True, None, ())
    assert result.metadata == {"action": "none", "why": "no canary running"}


def test_a_window_still_filling_waits_without_reading_the_ledger():
    spec = make_spec(window_days=2)
    state = running(step_started=DAY, spec=spec)
    result, asked = step(state, spec=spec)
    assert (result.action, result.new_state, result.clear_state, result.registry_actions) == ("wait", None, False, ())
    assert result.metadata == {"action": "wait", "share": 0.5, "window_started": DAY}
    assert asked == []


def test_a_full_window_is_read_over_its_days():
    spec = make_spec(window_days=2)
    _, asked = step(running(step_started="2025-03-09", spec=spec), seen=window(), spec=spec)
    assert asked == [["2025-03-09", "2025-03-10"]]


def test_a_window_without_labels_holds_and_says_why():
    result, _ = step(running(), seen=window(labelled=False))
    assert (result.action, result.new_state, result.clear_state) == ("hold", None, False)
    [record] = result.registry_actions
    assert (record.version, record.action, record.actor) == ("v2", "canary_hold", ACTOR)
    assert record.reason == "no realised roc_auc for both models yet (labels pending)"  # the other two passed
    assert record.details["share"] == 0.5 and record.details["evidence"]["rows"] == N
    assert result.metadata["reasons"] == record.reason and result.metadata["next_share"] == 0.5


def test_a_passing_window_ramps_to_the_next_share_from_the_next_day():
    state = running()
    result, _ = step(state, seen=window())
    assert result.action == "ramp" and not result.clear_state
    assert (result.new_state.share, result.new_state.step_started, result.new_state.plan) == (
        1.0, "2025-03-11", state.plan)
    assert state.share == 0.5  # the loaded state is not changed in place
    [record] = result.registry_actions
    assert (record.action, record.actor) == ("canary_ramp", ACTOR)
    assert record.reason.startswith("all guardrails passed at 50%")
    assert (record.details["from"], record.details["to"]) == (0.5, 1.0)
    evidence = record.details["evidence"]
    assert evidence["latency_ratio"]["estimate"] == pytest.approx(1.0) and evidence["score_shift"]["estimate"] == 0.0
    assert evidence["metric"]["rows"] == N and evidence["metric"]["low"] < 0 < evidence["metric"]["high"]
    assert result.metadata == {"action": "ramp", "version": "v2", "share": 0.5, "next_share": 1.0,
                               "reasons": record.reason, "evidence": record.details["evidence"]}


def test_a_passing_window_at_the_last_share_makes_the_canary_champion():
    result, _ = step(running(share=1.0), seen=window())
    assert (result.action, result.new_state, result.clear_state) == ("complete", None, True)
    [move] = result.registry_actions
    assert isinstance(move, AliasMove) and (move.version, move.to, move.actor) == ("v2", "champion", ACTOR)
    assert move.reason.startswith("canary completed: all guardrails passed at 100%: promote")


@pytest.mark.parametrize("seen, why", [
    (window(cpu_ratio=5.0), "CPU time per row canary / champion 5.00 (95% CI 5.00 .. 5.00, 8 timed repeats)"),
    (window(canary_scores=1 - GOOD), "roc_auc"),
])
def test_a_guardrail_breach_archives_the_canary(seen, why):
    result, _ = step(running(), seen=seen)
    assert (result.action, result.new_state, result.clear_state) == ("rollback", None, True)
    [move] = result.registry_actions
    assert isinstance(move, AliasMove) and (move.version, move.to, move.actor) == ("v2", "archived", ACTOR)
    assert move.reason.startswith("canary rolled back: ") and why in move.reason
    assert result.metadata["next_share"] == 0.0
