"""A candidate judged against the champion on its fixed benchmark: the report, the gates, and the gate
results grouped into the checks a person sees."""

from __future__ import annotations

from dataclasses import dataclass

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.evaluation.gate_names import GATE_CHECKS, check_of
from mlops_assets.core.evaluation.gates import GateReport, evaluate_gates
from mlops_assets.core.evaluation.leakage import analyse_target_leakage
from mlops_assets.core.evaluation.report import EvaluationReport, evaluate
from mlops_assets.core.io.storage import PartitionStore
from mlops_assets.core.training import trainer as training
from mlops_assets.core.training.candidate import CandidateRecord, load_split


@dataclass
class Evaluation:
    report: EvaluationReport
    gates: GateReport
    champion: str | None


def evaluate_candidate(store: PartitionStore, spec: DatasetSpec, record: CandidateRecord, candidate,
                       champion_version: str | None, champion) -> Evaluation:
    manifest = training.Lineage.from_dict(record.lineage).manifest
    benchmark = load_split(store, manifest, "benchmark")
    train = load_split(store, manifest, "train", verify=False)
    report = evaluate(spec, candidate, champion, benchmark, spec.gates)
    leakage = analyse_target_leakage(spec, train, benchmark, sample_rows=spec.gates.leakage_sample_rows,
                                     seed=spec.training.seed)
    gates = evaluate_gates(report, spec.gates, champion is not None, training_keys=train[spec.key_columns],
                           benchmark_keys=benchmark[spec.key_columns], leakage=leakage)
    return Evaluation(report, gates, champion_version)



def gate_checks(gates: GateReport) -> dict[str, list]:
    """Each named check's gate results (an empty list: the criterion does not apply to this candidate)."""
    out = {name: [] for name in GATE_CHECKS}
    for result in gates.results:
        check = check_of(result.name)
        if check:
            out[check].append(result)
    return out
