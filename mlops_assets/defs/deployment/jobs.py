"""The promote and rollback jobs of one model: the same operations as `mlops promote` and `mlops rollback`."""

import getpass

import dagster as dg

from ...core.registry.model_registry import RegistryError
from ..resources import PortfolioResource
from ..scope import ModelScope


class PromoteConfig(dg.Config):
    version: str
    to: str = "champion"
    reason: str = ""
    force: bool = False
    actor: str = ""


class RollbackConfig(dg.Config):
    reason: str
    actor: str = ""


def build_jobs(scope: ModelScope) -> list[dg.JobDefinition]:
    @dg.op(name=scope.named("promote_version"),
           description="Move a registered version to an alias; refused for failed gates unless forced with a reason.")
    def promote_version(context: dg.OpExecutionContext, config: PromoteConfig, portfolio: PortfolioResource) -> str:
        registry = portfolio.model(scope.name).registry
        actor = config.actor or f"dagster:{getpass.getuser()}"
        try:
            replaced = registry.promote(config.version, config.to, actor=actor, reason=config.reason,
                                        force=config.force)
        except RegistryError as exc:
            raise dg.Failure(str(exc)) from None
        context.log.info(f"{config.version} is now {config.to}" + (f" (replacing {replaced})" if replaced else ""))
        return config.version

    @dg.op(name=scope.named("rollback_champion"),
           description="Restore the previous known-good champion; the current one is archived as rolled back.")
    def rollback_champion(context: dg.OpExecutionContext, config: RollbackConfig, portfolio: PortfolioResource) -> str:
        registry = portfolio.model(scope.name).registry
        try:
            restored = registry.rollback(actor=config.actor or f"dagster:{getpass.getuser()}", reason=config.reason)
        except RegistryError as exc:
            raise dg.Failure(str(exc)) from None
        context.log.info(f"champion restored to {restored}")
        return restored

    @dg.job(name=scope.named("promote_model"), tags=scope.run_tags,
            description=f"Promote a {scope.name} model version (config: version, to, reason, force).")
    def promote_model():
        promote_version()

    @dg.job(name=scope.named("rollback_model"), tags=scope.run_tags,
            description=f"Roll {scope.name}'s champion back to the previous known-good version (config: reason).")
    def rollback_model():
        rollback_champion()

    return [promote_model, rollback_model]
