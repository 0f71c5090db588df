"""Serving: batch scoring into the prediction ledger, the canary step and the shadow report, and the daily
schedule that scores and monitors."""

import dagster as dg

from ..scope import ModelScope
from .assets import build_assets
from .schedules import build_daily_schedule


def build(scope: ModelScope) -> dg.Definitions:
    score_and_monitor_job = dg.define_asset_job(
        scope.named("score_and_monitor_job"), tags=scope.run_tags, selection=scope.stages("serving", "monitoring"),
        description="Score the day with the serving models, step the canary and write the monitoring reports.",
    )
    return dg.Definitions(assets=build_assets(scope), jobs=[score_and_monitor_job],
                          schedules=[build_daily_schedule(scope)])
