"""The sensor that watches a model's landing zone (the decisions are core/ingestion/watch.py's)."""

import datetime as dt

import dagster as dg

from ...core.ingestion.ingest import RAW_TABLE
from ...core.ingestion.watch import PartitionWindow, plan_tick
from .assets import VOLUME_CHECK
from ..resources import PortfolioResource
from ..scope import ModelScope


def partition_window(daily: dg.DailyPartitionsDefinition, now: dt.datetime | None = None) -> PartitionWindow:
    """The model's partitions as Dagster sees them now (the spec's end_date is exclusive, as Dagster's)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    last_now = daily.get_last_partition_key()
    return PartitionWindow(
        first=daily.start.date(),
        last=(daily.end - dt.timedelta(days=1)).date() if daily.end is not None else None,
        last_now=dt.date.fromisoformat(last_now) if last_now else None,
        today=now.astimezone(dt.timezone.utc).date(),
    )


def build_landing_sensor(scope: ModelScope) -> dg.SensorDefinition:
    """Requests the day's partition for each new or changed landed file. The run key carries the file's
    content hash, so an identical re-delivery is not reprocessed and a corrected one is. No file can make a
    tick fail: each problem is logged (once) and the other files go on."""
    raw_batch, raw_labels = scope.key("raw_batch"), scope.key("raw_labels")
    feature_table, labeled_examples = scope.key("feature_table"), scope.key("labeled_examples")

    @dg.sensor(
        name=scope.named("landing_sensor"), minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[raw_batch, raw_labels, feature_table, labeled_examples],
        description=f"Watches {scope.name}'s landing zone; one run per new or corrected daily features or "
                    "labels file. Files dated outside the model's partitions are quarantined; files for a day "
                    "not over yet wait; unreadable entries are skipped with a warning.",
    )
    def _sensor(context: dg.SensorEvaluationContext, portfolio: PortfolioResource):
        project = portfolio.model(scope.name)
        plan = plan_tick(project.landing, project.archive, project.quarantine, context.cursor,
                         partition_window(scope.daily))
        for level, message in plan.log:
            context.log.log(level, message)
        requests = []
        for request in plan.requests:
            f = request.file
            if f.kind == "features":
                selection = [raw_batch, feature_table]
                if project.store.exists("raw_labels", f.partition):
                    selection.append(labeled_examples)
            else:  # labels join the day's feature table; a day whose features were rejected waits for them
                selection = [raw_labels]
                if project.store.exists("feature_table", f.partition):
                    selection.append(labeled_examples)
            # the raw table's schema check, not the loop-health checks (those run in their own job)
            table = RAW_TABLE[f.kind]
            checks = [scope.check_key(table, f"{table}_matches_spec")]
            if f.kind == "features":
                checks.append(scope.check_key(table, VOLUME_CHECK))
            requests.append(dg.RunRequest(
                run_key=request.run_key, partition_key=f.partition, asset_selection=selection,
                asset_check_keys=checks,
                tags={"mlops/model": scope.name, "mlops/file": f.name, "mlops/sha256": f.sha256},
            ))
        skip = None if requests else dg.SkipReason(plan.summary(project.landing.describe()))
        return dg.SensorResult(run_requests=requests, cursor=plan.cursor, skip_reason=skip)

    return _sensor
