"""Training: a training set per as-of date (a manifest, not a copy) and the candidate model trained on it."""

import dagster as dg

from ...core.features.engineering import FEATURE_CODE_VERSION
from ...core.ingestion.landing import sha256_bytes
from ...core.training import candidate
from ...core.training.manifest import InsufficientDataError, TrainingManifest
from ..resources import PortfolioResource
from ..retries import STEP_RETRY_POLICY
from ..scope import OWNERS, ModelScope


def build_assets(scope: ModelScope) -> list[dg.AssetsDefinition]:
    spec = scope.spec
    window = dg.TimeWindowPartitionMapping(start_offset=-(spec.training.window_days - 1))

    @dg.asset(
        retry_policy=STEP_RETRY_POLICY,
        key_prefix=scope.key_prefix, partitions_def=scope.daily, group_name="training", owners=OWNERS,
        kinds={"duckdb", "json"}, code_version="training-set-v1",
        deps=[dg.AssetDep(scope.key("labeled_examples"), partition_mapping=window)],
        description=f"The {spec.training.window_days} labeled days up to the as-of date, split by time into train, "
                    f"validation and the {spec.training.benchmark_days} most recent days as the fixed benchmark. "
                    "Stored as a manifest of exact partitions and their data versions.",
    )
    def training_set(context: dg.AssetExecutionContext, portfolio: PortfolioResource) -> dg.MaterializeResult:
        project = portfolio.model(scope.name)
        try:
            manifest = candidate.plan_training_set(project.store, project.spec, context.partition_key)
        except InsufficientDataError as exc:
            raise dg.Failure(str(exc), metadata={"missing_days": len(exc.missing)},
                             allow_retries=False) from None
        project.store.write_json("training_set", context.partition_key, manifest.to_dict())
        return dg.MaterializeResult(
            data_version=dg.DataVersion(sha256_bytes(manifest.to_json().encode())),
            metadata={split: f"{days[0]} .. {days[-1]} ({len(days)} days)"
                      for split, days in manifest.splits.items()},
        )

    @dg.asset(
        retry_policy=STEP_RETRY_POLICY,
        key_prefix=scope.key_prefix, partitions_def=scope.daily, deps=[training_set], group_name="training",
        owners=OWNERS, kinds={"scikitlearn"}, code_version=f"candidate-v1/{FEATURE_CODE_VERSION}",
        check_specs=[dg.AssetCheckSpec("candidate_model_reproducible", asset=scope.key("candidate_model"),
                                       blocking=True,
                                       description="Retraining from the recorded lineage gives identical "
                                                   "predictions on the benchmark; a mismatch names what differs.")],
        description=f"One model version per as-of date: a scikit-learn Pipeline (the feature module's "
                    f"preprocessing + {spec.training.estimator}) with its lineage: data manifest, parameters, "
                    "seed, library versions, feature code version, git commit.",
    )
    def candidate_model(context: dg.AssetExecutionContext, portfolio: PortfolioResource):
        project = portfolio.model(scope.name)
        manifest = TrainingManifest.from_dict(
            project.store.read_json("training_set", context.partition_key))
        record, model = candidate.train_candidate(project.store, project.registry.artifacts, project.spec, manifest)
        project.store.write_json("candidate_model", context.partition_key, record.to_dict())
        repro = candidate.check_reproducible(project.store, project.spec, record, model.pipeline)
        lineage = record.lineage
        yield dg.MaterializeResult(
            data_version=dg.DataVersion(record.artifact.sha256),
            metadata={
                "version": record.version, "artifact_sha256": record.artifact.sha256,
                "artifact_bytes": record.artifact.size_bytes, "reference_sha256": record.reference.sha256,
                "estimator": lineage["estimator"],
                "seed": lineage["seed"], "git_commit": lineage["git_commit"], "train_rows": lineage["n_rows"],
                "train_seconds": round(record.train_seconds, 3),
                "library_versions": dg.MetadataValue.json(lineage["library_versions"]),
                "params": dg.MetadataValue.json(lineage["params"]),
            },
        )
        yield dg.AssetCheckResult(
            check_name="candidate_model_reproducible", passed=repro.identical,
            metadata={"summary": repro.summary(), "max_abs_diff": float(repro.max_abs_diff),
                      "rows_compared": repro.n_rows},
        )

    return [training_set, candidate_model]
