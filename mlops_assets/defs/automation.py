"""Automation: the daily scoring-and-monitoring schedule, the retrain sensor (a failed drift or performance
check requests a candidate, once per cooldown) and the label-arrival sensor (realised performance)."""

import datetime as dt

import dagster as dg

from mlops_assets.core.monitoring.retraining import FailedCheck, RetrainState, plan_first_model, plan_retrains
from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.defs.resources import ProjectResource

RETRAIN_TRIGGERS = (("data_drift_report", "data_drift_ok"), ("performance_report", "performance_ok"))


def build(spec: DatasetSpec, score_and_monitor_job, train_candidate_job, labeled_examples, performance_report):
    @dg.schedule(job=score_and_monitor_job, cron_schedule="0 6 * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Each morning, score yesterday's feature table with the serving models and write "
                             "the four monitoring reports.")
    def daily_monitoring_schedule(context: dg.ScheduleEvaluationContext, project: ProjectResource):
        day = (context.scheduled_execution_time.date() - dt.timedelta(days=1)).isoformat()
        if not project.store.exists("feature_table", day):
            return dg.SkipReason(f"no feature table for {day} yet")
        if project.registry.version_for("champion") is None:
            return dg.SkipReason("no champion yet: nothing to score with")
        return dg.RunRequest(run_key=f"monitor:{day}", partition_key=day)

    @dg.sensor(job=train_candidate_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Requests a new candidate when a data-drift or performance check fails with ERROR "
                           f"severity; at most one per {spec.monitoring.retrain_cooldown_days}-day cooldown. "
                           "The candidate still goes through the gates. With no champion yet, requests the "
                           "first candidate once a full training window is labeled.")
    def retrain_sensor(context: dg.SensorEvaluationContext, project: ProjectResource):
        state = RetrainState.from_cursor(context.cursor)
        failures = []
        for asset, check in RETRAIN_TRIGGERS:
            key = dg.AssetCheckKey(dg.AssetKey(asset), check)
            for record in context.instance.event_log_storage.get_asset_check_execution_history(key, limit=200):
                evaluation = record.event.dagster_event.event_specific_data if record.event else None
                if (record.id > state.last_event_id and evaluation is not None and not evaluation.passed
                        and evaluation.severity == dg.AssetCheckSeverity.ERROR and record.partition):
                    failures.append(FailedCheck(record.id, check, record.partition))
        labeled = project.store.partitions("labeled_examples")
        cooldown = project.spec.monitoring.retrain_cooldown_days
        requests = plan_retrains(state, failures, labeled, cooldown)
        first = plan_first_model(state, labeled, project.spec.training.window_days,
                                 project.registry.version_for("champion") is not None, cooldown)
        requests += [first] if first else []
        runs = [dg.RunRequest(run_key=f"retrain:{r.as_of}:{r.incident_day}", partition_key=r.as_of,
                              tags={"mlops/trigger": f"{r.check} failed on {r.incident_day}"}) for r in requests]
        return dg.SensorResult(run_requests=runs, cursor=state.to_cursor())

    @dg.sensor(asset_selection=[performance_report], minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="When a day's labels land (labeled_examples materialises) for a day already scored, "
                           "re-materialises that day's performance report with realised metrics.")
    def label_arrival_sensor(context: dg.SensorEvaluationContext, project: ProjectResource):
        after = int(context.cursor) if context.cursor else None
        result = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=labeled_examples.key, after_storage_id=after), limit=500, ascending=True)
        runs, last = [], after
        scored = set(project.store.documents("scoring_stats"))
        for record in result.records:
            last = record.storage_id
            day = record.partition_key
            if day in scored:
                runs.append(dg.RunRequest(run_key=f"labels:{day}:{record.storage_id}", partition_key=day))
        return dg.SensorResult(run_requests=runs, cursor=str(last) if last is not None else context.cursor)

    return daily_monitoring_schedule, retrain_sensor, label_arrival_sensor
