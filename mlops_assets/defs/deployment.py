"""Deployment: what happens to a candidate that passed its gates, and the promote / rollback jobs.

Policy: the first model that passes its floors becomes champion (there is nothing to compare it with);
later candidates stay candidates unless the spec's [monitoring] auto_canary is on. People promote with the
`promote_model` job or `mlops promote`, and roll back with the `rollback_model` job or `mlops rollback`."""

import getpass

import dagster as dg

from mlops_assets.core.deployment.promotion import decide_promotion
from mlops_assets.core.registry.model_registry import RegistryError
from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.defs.resources import ProjectResource

OWNERS = ["team:ml-platform"]


def build(spec: DatasetSpec, daily: dg.PartitionsDefinition, evaluation_report):
    @dg.asset(
        partitions_def=daily, deps=[evaluation_report], group_name="deployment", owners=OWNERS, kinds={"json"},
        code_version="promotion-v1",
        description="Applies the promotion policy to a candidate whose gates all passed (a failed gate stops "
                    "this step): the first model becomes champion; later ones go to canary only if the spec "
                    "says auto_canary, otherwise they wait for a person.",
    )
    def model_promotion(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
        doc = project.store.read_json("evaluation_report", context.partition_key)
        registry, version = project.registry, doc["version"]
        decision = decide_promotion(version, champion=registry.version_for("champion"),
                                    canary=registry.version_for("canary"),
                                    auto_canary=project.spec.monitoring.auto_canary)
        if decision.target is not None:
            registry.promote(version, decision.target, actor=decision.actor, reason=decision.reason)
        return dg.MaterializeResult(metadata={
            "version": version, "action": decision.action, "reason": decision.reason,
            "aliases": ", ".join(registry.aliases_of(version)) or "(none)",
            "champion": registry.version_for("champion") or "(none)",
        })

    return model_promotion


class PromoteConfig(dg.Config):
    version: str
    to: str = "champion"
    reason: str = ""
    force: bool = False
    actor: str = ""


class RollbackConfig(dg.Config):
    reason: str
    actor: str = ""


@dg.op(description="Move a registered version to an alias; refused for failed gates unless forced with a reason.")
def promote_version(context: dg.OpExecutionContext, config: PromoteConfig, project: ProjectResource) -> str:
    actor = config.actor or f"dagster:{getpass.getuser()}"
    try:
        replaced = project.registry.promote(config.version, config.to, actor=actor, reason=config.reason,
                                            force=config.force)
    except RegistryError as exc:
        raise dg.Failure(str(exc)) from None
    context.log.info(f"{config.version} is now {config.to}" + (f" (replacing {replaced})" if replaced else ""))
    return config.version


@dg.op(description="Restore the previous known-good champion; the current one is archived as rolled back.")
def rollback_champion(context: dg.OpExecutionContext, config: RollbackConfig, project: ProjectResource) -> str:
    try:
        restored = project.registry.rollback(actor=config.actor or f"dagster:{getpass.getuser()}", reason=config.reason)
    except RegistryError as exc:
        raise dg.Failure(str(exc)) from None
    context.log.info(f"champion restored to {restored}")
    return restored


@dg.job(description="Promote a model version (config: version, to, reason, force).")
def promote_model():
    promote_version()


@dg.job(description="Roll the champion back to the previous known-good version (config: reason).")
def rollback_model():
    rollback_champion()
