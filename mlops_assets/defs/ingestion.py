"""Ingestion: the day's raw batch and its late-arriving labels, and the sensor that watches the landing zone."""


import json

import dagster as dg

from mlops_assets.core.ingestion.ingest import RAW_TABLE, MissingFile, ingest
from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.io.storage import frame_fingerprint
from mlops_assets.core.ingestion.validation import BatchRejected
from mlops_assets.defs.resources import ProjectResource

OWNERS = ["team:ml-platform"]
INGEST_CODE_VERSION = "ingest-v1"


def _ingest_asset(kind: str, daily: dg.PartitionsDefinition, description: str):
    @dg.asset(
        name=RAW_TABLE[kind], partitions_def=daily, group_name="ingestion", owners=OWNERS,
        kinds={"csv", "pandas", "parquet"}, code_version=INGEST_CODE_VERSION, description=description,
    )
    def _asset(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
        partition = context.partition_key
        try:
            batch = ingest(project.landing, project.quarantine, project.spec, kind, partition)
        except (MissingFile, BatchRejected) as exc:
            raise dg.Failure(description=str(exc), metadata={
                "partition": partition, "reason": getattr(exc, "reason", str(exc)),
                "column": getattr(exc, "column", None) or "",
                "quarantine": str(project.quarantine.root / partition),
            }) from None
        project.store.write(RAW_TABLE[kind], partition, batch.frame)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(frame_fingerprint(batch.frame)),
            metadata={
                "file": batch.file, "file_sha256": batch.sha256, "dagster/row_count": len(batch.frame),
                "columns": ", ".join(map(str, batch.frame.columns)),
            },
        )

    return _asset


def landing_sensor(spec: DatasetSpec, raw_batch, raw_labels, feature_table, labeled_examples):
    """Requests the day's partition for each new or changed landed file. The cursor remembers each file's
    content hash, and the run key carries it, so an identical re-delivery is not reprocessed and a corrected
    one is."""

    @dg.sensor(
        name="landing_sensor", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[raw_batch, raw_labels, feature_table, labeled_examples],
        description="Watches the landing zone; one run per new or corrected daily features or labels file.",
    )
    def _sensor(context: dg.SensorEvaluationContext, project: ProjectResource):
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
                selection = [raw_batch.key, feature_table.key]
                if project.store.exists("raw_labels", f.partition):
                    selection.append(labeled_examples.key)
            else:
                selection = [raw_labels.key, labeled_examples.key]
            requests.append(dg.RunRequest(
                run_key=f"{f.kind}:{f.partition}:{f.sha256[:16]}", partition_key=f.partition,
                asset_selection=selection, tags={"mlops/file": f.name, "mlops/sha256": f.sha256},
            ))
        if not requests:
            return dg.SkipReason(f"no new or changed files in {project.landing.describe()}")
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))

    return _sensor


def build(spec: DatasetSpec, daily: dg.PartitionsDefinition):
    raw_batch = _ingest_asset(
        "features", daily,
        f"The day's features file from the landing zone, typed per the {spec.name} spec. Unreadable files "
        "(empty, truncated, malformed) fail here and are moved to quarantine with the reason.",
    )
    raw_labels = _ingest_asset(
        "labels", daily,
        f"The day's labels ({spec.target}), which land {spec.label_delay_days} day(s) after the features.",
    )
    return raw_batch, raw_labels
