"""The retrain sensor: a failed drift or performance check requests a candidate, once per cooldown; with no
champion yet, the first candidate once a full training window is labeled."""

import dagster as dg

from ...core.monitoring.retraining import FailedCheck, RetrainState, plan_first_model, plan_retrains
from ..resources import PortfolioResource
from ..scope import ModelScope

RETRAIN_TRIGGERS = (("data_drift_report", "data_drift_ok"), ("performance_report", "performance_ok"))


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
        state = RetrainState.from_cursor(context.cursor)
        failures = []
        for asset, check in RETRAIN_TRIGGERS:
            key = scope.check_key(asset, check)
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
                              tags={"mlops/model": scope.name, "mlops/trigger": f"{r.check} failed on {r.incident_day}"})
                for r in requests]
        return dg.SensorResult(run_requests=runs, cursor=state.to_cursor())

    return retrain_sensor
