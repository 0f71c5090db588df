"""The Dagster shell: one module per lifecycle stage, each building its definitions from the dataset spec.
Asset groups in the UI carry the stage module's name."""


import dagster as dg

from mlops_assets.core.config.settings import Settings
from mlops_assets.core.config.spec import load_spec
from mlops_assets.defs import automation, deployment, evaluation, features, ingestion, monitoring, serving, training, validation
from mlops_assets.defs.partitions import daily_partitions
from mlops_assets.defs.resources import ProjectResource


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
    batch_scoring, canary_step, shadow_report = serving.build(spec, daily, feature_table, labeled_examples)
    reports = monitoring.build(spec, daily, feature_table, labeled_examples, batch_scoring)
    score_and_monitor_job = dg.define_asset_job(
        "score_and_monitor_job", selection=[batch_scoring, canary_step, shadow_report, *reports],
        description="Score the day with the serving models, step the canary and write the monitoring reports.",
    )
    schedule, retrain_sensor, label_arrival_sensor = automation.build(
        spec, score_and_monitor_job, train_candidate_job, labeled_examples, reports[2])
    daily_ingestion_job = dg.define_asset_job(
        "daily_ingestion_job", selection=[raw_batch, feature_table],
        description="Ingest, validate and build features for the selected days (use it for backfills).",
    )
    return dg.Definitions(
        assets=[raw_batch, raw_labels, feature_table, labeled_examples, training_set, candidate_model,
                evaluation_report, model_promotion, batch_scoring, canary_step, shadow_report, *reports],
        jobs=[daily_ingestion_job, train_candidate_job, score_and_monitor_job, deployment.promote_model,
              deployment.rollback_model],
        asset_checks=checks,
        schedules=[schedule],
        sensors=[sensor, retrain_sensor, label_arrival_sensor],
        resources={"project": ProjectResource.from_settings(settings)},
    )
