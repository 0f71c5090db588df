"""Ingestion: the day's files from the landing zone, typed, validated against the spec (an inline blocking
check), then archived, or quarantined."""

import dagster as dg

from ..scope import ModelScope
from .assets import build_assets
from .sensors import build_landing_sensor


def build(scope: ModelScope) -> dg.Definitions:
    daily_ingestion_job = dg.define_asset_job(
        scope.named("daily_ingestion_job"), tags=scope.run_tags,
        selection=scope.without_loop_health(
            dg.AssetSelection.assets(scope.key("raw_batch"), scope.key("feature_table"))),
        description="Ingest, validate and build features for the selected days (use it for backfills).",
    )
    return dg.Definitions(assets=build_assets(scope), sensors=[build_landing_sensor(scope)],
                          jobs=[daily_ingestion_job])
