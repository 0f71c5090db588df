"""The daily schedule: score yesterday with the serving models, then write the monitoring reports."""

import datetime as dt

import dagster as dg

from ..resources import PortfolioResource
from ..scope import ModelScope


def build_daily_schedule(scope: ModelScope) -> dg.ScheduleDefinition:
    @dg.schedule(name=scope.named("daily_monitoring_schedule"), job_name=scope.named("score_and_monitor_job"),
                 cron_schedule="0 6 * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Each morning, score yesterday's {scope.name} feature table with the serving models "
                             "and write the four monitoring reports.")
    def daily_monitoring_schedule(context: dg.ScheduleEvaluationContext, portfolio: PortfolioResource):
        project = portfolio.model(scope.name)
        day = (context.scheduled_execution_time.date() - dt.timedelta(days=1)).isoformat()
        if not project.store.exists("feature_table", day):
            return dg.SkipReason(f"no feature table for {day} yet")
        if project.registry.version_for("champion") is None:
            return dg.SkipReason("no champion yet: nothing to score with")
        return dg.RunRequest(run_key=f"monitor:{day}", partition_key=day, tags={"mlops/model": scope.name})

    return daily_monitoring_schedule
