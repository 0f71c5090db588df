"""The Dagster shell: one folder per asset group (the lifecycle stage), each with the same name as the core
package it calls, and each building its model's definitions from the model's spec.

Every model of the portfolio gets the same stages under its own key prefix; `Definitions.merge` puts them in
one code location. (Dagster's `load_from_defs_folder` loads module-level definitions once; a portfolio needs
each stage once per spec, so each folder exposes `build(scope)` instead.)"""

import dagster as dg

from ..core.config.settings import Settings
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


def build_definitions(settings: Settings) -> dg.Definitions:
    resource = PortfolioResource.from_settings(settings)
    models = resource.portfolio.models.values()  # the specs, loaded and checked once
    return dg.Definitions.merge(
        *(build_model_definitions(ModelScope(m.spec)) for m in models),
        dg.Definitions(resources={"portfolio": resource}, executor=executor_for(settings)),
    )
