"""The promotion policy: where a candidate that passed all its gates goes, given who holds the aliases.

The first model becomes champion (there is nothing to compare it with, and its floors passed). Later ones go
to canary only when the spec asks for it (auto_canary) and no canary is running: one canary at a time, so a
passing candidate waits for a running canary to finish (its plan and guardrails were frozen for that model).
Otherwise the candidate stays a candidate, and a person promotes it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionDecision:
    target: str | None  # the alias to move the version to; None: it stays a candidate
    actor: str | None  # who the registry's audit log names for the move; None when nothing moves
    reason: str  # why: for the audit log, and for the report
    action: str  # what happened, in words, for the report


def decide_promotion(version: str, *, champion: str | None, canary: str | None,
                     auto_canary: bool) -> PromotionDecision:
    """The policy's decision for `version` (whose gates passed), given the current champion and canary."""
    if champion is None:
        return PromotionDecision("champion", "policy:first-model",
                                 "first model: no champion yet and its floors passed",
                                 "promoted to champion (first model)")
    if version in (champion, canary):  # the serving model re-evaluated (e.g. its day re-run): nothing to move
        held = "champion" if version == champion else "canary"
        return PromotionDecision(None, None, f"{version} is already the {held}", f"stays {held}")
    hint = f"left as candidate: promote with `mlops promote {version} --to canary`"
    if not auto_canary:
        return PromotionDecision(None, None, "auto_canary is off: a person decides", hint)
    if canary is not None:
        return PromotionDecision(None, None, f"canary {canary} is still running: one canary at a time", hint)
    return PromotionDecision("canary", "policy:auto-canary", "gates passed and the spec enables auto_canary",
                             "started as canary (auto_canary)")
