"""Validation: the spec's pandera schema as a blocking check on every raw partition.

A failure blocks the day's downstream steps, keeps the landed file in quarantine with its reasons, and
withdraws the raw table, so no later run builds features from a rejected batch. Other days go on.
"""


import dagster as dg

from mlops_assets.core.ingestion.ingest import RAW_TABLE, reject_batch
from mlops_assets.core.ingestion.validation import validate_batch
from mlops_assets.defs.metadata import table
from mlops_assets.defs.resources import ProjectResource

RUNBOOK = (
    "Runbook: open this check's failure table (column, check, count, examples) and the quarantined file "
    "named in `quarantined_as`. Fix the producer or the file, then re-deliver a corrected file to the landing "
    "zone: the landing sensor sees its new hash and re-runs the day. If the data is right and the spec is "
    "wrong (a new category, a wider range), change the dataset spec instead."
)


def _schema_check(kind: str, asset, daily: dg.PartitionsDefinition):
    @dg.asset_check(
        asset=asset, name=f"{RAW_TABLE[kind]}_matches_spec", blocking=True, partitions_def=daily,
        description=f"Every column, dtype, range, category, null, duplicate and timestamp rule of the dataset "
                    f"spec holds for the day's {kind}. {RUNBOOK}",
    )
    def _check(context: dg.AssetCheckExecutionContext, project: ProjectResource) -> dg.AssetCheckResult:
        partition = context.partition_key
        batch = project.store.read(RAW_TABLE[kind], partition)
        result = validate_batch(batch, project.spec, partition, kind)
        metadata = {"partition": partition, "rows": result.rows, "summary": result.summary()}
        if not result.passed:
            record = reject_batch(project.landing, project.quarantine, project.store, kind, partition, result)
            metadata["failures"] = table(result.table())
            metadata["failed_cases"] = result.failed_rows
            metadata["quarantined_as"] = str(project.quarantine.root / record.stored_as) if record else "(already)"
        return dg.AssetCheckResult(passed=result.passed, metadata=metadata)

    return _check


def build(raw_batch, raw_labels, daily):
    return [_schema_check("features", raw_batch, daily), _schema_check("labels", raw_labels, daily)]
