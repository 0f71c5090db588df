"""The Dagster shell: one module per lifecycle stage, each building its definitions from the dataset spec.
Asset groups in the UI carry the stage module's name."""


import dagster as dg

from ..core.settings import Settings
from ..core.spec import load_spec
from . import features, ingestion, validation
from .partitions import daily_partitions
from .resources import ProjectResource


def build_definitions(settings: Settings) -> dg.Definitions:
    spec = load_spec(settings.spec_path)
    daily = daily_partitions(spec)
    raw_batch, raw_labels = ingestion.build(spec, daily)
    feature_table, labeled_examples = features.build(spec, daily, raw_batch, raw_labels)
    checks = validation.build(raw_batch, raw_labels, daily)
    sensor = ingestion.landing_sensor(spec, raw_batch, raw_labels, feature_table, labeled_examples)
    daily_ingestion_job = dg.define_asset_job(
        "daily_ingestion_job", selection=[raw_batch, feature_table],
        description="Ingest, validate and build features for the selected days (use it for backfills).",
    )
    return dg.Definitions(
        assets=[raw_batch, raw_labels, feature_table, labeled_examples],
        jobs=[daily_ingestion_job],
        asset_checks=checks,
        sensors=[sensor],
        resources={"project": ProjectResource.from_settings(settings)},
    )
