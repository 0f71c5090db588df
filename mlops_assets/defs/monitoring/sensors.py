"""The label-arrival sensor: realised performance once a scored day's labels land."""

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
        after = int(context.cursor) if context.cursor else None
        result = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=labeled_examples, after_storage_id=after), limit=500, ascending=True)
        runs, last = [], after
        scored = set(project.store.documents("scoring_stats"))
        for record in result.records:
            last = record.storage_id
            day = record.partition_key
            if day in scored:
                runs.append(dg.RunRequest(run_key=f"labels:{day}:{record.storage_id}", partition_key=day,
                                          tags={"mlops/model": scope.name}))
        return dg.SensorResult(run_requests=runs, cursor=str(last) if last is not None else context.cursor)

    return label_arrival_sensor
