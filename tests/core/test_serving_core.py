"""Serving core: hash routing, ledger rows from a batch, the frozen canary plan and its ramp, shadow reports."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core.serving.canary import (CanaryPlan, PlanTampered, WindowEvidence, advance, canary_evidence,
                                              start_canary, verify)
from mlops_assets.core.serving.scoring import ServingModel, canary_route, ledger_labels, route_values, score_batch
from mlops_assets.core.serving.shadow import shadow_comparison
from mlops_assets.core.monitoring.drift_profile import ReferenceProfile
from mlops_assets.core.serving.ledger import PredictionLedger
from mlops_assets.core.config.spec import SpecError, spec_from_dict
from mlops_assets.core.training.trainer import predict_scores, train

REPO = Path(__file__).resolve().parents[2]
D0 = dt.date(2025, 3, 1)


def tiny_spec(task="binary_classification", entity=True, deployment=None):
    dataset = {"name": "tiny", "timestamp": "ts", "target": "y", "task": task, "start_date": "2025-01-01"}
    if entity:
        dataset["entity_id"] = "id"
    raw = {"dataset": dataset, "features": {"x1": {"type": "numeric"}, "x2": {"type": "numeric"}},
           "training": {"estimator": "logistic_regression" if task == "binary_classification" else "ridge"}}
    if deployment is not None:
        raw["deployment"] = deployment
    return spec_from_dict(raw)


def day_rows(spec, day, rows=400, seed=0, flip=False, offset=0.0):
    """Features and labels of one day; `flip` inverts the relation (a model trained on it is bad); `offset`
    moves the base rate (the same inputs now mean more positives)."""
    rng = np.random.default_rng([seed, day.toordinal()])
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    signal = (-1 if flip else 1) * (2 * x1 - x2) + offset
    if spec.is_classification:
        y = (rng.random(rows) < 1 / (1 + np.exp(-signal))).astype(int)
    else:
        y = 3.0 * signal + rng.normal(scale=0.5, size=rows)
    ts = pd.Timestamp(day) + pd.to_timedelta(np.arange(rows) * (86_400 // rows), unit="s")
    frame = pd.DataFrame({"ts": ts, "x1": x1, "x2": x2, "y": y})
    if spec.entity_id:
        frame.insert(1, "id", [f"c{i}" for i in range(rows)])
    return frame


def fit(spec, version, seed=0, flip=False, offset=0.0):
    return ServingModel(version, train(spec, spec.training, training_rows(spec, seed, flip, offset),
                                       git_commit="test").pipeline)


def training_rows(spec, seed=0, flip=False, offset=0.0):
    return day_rows(spec, D0 - dt.timedelta(days=1), 600, seed, flip, offset)


def score_reference(spec, model, seed=0, flip=False, offset=0.0):
    """The model's monitoring reference profile: its scores on its own training rows."""
    frame = training_rows(spec, seed, flip, offset)
    return ReferenceProfile.build(frame, spec, scores=predict_scores(model.pipeline, spec, frame))


@pytest.fixture(scope="module")
def spec():
    return tiny_spec()


@pytest.fixture(scope="module")
def models(spec):
    return {"v1": fit(spec, "v1"), "v2": fit(spec, "v2", seed=1), "v9": fit(spec, "v9", seed=2)}


# ----------------------------------------------------------------------------------------------- routing


def test_routing_is_the_documented_sha256_split_and_ignores_python_hash_seeds():
    ids = [f"c{i}" for i in range(3000)]
    here = canary_route(ids, 0.3, salt="v2")
    # The documented rule, computed independently: first 8 bytes of sha256("<len(salt)>:<salt><id>") / 2**64.
    by_hand = [int.from_bytes(hashlib.sha256(f"2:v2{i}".encode()).digest()[:8], "big") / 2 ** 64 < 0.3 for i in ids]
    assert here.tolist() == by_hand
    code = ("from mlops_assets.core.serving.scoring import canary_route\n"
            "print(''.join('1' if m else '0' for m in canary_route([f'c{i}' for i in range(3000)], 0.3, salt='v2')))")
    # Another process with another str-hash seed (this one's is random unless PYTHONHASHSEED is set).
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "PYTHONHASHSEED": seed})
    assert out.stdout.strip() == "".join("1" if m else "0" for m in here)


def test_share_of_100k_entities_routed_matches_the_share():
    ids = np.arange(100_000).astype(str)
    values = route_values(ids, salt="v2")
    for share in (0.05, 0.25, 0.5):
        assert abs((values < share).mean() - share) < 0.005  # binomial sd ≤ 0.0016
    assert not canary_route(ids[:100], 0.0, "v2").any() and canary_route(ids[:100], 1.0, "v2").all()
    # Another salt picks another set: overlap of two independent 25 % sets is about 6.25 %.
    other = route_values(ids, salt="v3")
    assert abs(((values < 0.25) & (other < 0.25)).mean() - 0.0625) < 0.005


def test_ramp_only_adds_entities_and_an_entity_always_goes_the_same_way():
    ids = [f"e{i}" for i in range(20_000)]
    masks = [canary_route(ids, s, salt="v2") for s in (0.05, 0.25, 0.5, 1.0)]
    for smaller, larger in zip(masks, masks[1:]):
        assert not (smaller & ~larger).any()
        assert larger.sum() > smaller.sum()
    # Row order and repeats do not matter: routing depends on the entity only.
    shuffled = ids[::-1] + ids[:5]
    again = canary_route(shuffled, 0.25, salt="v2")
    assert again[:len(ids)].tolist() == masks[1][::-1].tolist() and again[-5:].tolist() == masks[1][:5].tolist()
    with pytest.raises(ValueError, match="within"):
        canary_route(ids, 1.5)


# ----------------------------------------------------------------------------------------------- scoring


def test_each_row_is_decided_by_exactly_one_model_and_shadows_are_never_acted_on(spec, models):
    batch = day_rows(spec, D0, rows=2000)
    rows = score_batch(batch, spec, models["v1"], canary=models["v2"], shadow=models["v9"],
                           canary_share=0.25, salt="v2")
    acted = rows[rows["acted_on"]]
    assert sorted(acted["entity"]) == sorted(batch["id"])  # each row decided once
    assert set(acted["route"]) == {"champion", "canary"}
    in_canary = canary_route(batch["id"], 0.25, salt="v2")
    assert set(acted.loc[acted["route"] == "canary", "entity"]) == set(batch["id"][in_canary])
    assert set(acted.loc[acted["route"] == "canary", "model_version"]) == {"v2"}

    shadow = rows[rows["route"] == "shadow"]
    assert not shadow["acted_on"].any()
    assert sorted(shadow.loc[shadow["model_version"] == "v9", "entity"]) == sorted(batch["id"])  # all rows
    # The champion's opinion on exactly the canary's rows, for a paired comparison.
    assert set(shadow.loc[shadow["model_version"] == "v1", "entity"]) == set(batch["id"][in_canary])

    by_id = batch.set_index("id")
    for version in ("v1", "v2", "v9"):
        mine = rows[rows["model_version"] == version]
        want = predict_scores(models[version].pipeline, spec, by_id.loc[mine["entity"]].reset_index())
        np.testing.assert_allclose(mine["score"], want)
    np.testing.assert_array_equal(rows["decision"], (rows["score"] >= 0.5).astype(float))
    assert (rows["threshold"] == 0.5).all() and (rows["day"] == D0).all()
    assert str(rows["scored_at"].dt.tz) == "UTC"
    # Scoring time is measured for the canary and for the champion on the same (canary) rows, nowhere else.
    timed = rows["route"].eq("canary") | (rows["route"].eq("shadow") & rows["model_version"].eq("v1"))
    assert (rows.loc[timed, "latency_ms_per_1k"] > 0).all() and rows.loc[~timed, "latency_ms_per_1k"].isna().all()


def test_without_a_canary_the_champion_decides_everything_and_the_threshold_comes_from_the_spec(models):
    spec = tiny_spec(deployment={"decision_threshold": 0.8})
    batch = day_rows(spec, D0, rows=300)
    rows = score_batch(batch, spec, models["v1"])
    assert len(rows) == 300 and set(rows["route"]) == {"champion"} and rows["acted_on"].all()
    np.testing.assert_array_equal(rows["decision"], (rows["score"] >= 0.8).astype(float))
    assert 0 < rows["decision"].sum() < (rows["score"] >= 0.5).sum()
    with pytest.raises(ValueError, match="no canary model"):
        score_batch(batch, spec, models["v1"], canary_share=0.1)


def test_regression_decides_the_prediction_and_a_spec_without_entity_id_keys_by_timestamp():
    spec = tiny_spec(task="regression", entity=False)
    model = fit(spec, "r1")
    batch = day_rows(spec, D0, rows=50)
    rows = score_batch(batch, spec, model, canary=model._replace(version="r2"), canary_share=0.5, salt="s")
    acted = rows[rows["acted_on"]]
    assert sorted(acted["entity"]) == sorted(ts.isoformat() for ts in batch["ts"])
    np.testing.assert_array_equal(rows["decision"], rows["score"])
    assert rows["threshold"].isna().all()


def test_score_batch_rows_go_into_the_ledger_and_answer_the_entity_question(tmp_path, spec, models):
    batch = day_rows(spec, D0, rows=500)
    rows = score_batch(batch, spec, models["v1"], canary=models["v2"], canary_share=0.5, salt="v2")
    ledger = PredictionLedger(tmp_path)
    ledger.write(rows)
    entity = batch["id"][canary_route(batch["id"], 0.5, salt="v2")].iloc[0]
    answer = ledger.for_entity(entity, D0)
    assert answer[["model_version", "route", "acted_on"]].values.tolist() == [
        ["v2", "canary", True], ["v1", "shadow", False]]


# ---------------------------------------------------------------------------------------------- canary


def equal_latency(rows):
    """Ledger rows whose recorded scoring times are equal for both models (a latency ratio of exactly 1), so
    timing noise on a busy machine cannot breach the latency guardrail in tests about other guardrails."""
    timed = rows["latency_ms_per_1k"].notna()
    return rows.assign(latency_ms_per_1k=rows["latency_ms_per_1k"].mask(timed, 1.0))


def passing(share, **changes):
    base = WindowEvidence(share=share, days=2, rows=500, canary_metric=0.80, champion_metric=0.80,
                          labelled_rows=500, score_shift=0.02, latency_ratio=1.0)
    return replace(base, **changes)


@pytest.fixture(scope="module")
def plan(spec):
    return start_canary(spec, "v2", "v1", started_at="2025-03-01T00:00:00+00:00")


def test_plan_copies_the_spec_deployment_policy_and_salts_with_the_version():
    spec = tiny_spec(deployment={"canary_steps": [0.1, 1.0], "canary_window_days": 3, "max_metric_drop": 0.01,
                                 "max_score_shift": 0.2, "max_latency_ratio": 2, "min_rows_per_step": 50})
    plan = start_canary(spec, "v2", "v1")
    c = plan.criteria
    assert (c.steps, c.window_days, c.max_metric_drop, c.max_score_shift, c.max_latency_ratio,
            c.min_rows_per_step) == ((0.1, 1.0), 3, 0.01, 0.2, 2.0, 50)
    assert (c.key_metric, c.higher_is_better, plan.salt, plan.first_share) == ("roc_auc", True, "v2", 0.1)
    assert verify(plan) is plan


def test_the_spec_rejects_a_ramp_that_does_not_rise_to_one():
    for steps in ([0.5, 0.25, 1.0], [0.05, 0.5], [], [0, 1.0]):
        with pytest.raises(SpecError, match="deployment.canary_steps"):
            tiny_spec(deployment={"canary_steps": steps})
    with pytest.raises(SpecError, match="deployment.max_latency_ratio: expected float"):
        tiny_spec(deployment={"max_latency_ratio": "fast"})


def test_passing_windows_ramp_5_25_50_100_then_complete(plan):
    share, path = plan.first_share, []
    while True:
        decision = advance(plan, passing(share))
        path.append((decision.action, decision.next_share))
        if decision.action == "complete":
            break
        share = decision.next_share
    assert path == [("ramp", 0.25), ("ramp", 0.5), ("ramp", 1.0), ("complete", 1.0)]
    assert decision.to_dict()["evidence"]["rows"] == 500  # the figures travel with the decision, for the audit log
    json.dumps(decision.to_dict())


@pytest.mark.parametrize("breach, why", [
    (dict(canary_metric=0.77), "roc_auc 0.7700 vs champion 0.8000: drop 0.0300 exceeds 0.0200"),
    (dict(score_shift=0.3), "score shift from its training scores (KS) 0.300 exceeds 0.250"),
    (dict(latency_ratio=1.8), "latency ratio 1.80 exceeds 1.50"),
    (dict(latency_ratio=3.0, rows=10, days=1), "latency ratio 3.00 exceeds 1.50"),  # judged on any window
])
def test_any_guardrail_breach_rolls_back_at_any_step(plan, breach, why):
    for share in plan.criteria.steps:
        decision = advance(plan, passing(share, **breach))
        assert (decision.action, decision.next_share) == ("rollback", 0.0)
        assert decision.reasons == [why]


def test_a_drop_within_the_allowance_passes_and_lower_is_better_metrics_are_oriented():
    plan = start_canary(tiny_spec(), "v2", "v1")
    assert advance(plan, passing(0.05, canary_metric=0.781)).action == "ramp"  # drop 0.019 <= 0.02
    reg = start_canary(tiny_spec(task="regression", deployment={"max_metric_drop": 0.05}), "v2", "v1")
    assert (reg.criteria.key_metric, reg.criteria.higher_is_better) == ("rmse", False)
    assert advance(reg, passing(0.05, canary_metric=1.10, champion_metric=1.0)).action == "rollback"
    assert advance(reg, passing(0.05, canary_metric=0.90, champion_metric=1.0)).action == "ramp"


@pytest.mark.parametrize("short, why", [
    (dict(days=1), "1 of 2 days observed"),
    (dict(rows=150, score_shift=0.9, canary_metric=0.1), "150 compared rows, need 200"),  # too few to judge
    (dict(canary_metric=None, champion_metric=None), "no realised roc_auc for both models yet (labels pending)"),
    (dict(latency_ratio=None), "no latency measurement"),
    (dict(score_shift=None), "no score shift against the canary's training scores"),
])
def test_too_little_evidence_holds_at_the_same_share(plan, short, why):
    decision = advance(plan, passing(0.25, **short))
    assert (decision.action, decision.share, decision.next_share) == ("hold", 0.25, 0.25)
    assert why in decision.reasons


def test_evidence_at_a_share_outside_the_plan_is_refused(plan):
    with pytest.raises(ValueError, match="not a step"):
        advance(plan, passing(0.3))


def test_an_edited_plan_is_refused(plan):
    stored = plan.to_json()
    assert verify(CanaryPlan.from_json(stored)) == plan
    for edit in (lambda raw: raw["criteria"].update(max_metric_drop=0.5),
                 lambda raw: raw["criteria"].update(steps=[0.5, 1.0]),
                 lambda raw: raw.update(salt="other")):
        raw = json.loads(stored)
        edit(raw)
        tampered = CanaryPlan.from_json(json.dumps(raw))
        with pytest.raises(PlanTampered, match="changed after it started"):
            verify(tampered)
        with pytest.raises(PlanTampered):
            advance(tampered, passing(0.5, canary_metric=0.5))


def test_evidence_from_ledger_rows_pairs_the_canary_with_the_champion_on_the_same_rows(spec, models):
    days = [D0, D0 + dt.timedelta(days=1)]

    def window(canary):
        rows, labels = [], []
        for day in days:
            batch = day_rows(spec, day, rows=1000, seed=5)
            rows.append(score_batch(batch, spec, models["v1"], canary=canary, canary_share=0.25, salt="v2"))
            labels.append(ledger_labels(batch, spec))
        return equal_latency(pd.concat(rows, ignore_index=True)), pd.concat(labels, ignore_index=True)

    plan = start_canary(spec, "v2", "v1")
    rows, labels = window(models["v1"]._replace(version="v2"))  # the champion itself, as canary
    own = score_reference(spec, models["v1"])
    evidence = canary_evidence(rows, plan, 0.25, labels, score_reference=own)
    in_canary = int(canary_route([f"c{i}" for i in range(1000)], 0.25, "v2").sum()) * 2
    assert (evidence.days, evidence.rows, evidence.labelled_rows) == (2, in_canary, in_canary)
    assert evidence.score_shift_vs_champion == 0.0 and evidence.canary_metric == evidence.champion_metric
    assert evidence.score_shift < 0.1  # live scores look like its training scores
    assert advance(plan, evidence).action == "ramp"
    assert advance(plan, canary_evidence(rows, plan, 0.25, labels)).action == "hold"

    bad = fit(spec, "v2", flip=True)  # learned the inverted relation: much worse AUC, shifted scores
    rows, labels = window(bad)
    evidence = canary_evidence(rows, plan, 0.25, labels, score_reference=score_reference(spec, bad, flip=True))
    assert evidence.canary_metric < 0.5 < evidence.champion_metric
    decision = advance(plan, evidence)
    assert decision.action == "rollback" and any("roc_auc" in r for r in decision.reasons)
    assert canary_evidence(rows, plan, 0.25).canary_metric is None  # labels not in yet


def test_score_shift_is_judged_against_the_canary_s_own_training_scores_not_the_champion_s(spec, models):
    """A retrain that scores differently from a stale champion is what retraining is for; a canary whose live
    scores differ from its own training scores has a serving problem (skew), whatever the champion says."""
    plan = start_canary(spec, "v2", "v1")
    # the world changed: the same inputs now mean more positives (two days: a full canary window)
    batch = pd.concat([day_rows(spec, D0 + dt.timedelta(days=d), rows=1000, seed=5, offset=2.5) for d in (0, 1)],
                      ignore_index=True).assign(id=lambda f: [f"c{i}" for i in range(len(f))])
    retrained = fit(spec, "v2", offset=2.5)  # and the candidate was retrained on it
    own = score_reference(spec, retrained, offset=2.5)
    rows = equal_latency(score_batch(batch, spec, models["v1"], canary=retrained, canary_share=0.5, salt="v2"))
    evidence = canary_evidence(rows, plan, 0.5, ledger_labels(batch, spec), score_reference=own)
    assert evidence.score_shift_vs_champion > 0.3  # the stale champion scores differently: no reason to roll back
    assert evidence.score_shift < 0.1
    assert advance(plan, evidence).action == "ramp"

    skewed = batch.assign(x1=batch["x1"] * 100)  # a serving pipeline that feeds the wrong unit
    rows = equal_latency(score_batch(skewed, spec, models["v1"], canary=retrained, canary_share=0.5, salt="v2"))
    decision = advance(plan, canary_evidence(rows, plan, 0.5, None, score_reference=own))
    assert decision.action == "rollback" and decision.reasons[0].startswith("score shift from its training scores")


def test_the_evidence_uses_the_latency_recorded_in_the_ledger(spec):
    def route_rows(version, route, day, latency):
        out = ledger_rows(version, route, [f"c{i}" for i in range(3)], [0.2, 0.5, 0.7])
        return out.assign(timestamp=out["timestamp"] + pd.Timedelta(days=day), latency_ms_per_1k=latency)

    plan = start_canary(spec, "v2", "v1")
    rows = pd.concat([route_rows("v2", "canary", 0, 3.0), route_rows("v1", "shadow", 0, 1.0),
                      route_rows("v2", "canary", 1, 4.0), route_rows("v1", "shadow", 1, 2.0),
                      route_rows("v1", "champion", 1, np.nan)], ignore_index=True)
    assert canary_evidence(rows, plan, 0.05).latency_ratio == pytest.approx(2.5)  # median of 3.0 and 2.0
    untimed = rows.assign(latency_ms_per_1k=np.nan)
    assert canary_evidence(untimed, plan, 0.05).latency_ratio is None


# ------------------------------------------------------------------------------------------ shadow report


def ledger_rows(version, route, entities, scores, threshold=0.5):
    scores = np.asarray(scores, dtype=float)
    ts = [pd.Timestamp(D0) + pd.Timedelta(hours=i) for i in range(len(entities))]
    return pd.DataFrame({"entity": entities, "timestamp": ts, "score": scores,
                         "decision": (scores >= threshold).astype(float), "threshold": threshold,
                         "model_version": version, "route": route, "acted_on": route != "shadow"})


def test_shadow_report_against_hand_computed_figures():
    champion = ledger_rows("v1", "champion", ["a", "b", "c", "d", "e"], [0.9, 0.2, 0.6, 0.4, 0.5])
    shadow = ledger_rows("v9", "shadow", ["a", "b", "c", "d"], [0.7, 0.1, 0.3, 0.05])
    report = shadow_comparison(champion, shadow)
    assert (report["rows"], report["unmatched_champion_rows"], report["unmatched_shadow_rows"]) == (4, 1, 0)
    assert report["agreement_rate"] == 0.75  # decisions 1,0,1,0 vs 1,0,0,0
    assert report["mean_abs_score_difference"] == pytest.approx((0.2 + 0.1 + 0.3 + 0.35) / 4)
    # Deviations from the means 0.525 and 0.2875: covariance sum 0.24625, squares 0.2675 and 0.261875.
    assert report["score_correlation"] == pytest.approx(0.24625 / np.sqrt(0.2675 * 0.261875))
    assert report["ks_statistic"] == pytest.approx(0.5)  # at 0.1 (and 0.3): ECDFs 0 vs 0.5 (0.25 vs 0.75)
    assert report["metrics"] is None and report["task"] == "binary_classification"

    labels = pd.DataFrame({"entity": ["a", "b", "c", "d"], "timestamp": champion["timestamp"][:4],
                           "label": [1, 0, 0, 1]})
    report = shadow_comparison(champion, shadow, labels=labels.iloc[:4])
    champ, shad = report["metrics"]["champion"], report["metrics"]["shadow"]
    assert report["labelled_rows"] == 4
    assert (champ["roc_auc"], shad["roc_auc"]) == (0.75, 0.5)  # pairs won: 3 of 4, 2 of 4
    assert (champ["accuracy"], shad["accuracy"]) == (0.5, 0.75)
    assert champ["brier"] == pytest.approx((0.01 + 0.04 + 0.36 + 0.36) / 4)
    assert shad["brier"] == pytest.approx((0.09 + 0.01 + 0.09 + 0.9025) / 4)


def test_shadow_report_for_regression_has_no_agreement_rate():
    champion = ledger_rows("v1", "champion", ["a", "b", "c"], [1.0, 2.0, 3.0], threshold=np.nan)
    shadow = ledger_rows("v9", "shadow", ["a", "b", "c"], [1.5, 2.0, 2.0], threshold=np.nan)
    shadow["decision"] = shadow["score"]
    labels = pd.DataFrame({"entity": ["a", "b"], "timestamp": champion["timestamp"][:2], "label": [1.0, 2.0]})
    report = shadow_comparison(champion, shadow, labels)
    assert report["task"] == "regression" and report["agreement_rate"] is None
    assert report["mean_abs_score_difference"] == pytest.approx(0.5)
    assert report["labelled_rows"] == 2
    assert report["metrics"]["champion"]["mae"] == 0.0 and report["metrics"]["shadow"]["mae"] == 0.25
