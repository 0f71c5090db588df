"""Ingestion assets: the day's raw batch and its late-arriving labels, typed per the spec, each with the spec's
pandera schema as an inline blocking check (`raw_batch_matches_spec`, `raw_labels_matches_spec`).

The batch is validated BEFORE its table is written: a version that fails is quarantined and the day's raw table
keeps its previously accepted version (the check fails, with its failure table, and blocks the day's downstream
steps); a version that passes replaces it and its bytes are archived. The logic is core/ingestion/ingest.py's:
the file is streamed (DuckDB reads it into Parquet and checks it with SQL), so memory stays bounded whatever its
size, and its progress (bytes read, rows typed, checks run) goes to the run's log. The data version is the
written table's content hash (PartitionStore.fingerprint)."""

import datetime as dt

import dagster as dg

from ...core.ingestion.ingest import RAW_TABLE, MissingFile, ingest
from ...core.ingestion.volume import acceptance_for, expected_counts, judge_volume
from ...core.ingestion.validation import BatchRejected
from ..metadata import table
from ..resources import PortfolioResource
from ..retries import STEP_RETRY_POLICY
from ..scope import OWNERS, ModelScope

INGEST_CODE_VERSION = "ingest-v2"

RUNBOOK = (
    "Runbook: open this check's failure table (column, check, count, examples) and the quarantined file "
    "named in `quarantined_as`; `kept` says which accepted version the day still uses. Fix the producer or the "
    "file, then re-deliver a corrected file to the landing zone: the landing sensor sees its new hash and "
    "re-runs the day. If the data is right and the spec is wrong (a new category, a wider range), change the "
    "dataset spec and re-deliver the file (or re-run the day)."
)


VOLUME_CHECK = "raw_batch_volume_expected"
VOLUME_RUNBOOK = (
    "Runbook: compare `rows` with `expected` and `lower_bound` in this check's metadata. A partial delivery "
    "(an export cut short, a source down for part of the day): re-deliver the complete file; the landing sensor "
    "re-runs the day. A genuinely small day (a holiday, a known outage): record it with `mlops accept-volume DAY "
    "--model MODEL --reason '...'`, then re-materialise the day's raw_batch and feature_table (UI: the asset's "
    "partition, or the daily ingestion job): this version of the day then passes, with the reason in the check's "
    "metadata. Until then the day does not reach feature_table, so training (which names the missing day) and "
    "scoring do not use it."
)


def volume_check_spec(scope: ModelScope) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        VOLUME_CHECK, asset=scope.key("raw_batch"), blocking=True, partitions_def=scope.daily,
        description="The day's row count is not far below the expected volume: the champion's training days' "
                    "counts (before any champion, the accepted days so far), with a lower bound from their own "
                    f"spread (at least a Poisson count's; [ingestion] volume_z). {VOLUME_RUNBOOK}",
    )


def _ingest_asset(scope: ModelScope, kind: str, description: str):
    name = RAW_TABLE[kind]
    check_name = f"{name}_matches_spec"
    schema_check = dg.AssetCheckSpec(
        check_name, asset=scope.key(name), blocking=True, partitions_def=scope.daily,
        description=f"Every column, dtype, range, category, null, duplicate and timestamp rule of the dataset "
                    f"spec holds for the day's {kind}, checked before the table is written. {RUNBOOK}",
    )
    check_specs = [schema_check] + ([volume_check_spec(scope)] if kind == "features" else [])

    @dg.asset(
        retry_policy=STEP_RETRY_POLICY,
        name=name, key_prefix=scope.key_prefix, partitions_def=scope.daily, group_name="ingestion",
        owners=OWNERS, kinds={"csv", "duckdb", "parquet"}, code_version=INGEST_CODE_VERSION, description=description,
        check_specs=check_specs,
    )
    def _asset(context: dg.AssetExecutionContext, portfolio: PortfolioResource) -> dg.MaterializeResult:
        project = portfolio.model(scope.name)
        partition = context.partition_key
        try:
            outcome = ingest(project.landing, project.archive, project.quarantine, project.store, project.spec,
                             kind, partition, progress=context.log.info)
        except MissingFile as exc:
            raise dg.Failure(description=str(exc), metadata={"partition": partition, "reason": str(exc)},
                             allow_retries=False) from None
        except BatchRejected as exc:
            record, kept = getattr(exc, "quarantined", None), getattr(exc, "kept", None)
            raise dg.Failure(description=str(exc), metadata={
                "partition": partition, "file": exc.file, "reason": exc.reason, "column": exc.column or "",
                "quarantined_as": project.quarantine.location(record.stored_as) if record else "(not quarantined)",
                "kept": f"{kept.file} sha256 {kept.sha256} (archive/{kept.stored_as})" if kept
                        else "no accepted version of this day yet",
            }, allow_retries=False) from None

        result, source = outcome.validation, outcome.source
        check_metadata = {"partition": partition, "file": source.file, "file_sha256": source.sha256,
                          "source": source.origin, "rows": result.rows, "summary": result.summary()}
        metadata = {"file": source.file, "file_sha256": source.sha256, "source": source.origin}
        if outcome.accepted:
            check_metadata["archived_as"] = project.archive.location(outcome.archived.stored_as)
            metadata.update({"dagster/row_count": outcome.rows, "accepted": True,
                             "archived_as": check_metadata["archived_as"],
                             "columns": ", ".join(map(str, outcome.columns))})
            data_version = outcome.fingerprint
        else:
            record = outcome.quarantined
            check_metadata.update({
                "failures": table(result.table()), "failed_cases": result.failed_rows,
                "quarantined_as": project.quarantine.location(record.stored_as) if record
                                  else "(not quarantined: this is the archived accepted version)",
                "kept": outcome.kept_text(),
            })
            metadata.update({"accepted": False, "rejected_rows": result.rows, "kept": outcome.kept_text()})
            data_version = (project.store.fingerprint(name, partition)
                            if project.store.exists(name, partition) else "no-accepted-version")
        # The asset cannot be subset, so its inline check always runs with it (Dagster refuses a selection of
        # the asset without the check): the gate cannot be skipped.
        checks = [dg.AssetCheckResult(check_name=check_name, passed=result.passed, metadata=check_metadata,
                                      severity=dg.AssetCheckSeverity.ERROR)]
        if kind == "features" and scope.check_key(name, VOLUME_CHECK) in context.selected_asset_check_keys:
            checks.append(_volume_result(project, partition, outcome))
        return dg.MaterializeResult(data_version=dg.DataVersion(data_version), metadata=metadata,
                                    check_results=checks)

    return _asset


def _volume_result(project, partition: str, outcome) -> dg.AssetCheckResult:
    """The accepted day's rows against the expected volume; a rejected file is the schema check's to block."""
    if not outcome.accepted:
        return dg.AssetCheckResult(check_name=VOLUME_CHECK, passed=True, metadata={
            "partition": partition, "message": "not judged: the file was rejected by raw_batch_matches_spec"})
    day, registry = dt.date.fromisoformat(partition), project.registry
    counts, source = expected_counts(project.store, day, project.spec.ingestion, registry.version_for("champion"),
                                     registry.load_reference)
    verdict = judge_volume(outcome.rows, day, counts, source, project.spec.ingestion,
                           acceptance_for(project.store, partition, outcome.fingerprint))
    return dg.AssetCheckResult(check_name=VOLUME_CHECK, passed=verdict.passed, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"partition": partition, **verdict.metadata()})


def build_assets(scope: ModelScope) -> list[dg.AssetsDefinition]:
    spec = scope.spec
    return [
        _ingest_asset(
            scope, "features",
            f"The day's features file from the landing zone (or, on a re-run, its archived accepted version), "
            f"typed and validated per the {spec.name} spec before it is written. Unreadable files (empty, "
            "truncated, malformed, not UTF-8) fail here; files breaking the spec fail the check. Either way the "
            "file is quarantined and the day keeps its previous accepted version.",
        ),
        _ingest_asset(
            scope, "labels",
            f"The day's labels ({spec.target}), which land {spec.label_delay_days} day(s) after the features; "
            "validated before they are written, like the features.",
        ),
    ]
