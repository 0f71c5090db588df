"""Evaluation: the candidate against the current champion on the same fixed benchmark, and the promotion
gates as blocking checks. Every evaluated candidate is recorded in the registry with its gate report, so a
failed one can still be forced through later, with a reason the audit log keeps."""

import dagster as dg

from ...core.evaluation.gates import comparison_champion
from ...core.evaluation.candidate import GATE_CHECKS, evaluate_candidate, gate_checks
from ...core.training.candidate import CandidateRecord, load_candidate
from ..metadata import table
from ..resources import PortfolioResource
from ..retries import STEP_RETRY_POLICY
from ..scope import OWNERS, ModelScope

GATE_RUNBOOK = (
    "Runbook: read the failing criterion's observed value, threshold and margin in this check's metadata and "
    "the evaluation report's tables and plots. A real regression: leave the champion in place and look at the "
    "training window (drift, bad labels). A gate that is wrong for this data: change [gates] in the dataset spec "
    "(reviewed like code). To ship anyway: `mlops promote VERSION --to canary --force --reason '...'` "
    "(recorded in the audit log)."
)
GATE_DESCRIPTIONS = {
    "gate_beats_champion": "The candidate beats or matches the champion on the key metric beyond bootstrap noise.",
    "gate_slices": "No slice's key metric is worse than the champion's by more than the budget.",
    "gate_first_model_floors": "With no champion yet, the candidate meets the absolute floors from config.",
    "gate_latency": "Scoring latency per 1,000 rows is within budget.",
    "gate_artifact_size": "The pickled model is within the size budget.",
    "gate_calibration": "Expected calibration error is within budget (classification).",
    "gate_no_row_overlap": "No benchmark row (by its key columns) is also in the training set.",
    "gate_no_target_leakage": "No feature gives the target away: no feature alone, and no linear fit of the numeric "
                              "features, predicts it near-deterministically on the benchmark when fitted on the "
                              "training rows, and no feature alone predicts it far better than the whole "
                              "candidate (thresholds: [gates] max_leakage_auc, max_leakage_r2, leakage_error_ratio). A "
                              "failure names the feature(s) and by how much; remove a field known only after "
                              "the outcome, or one computed from the target.",
}


def build_assets(scope: ModelScope) -> list[dg.AssetsDefinition]:
    spec = scope.spec
    check_specs = [
        dg.AssetCheckSpec(name, asset=scope.key("evaluation_report"), blocking=True,
                          description=f"{GATE_DESCRIPTIONS[name]} {GATE_RUNBOOK}")
        for name in GATE_CHECKS
    ]

    @dg.asset(
        retry_policy=STEP_RETRY_POLICY,
        key_prefix=scope.key_prefix, partitions_def=scope.daily, deps=[scope.key("candidate_model")],
        group_name="evaluation", owners=OWNERS,
        kinds={"scikitlearn", "json"}, code_version="evaluation-v1", check_specs=check_specs,
        description=f"Candidate vs champion on the candidate's fixed benchmark: metrics ({spec.key_metric} is the "
                    "key), slices, latency, size, bootstrap interval, ROC and calibration plots (residuals for "
                    "regression). The gates are this asset's checks.",
    )
    def evaluation_report(context: dg.AssetExecutionContext, portfolio: PortfolioResource):
        project = portfolio.model(scope.name)
        registry = project.registry
        record = CandidateRecord.from_dict(project.store.read_json("candidate_model", context.partition_key))
        candidate = load_candidate(registry.artifacts, record)
        champion_version = comparison_champion(record.version, registry.version_for("champion"))
        champion = registry.load_model(champion_version) if champion_version else None
        result = evaluate_candidate(project.store, project.spec, record, candidate, champion_version, champion)
        registry.register(
            record.version, dataset=project.spec.name, task=project.spec.task, lineage=record.lineage,
            metrics=result.report.to_dict(), gate_report=result.gates.to_dict(), gates_passed=result.gates.passed,
            artifact=record.artifact, run_id=context.run.run_id, actor="dagster:evaluation_report",
            key_metric=result.report.key_metric, reference=record.reference,
        )
        document = {"version": record.version, "champion": champion_version, "gates_passed": result.gates.passed,
                    "report": result.report.to_dict(), "gates": result.gates.to_dict()}
        project.store.write_json("evaluation_report", context.partition_key, document)
        key = result.report.key_metric
        yield dg.MaterializeResult(metadata={
            "version": record.version, "champion": champion_version or "(none: first model)",
            key: float(result.report.candidate.metrics[key]), "gates_passed": result.gates.passed,
            "gate_summary": result.gates.summary(),
            "metrics": table(result.report.metrics_table()),
            "slices": table(result.report.slice_table()),
            "report": dg.MetadataValue.md(result.report.markdown()),
        })
        for name, results in gate_checks(result.gates).items():
            if not results:
                yield dg.AssetCheckResult(check_name=name, passed=True,
                                          metadata={"applies": False, "why": "not applicable to this candidate"})
                continue
            yield dg.AssetCheckResult(
                check_name=name, passed=all(r.passed for r in results),
                metadata={"message": "; ".join(f"{r.name}: {r.message}" if len(results) > 1 else r.message
                                               for r in results),
                          "observed": _first(results, "observed"), "threshold": _first(results, "threshold"),
                          "margin": _first(results, "margin")},
            )

    return [evaluation_report]


def _first(results, field):
    """The field of the first failing result (the one to act on), else of the first result."""
    chosen = next((r for r in results if not r.passed), results[0])
    value = getattr(chosen, field)
    return float(value) if value is not None else None
