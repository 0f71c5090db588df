"""Deployment: what happens to a candidate that passed its gates, and the promote / rollback jobs.

Policy: the first model that passes its floors becomes champion (there is nothing to compare it with);
later candidates stay candidates unless the spec's [deployment] auto_canary is on. People promote with the
`promote_model` job or `mlops promote`, and roll back with the `rollback_model` job or `mlops rollback`."""

import dagster as dg

from ...core.deployment.promotion import decide_promotion
from ..resources import PortfolioResource
from ..retries import STEP_RETRY_POLICY
from ..scope import OWNERS, ModelScope


def build_assets(scope: ModelScope) -> list[dg.AssetsDefinition]:
    @dg.asset(
        retry_policy=STEP_RETRY_POLICY,
        key_prefix=scope.key_prefix, partitions_def=scope.daily, deps=[scope.key("evaluation_report")],
        group_name="deployment", owners=OWNERS, kinds={"json"},
        code_version="promotion-v1",
        description="Applies the promotion policy to a candidate whose gates all passed (a failed gate stops "
                    "this step): the first model becomes champion; later ones go to canary only if the spec "
                    "says auto_canary, otherwise they wait for a person.",
    )
    def model_promotion(context: dg.AssetExecutionContext, portfolio: PortfolioResource) -> dg.MaterializeResult:
        project = portfolio.model(scope.name)
        doc = project.store.read_json("evaluation_report", context.partition_key)
        registry, version = project.registry, doc["version"]
        decision = decide_promotion(version, champion=registry.version_for("champion"),
                                    canary=registry.version_for("canary"),
                                    auto_canary=project.spec.deployment.auto_canary)
        if decision.target is not None:
            registry.promote(version, decision.target, actor=decision.actor, reason=decision.reason)
        return dg.MaterializeResult(metadata={
            "version": version, "action": decision.action, "reason": decision.reason,
            "aliases": ", ".join(registry.aliases_of(version)) or "(none)",
            "champion": registry.version_for("champion") or "(none)",
        })

    return [model_promotion]
