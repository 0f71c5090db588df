"""Features: the day's feature table (shared with training and serving) and its labeled examples."""

import dagster as dg

from ...core.features.engineering import FEATURE_CODE_VERSION, engineer, join_labels
from ...core.io.storage import frame_fingerprint
from ..resources import PortfolioResource
from ..retries import STEP_RETRY_POLICY
from ..scope import OWNERS, ModelScope


def build_assets(scope: ModelScope) -> list[dg.AssetsDefinition]:
    @dg.asset(
        retry_policy=STEP_RETRY_POLICY,
        key_prefix=scope.key_prefix, partitions_def=scope.daily, deps=[scope.key("raw_batch")],
        group_name="features", owners=OWNERS, kinds={"pandas", "parquet"}, code_version=FEATURE_CODE_VERSION,
        description="The day's model inputs from mlops_assets/core/features/engineering.py: keys, typed "
                    "features, calendar features. Training and batch scoring both read this table.",
    )
    def feature_table(context: dg.AssetExecutionContext, portfolio: PortfolioResource) -> dg.MaterializeResult:
        project = portfolio.model(scope.name)
        partition = context.partition_key
        table = engineer(project.store.read("raw_batch", partition), project.spec)
        project.store.write("feature_table", partition, table)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(frame_fingerprint(table)),
            metadata={"dagster/row_count": len(table), "columns": ", ".join(table.columns)},
        )

    @dg.asset(
        retry_policy=STEP_RETRY_POLICY,
        key_prefix=scope.key_prefix, partitions_def=scope.daily,
        deps=[feature_table, scope.key("raw_labels")], group_name="features", owners=OWNERS,
        kinds={"pandas", "parquet"}, code_version="labeled-v1",
        description=f"The day's feature table joined with its labels ({scope.spec.target}) once they have "
                    "landed; rows without a label are left out and counted in `label_coverage`.",
    )
    def labeled_examples(context: dg.AssetExecutionContext, portfolio: PortfolioResource) -> dg.MaterializeResult:
        project = portfolio.model(scope.name)
        partition, spec = context.partition_key, project.spec
        features = project.store.read("feature_table", partition)
        joined, coverage = join_labels(features, project.store.read("raw_labels", partition), spec)
        project.store.write("labeled_examples", partition, joined)
        metadata = {"dagster/row_count": len(joined), "label_coverage": round(coverage, 4)}
        if spec.is_classification and len(joined):
            metadata["positive_rate"] = round(float((joined[spec.target] == spec.positive_label).mean()), 4)
        return dg.MaterializeResult(data_version=dg.DataVersion(frame_fingerprint(joined)), metadata=metadata)

    return [feature_table, labeled_examples]
