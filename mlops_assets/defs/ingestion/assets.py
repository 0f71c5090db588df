"""Ingestion assets: the day's raw batch and its late-arriving labels, typed per the spec."""

import dagster as dg

from ...core.ingestion.ingest import RAW_TABLE, MissingFile, ingest
from ...core.ingestion.validation import BatchRejected
from ...core.io.storage import frame_fingerprint
from ..resources import PortfolioResource
from ..scope import OWNERS, ModelScope

INGEST_CODE_VERSION = "ingest-v1"


def _ingest_asset(scope: ModelScope, kind: str, description: str):
    @dg.asset(
        name=RAW_TABLE[kind], key_prefix=scope.key_prefix, partitions_def=scope.daily, group_name="ingestion",
        owners=OWNERS, kinds={"csv", "pandas", "parquet"}, code_version=INGEST_CODE_VERSION, description=description,
    )
    def _asset(context: dg.AssetExecutionContext, portfolio: PortfolioResource) -> dg.MaterializeResult:
        project = portfolio.model(scope.name)
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


def build_assets(scope: ModelScope) -> list[dg.AssetsDefinition]:
    spec = scope.spec
    return [
        _ingest_asset(
            scope, "features",
            f"The day's features file from the landing zone, typed per the {spec.name} spec. Unreadable files "
            "(empty, truncated, malformed) fail here and are moved to quarantine with the reason.",
        ),
        _ingest_asset(
            scope, "labels",
            f"The day's labels ({spec.target}), which land {spec.label_delay_days} day(s) after the features.",
        ),
    ]
