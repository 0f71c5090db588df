"""The sensor that watches a model's landing zone."""

import json

import dagster as dg

from ..resources import PortfolioResource
from ..scope import ModelScope


def build_landing_sensor(scope: ModelScope) -> dg.SensorDefinition:
    """Requests the day's partition for each new or changed landed file. The cursor remembers each file's
    content hash, and the run key carries it, so an identical re-delivery is not reprocessed and a corrected
    one is."""
    raw_batch, raw_labels = scope.key("raw_batch"), scope.key("raw_labels")
    feature_table, labeled_examples = scope.key("feature_table"), scope.key("labeled_examples")

    @dg.sensor(
        name=scope.named("landing_sensor"), minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[raw_batch, raw_labels, feature_table, labeled_examples],
        description=f"Watches {scope.name}'s landing zone; one run per new or corrected daily features or "
                    "labels file.",
    )
    def _sensor(context: dg.SensorEvaluationContext, portfolio: PortfolioResource):
        project = portfolio.model(scope.name)
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        files, rejected = project.landing.list_files()
        for name, why in rejected:
            if seen.get(name) != "rejected":
                context.log.warning(f"rejected landed file: {why}")
                seen[name] = "rejected"
        requests = []
        for f in files:
            if seen.get(f.name) == f.sha256:
                continue
            seen[f.name] = f.sha256
            if f.kind == "features":
                selection = [raw_batch, feature_table]
                if project.store.exists("raw_labels", f.partition):
                    selection.append(labeled_examples)
            else:
                selection = [raw_labels, labeled_examples]
            requests.append(dg.RunRequest(
                run_key=f"{f.kind}:{f.partition}:{f.sha256[:16]}", partition_key=f.partition,
                asset_selection=selection, tags={"mlops/model": scope.name, "mlops/file": f.name,
                                                 "mlops/sha256": f.sha256},
            ))
        if not requests:
            return dg.SkipReason(f"no new or changed files in {project.landing.describe()}")
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))

    return _sensor
