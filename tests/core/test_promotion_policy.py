"""Where a candidate goes after its gates, and which champion a candidate is evaluated against: pure
functions, without Dagster or a registry."""

from mlops_assets.core.deployment.promotion import PromotionDecision, decide_promotion
from mlops_assets.core.evaluation.gates import comparison_champion


def test_the_first_model_becomes_champion_whatever_auto_canary_says():
    for auto_canary in (False, True):
        decision = decide_promotion("v1", champion=None, canary=None, auto_canary=auto_canary)
        assert decision == PromotionDecision("champion", "policy:first-model",
                                             "first model: no champion yet and its floors passed",
                                             "promoted to champion (first model)")


def test_with_auto_canary_and_no_canary_running_a_candidate_starts_as_canary():
    decision = decide_promotion("v2", champion="v1", canary=None, auto_canary=True)
    assert decision == PromotionDecision("canary", "policy:auto-canary",
                                         "gates passed and the spec enables auto_canary",
                                         "started as canary (auto_canary)")


def test_without_auto_canary_a_candidate_waits_for_a_person():
    decision = decide_promotion("v2", champion="v1", canary=None, auto_canary=False)
    assert (decision.target, decision.actor) == (None, None)
    assert decision.action == "left as candidate: promote with `mlops promote v2 --to canary`"
    assert "auto_canary is off" in decision.reason


def test_a_running_canary_makes_a_passing_candidate_wait():
    decision = decide_promotion("v3", champion="v1", canary="v2", auto_canary=True)
    assert (decision.target, decision.actor) == (None, None)
    assert decision.action == "left as candidate: promote with `mlops promote v3 --to canary`"
    assert decision.reason == "canary v2 is still running: one canary at a time"


def test_a_candidate_is_compared_with_the_champion_unless_it_is_the_champion():
    assert comparison_champion("v2", "v1") == "v1"
    assert comparison_champion("v2", None) is None  # first model: judged on floors
    assert comparison_champion("v1", "v1") is None  # the champion re-evaluated: judged on floors


def test_the_serving_model_re_evaluated_is_never_moved():
    # With auto_canary on and no canary running, re-running the champion's day must not make it a canary.
    decision = decide_promotion("v1", champion="v1", canary=None, auto_canary=True)
    assert (decision.target, decision.action) == (None, "stays champion")
    decision = decide_promotion("v2", champion="v1", canary="v2", auto_canary=True)
    assert (decision.target, decision.action) == (None, "stays canary")
