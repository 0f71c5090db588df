"""Validation: the spec's pandera schema as a blocking check on every raw partition.

A failure blocks the day's downstream steps, keeps the landed file in quarantine with its reasons, and
withdraws the raw table, so no later run builds features from a rejected batch. Other days go on.
"""

import dagster as dg

from ...core.ingestion.ingest import RAW_TABLE, reject_batch
from ...core.ingestion.validation import validate_batch
from ..metadata import table
from ..resources import PortfolioResource
from ..scope import ModelScope

RUNBOOK = (
    "Runbook: open this check's failure table (column, check, count, examples) and the quarantined file "
    "named in `quarantined_as`. Fix the producer or the file, then re-deliver a corrected file to the landing "
    "zone: the landing sensor sees its new hash and re-runs the day. If the data is right and the spec is "
    "wrong (a new category, a wider range), change the dataset spec instead."
)


def _schema_check(scope: ModelScope, kind: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=scope.key(RAW_TABLE[kind]), name=f"{RAW_TABLE[kind]}_matches_spec", blocking=True,
        partitions_def=scope.daily,
        description=f"Every column, dtype, range, category, null, duplicate and timestamp rule of the dataset "
                    f"spec holds for the day's {kind}. {RUNBOOK}",
    )
    def _check(context: dg.AssetCheckExecutionContext, portfolio: PortfolioResource) -> dg.AssetCheckResult:
        project = portfolio.model(scope.name)
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


def build_checks(scope: ModelScope) -> list[dg.AssetChecksDefinition]:
    return [_schema_check(scope, "features"), _schema_check(scope, "labels")]
