"""The label-arrival sensor: realised performance once a scored day's labels land.

It never stops on a record it cannot use: a labels materialisation without a partition, or a day whose
scoring stats cannot be read, is skipped and said so in the tick's log, and the cursor moves on."""

import dagster as dg

from ..resources import PortfolioResource
from ..scope import ModelScope


def build_label_arrival_sensor(scope: ModelScope) -> dg.SensorDefinition:
    labeled_examples = scope.key("labeled_examples")

    @dg.sensor(name=scope.named("label_arrival_sensor"), asset_selection=[scope.key("performance_report")],
               minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               description="When a day's labels land (labeled_examples materialises) for a day already scored, "
                           "re-materialises that day's performance report with realised metrics.")
    def label_arrival_sensor(context: dg.SensorEvaluationContext, portfolio: PortfolioResource):
        project = portfolio.model(scope.name)
        after = int(context.cursor) if context.cursor and context.cursor.isdigit() else None
        if context.cursor and after is None:
            context.log.warning(f"unreadable cursor {context.cursor[:80]!r}: reading every labels materialisation "
                                "again (run keys keep earlier requests from repeating)")
        result = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=labeled_examples, after_storage_id=after), limit=500, ascending=True)
        runs, last = [], after
        for record in result.records:
            last = record.storage_id
            day = record.partition_key
            if day is None:
                context.log.warning(f"labeled_examples materialisation {record.storage_id} has no partition: "
                                    "skipped (no day to report on)")
                continue
            try:
                if not project.store.has_document("scoring_stats", day):
                    continue  # not scored (yet): its performance report is written when it is
                stats = project.store.read_json("scoring_stats", day)
                if not isinstance(stats, dict):
                    raise ValueError(f"expected a JSON object, found {type(stats).__name__}")
            except Exception as exc:  # noqa: BLE001 - one unusable day must not stop the sensor
                context.log.warning(f"labels for {day} landed but its scoring stats cannot be read ({exc}): skipped; "
                                    f"re-run {scope.named('score_and_monitor_job')} for {day} to rebuild its reports")
                continue
            runs.append(dg.RunRequest(run_key=f"labels:{day}:{record.storage_id}", partition_key=day,
                                      tags={"mlops/model": scope.name}))
        return dg.SensorResult(run_requests=runs, cursor=str(last) if last is not None else context.cursor)

    return label_arrival_sensor
