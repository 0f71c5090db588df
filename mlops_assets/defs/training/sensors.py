"""The retrain sensor: a failed drift or performance check requests a candidate, once per cooldown; with no
champion yet, the first candidate once a full training window is labeled.

It never stops on a record it cannot use: a check record without a result (PLANNED: its run is still going,
or failed or was killed before the check ran), without a partition or without a readable evaluation is
skipped and said so in the tick's log; planned records are looked at again on later ticks."""

import dagster as dg

from ...core.monitoring.retraining import (CheckRecord, RetrainState, plan_first_model, plan_retrains,
                                           select_failures)
from ..resources import PortfolioResource
from ..scope import ModelScope

RETRAIN_TRIGGERS = (("data_drift_report", "data_drift_ok"), ("performance_report", "performance_ok"))


def check_record(record, check: str) -> CheckRecord:
    """Plain data from a Dagster AssetCheckExecutionRecord; a PLANNED record's event carries no `passed` or
    `severity`, so nothing is read from the evaluation unless the record has a result."""
    status = str(getattr(record.status, "value", record.status))
    severity = None
    if status in ("SUCCEEDED", "FAILED"):
        event = record.event.dagster_event if record.event is not None else None
        evaluation = event.event_specific_data if event is not None else None
        severity = getattr(getattr(evaluation, "severity", None), "value", None)
    return CheckRecord(record.id, check, status, record.partition, severity)


def build_retrain_sensor(scope: ModelScope) -> dg.SensorDefinition:
    @dg.sensor(name=scope.named("retrain_sensor"), job_name=scope.named("train_candidate_job"),
               minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Requests a new {scope.name} candidate when one of its data-drift or performance "
                           "checks fails with ERROR severity; at most one per "
                           f"{scope.spec.monitoring.retrain_cooldown_days}-day cooldown. The candidate still goes "
                           "through the gates. With no champion yet, requests the first candidate once a full "
                           "training window is labeled.")
    def retrain_sensor(context: dg.SensorEvaluationContext, portfolio: PortfolioResource):
        project = portfolio.model(scope.name)
        try:
            state = RetrainState.from_cursor(context.cursor)
        except ValueError as exc:
            context.log.warning(f"{exc}; starting afresh (run keys keep earlier requests from repeating)")
            state = RetrainState()
        records = []
        for asset, check in RETRAIN_TRIGGERS:
            key = scope.check_key(asset, check)
            for record in context.instance.event_log_storage.get_asset_check_execution_history(key, limit=200):
                try:
                    records.append(check_record(record, check))
                except Exception as exc:  # noqa: BLE001 - one unusable record must not stop retraining
                    context.log.warning(f"{check} record {getattr(record, 'id', '?')} cannot be read ({exc!r}): "
                                        "skipped")
        failures, notes = select_failures(state, records)
        for note in notes:
            context.log.warning(note)
        labeled = project.store.partitions("labeled_examples")
        cooldown = project.spec.monitoring.retrain_cooldown_days
        requests = plan_retrains(state, failures, labeled, cooldown)
        first = plan_first_model(state, labeled, project.spec.training.window_days,
                                 project.registry.version_for("champion") is not None, cooldown)
        requests += [first] if first else []
        runs = [dg.RunRequest(run_key=f"retrain:{r.as_of}:{r.incident_day}", partition_key=r.as_of,
                              tags={"mlops/model": scope.name, "mlops/trigger": f"{r.check} failed on {r.incident_day}"})
                for r in requests]
        return dg.SensorResult(run_requests=runs, cursor=state.to_cursor())

    return retrain_sensor
