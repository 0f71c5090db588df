"""The Dagster shell: one module per lifecycle stage, each building its definitions from the dataset spec.
Asset groups in the UI carry the stage module's name."""


import dagster as dg

from ..core.settings import Settings
from ..core.spec import load_spec
from . import deployment, evaluation, features, ingestion, training, validation
from .partitions import daily_partitions
from .resources import ProjectResource


def build_definitions(settings: Settings) -> dg.Definitions:
    spec = load_spec(settings.spec_path)
    daily = daily_partitions(spec)
    raw_batch, raw_labels = ingestion.build(spec, daily)
    feature_table, labeled_examples = features.build(spec, daily, raw_batch, raw_labels)
    checks = validation.build(raw_batch, raw_labels, daily)
    sensor = ingestion.landing_sensor(spec, raw_batch, raw_labels, feature_table, labeled_examples)
    training_set, candidate_model = training.build(spec, daily, labeled_examples)
    evaluation_report = evaluation.build(spec, daily, candidate_model)
    model_promotion = deployment.build(spec, daily, evaluation_report)
    train_candidate_job = dg.define_asset_job(
        "train_candidate_job", selection=[training_set, candidate_model, evaluation_report, model_promotion],
        description="Train, evaluate and gate a candidate as of the selected day; promotion follows the policy.",
    )
    daily_ingestion_job = dg.define_asset_job(
        "daily_ingestion_job", selection=[raw_batch, feature_table],
        description="Ingest, validate and build features for the selected days (use it for backfills).",
    )
    return dg.Definitions(
        assets=[raw_batch, raw_labels, feature_table, labeled_examples, training_set, candidate_model,
                evaluation_report, model_promotion],
        jobs=[daily_ingestion_job, train_candidate_job, deployment.promote_model, deployment.rollback_model],
        asset_checks=checks,
        sensors=[sensor],
        resources={"project": ProjectResource.from_settings(settings)},
    )
