"""Training: the training set manifest, the candidate model, the job that trains, evaluates and gates a
candidate, and the sensor that asks for one."""

import dagster as dg

from ..scope import ModelScope
from .assets import build_assets
from .sensors import build_retrain_sensor


def build(scope: ModelScope) -> dg.Definitions:
    train_candidate_job = dg.define_asset_job(
        scope.named("train_candidate_job"), tags=scope.run_tags,
        selection=scope.stages("training", "evaluation", "deployment"),
        description="Train, evaluate and gate a candidate as of the selected day; promotion follows the policy.",
    )
    return dg.Definitions(assets=build_assets(scope), jobs=[train_candidate_job],
                          sensors=[build_retrain_sensor(scope)])
