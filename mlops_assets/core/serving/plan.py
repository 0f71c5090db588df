"""Which models serve a model's rows right now: the champion, a canary with its frozen share and salt, a shadow.

Batch scoring and the online service both ask `current_plan` and load its versions with `load_plan`, so a row
scored online is routed and scored exactly as the same row in `batch_scoring`. A canary serves only while the
registry's canary alias and the canary state file name the same version (a state file left by a canary that
was rolled back by hand, or an alias moved without a started plan, routes nothing to it).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from mlops_assets.core.serving.canary import CanaryState, CanaryStateFile
from mlops_assets.core.serving.scoring import ServingModel


class ServingPlan(NamedTuple):
    champion: str | None
    canary: str | None = None
    canary_share: float = 0.0
    canary_salt: str = ""
    shadow: str | None = None

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(v for v in (self.champion, self.canary, self.shadow) if v)


def current_plan(registry, canary_state: CanaryState | CanaryStateFile | None,
                 aliases: dict[str, str | None] | None = None) -> ServingPlan:
    """The plan from the registry's aliases (a scoped registry view, or `aliases` as its `serving_aliases`
    returned them) and the model's canary state."""
    state = canary_state.load() if isinstance(canary_state, CanaryStateFile) else canary_state
    aliases = registry.serving_aliases() if aliases is None else aliases
    champion, canary = aliases["champion"], aliases["canary"]
    if state is None or canary != state.plan.version:
        canary, share, salt = None, 0.0, ""
    else:
        share, salt = float(state.share), state.plan.salt
    return ServingPlan(champion, canary, share, salt, aliases["shadow"])


class ServingModels(NamedTuple):
    plan: ServingPlan
    champion: ServingModel
    canary: ServingModel | None
    shadow: ServingModel | None


def load_plan(plan: ServingPlan, load: Callable[[str], object]) -> ServingModels:
    """The plan's models, each loaded by `load(version)` (the registry's `load_model`, which refuses a file
    whose checksum does not match its record, or a cache in front of it)."""
    if plan.champion is None:
        raise LookupError("no champion to serve")

    def model(version: str | None) -> ServingModel | None:
        return ServingModel(version, load(version)) if version else None

    return ServingModels(plan, model(plan.champion), model(plan.canary), model(plan.shadow))
