"""The Dagster shell: one folder per asset group (the lifecycle stage), each with the same name as the core
package it calls, and each building its model's definitions from the model's spec.

Every model of the portfolio gets the same stages under its own key prefix; `Definitions.merge` puts them in
one code location. (Dagster's `load_from_defs_folder` loads module-level definitions once; a portfolio needs
each stage once per spec, so each folder exposes `build(scope)` instead.)"""

import dagster as dg

from ..core.config.settings import Settings
from ..core.portfolio import Portfolio
from . import deployment, evaluation, features, ingestion, monitoring, serving, training
from .execution import executor_for
from .resources import PortfolioResource
from .scope import ModelScope

STAGES = (ingestion, features, training, evaluation, deployment, serving, monitoring)


def build_model_definitions(scope: ModelScope) -> dg.Definitions:
    defs = dg.Definitions.merge(*(stage.build(scope) for stage in STAGES))
    # The lineage graph labels a node with the last part of its key only (dagster-io/dagster#25555), so each
    # asset also carries its model as a kind (shown on the node, filterable as `kind:elec2`) and a tag.
    return defs.map_asset_specs(
        func=lambda spec: spec.merge_attributes(kinds={scope.name}, tags={"mlops/model": scope.name}))


def build_definitions(settings: Settings, *, env_vars: bool = False) -> dg.Definitions:
    """The code location for `settings`. With `env_vars`, locations taken from the environment reach the resource
    as dg.EnvVar (read at launch; see PortfolioResource.from_settings): the deployed code location does this;
    callers that use the resource's portfolio directly (tests, the replay, benchmarks) do not."""
    resource = PortfolioResource.from_settings(settings, env={} if not env_vars else None)
    # The specs, loaded and checked once, from the settings themselves: the resource's fields taken from the
    # environment (dg.EnvVar) are only readable once a run launches.
    models = Portfolio(settings).models.values()
    return dg.Definitions.merge(
        *(build_model_definitions(ModelScope(m.spec)) for m in models),
        dg.Definitions(resources={"portfolio": resource}, executor=executor_for(settings)),
    )
