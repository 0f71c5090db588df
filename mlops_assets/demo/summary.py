"""The plain-language summary at the end of a replay, read back from what the run left behind: the registry
and its audit log, the monitoring reports and the prediction ledger. No Dagster here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlops_assets.core.training import trainer as training
from mlops_assets.core.serving.scoring import ledger_labels
from mlops_assets.core.serving.ledger import PredictionLedger
from mlops_assets.core.registry.model_registry import ModelRegistry
from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.io.storage import PartitionStore


@dataclass
class ReplaySummary:
    versions: int = 0
    gates_failed: int = 0
    champions: list[str] = field(default_factory=list)
    canaries: dict[str, int] = field(default_factory=dict)  # started / completed / rolled back
    rollbacks: int = 0
    alerts: list[tuple[str, str, str]] = field(default_factory=list)  # (day, axis, status)
    days_scored: int = 0
    accuracy_served: float | None = None
    accuracy_first_model: float | None = None
    labelled_rows: int = 0

    def lines(self) -> list[str]:
        out = [f"Models: {self.versions} trained and registered, {self.gates_failed} stopped by a gate, "
               f"{len(self.champions)} became champion ({', '.join(self.champions) or 'none'})."]
        c = self.canaries
        out.append(f"Canaries: {c.get('started', 0)} started, {c.get('completed', 0)} completed, "
                   f"{c.get('rolled_back', 0)} rolled back; champion rollbacks: {self.rollbacks}.")
        drift = [a for a in self.alerts if a[1] == "data drift"]
        if drift:
            errors = [d for d, _, s in drift if s == "ERROR"]
            out.append(f"Data-drift alerts: {len(drift)} days ({len(errors)} ERROR); first {drift[0][0]}, "
                       f"ERROR on {_ranges(errors) or 'no day'}.")
        else:
            out.append("Data-drift alerts: none.")
        perf = [a for a in self.alerts if a[1] == "performance"]
        out.append(f"Performance alerts: {len(perf)} days" + (f", first {perf[0][0]}." if perf else "."))
        if self.accuracy_served is not None:
            out.append(f"Accuracy over {self.days_scored} scored days ({self.labelled_rows} labelled rows): "
                       f"{self.accuracy_served:.3f} as served (with retraining) vs {self.accuracy_first_model:.3f} "
                       "for the first model never retrained.")
        return out


def _ranges(days: list[str]) -> str:
    """'1997-05-05..1997-05-07, 1997-05-20' from sorted ISO days."""
    if not days:
        return ""
    parts, start, prev = [], days[0], days[0]
    for d in days[1:] + [None]:
        if d is not None and (pd.Timestamp(d) - pd.Timestamp(prev)).days == 1:
            prev = d
            continue
        parts.append(start if start == prev else f"{start}..{prev}")
        if d is not None:
            start = prev = d
    return ", ".join(parts[:8]) + (f" and {len(parts) - 8} more" if len(parts) > 8 else "")


def summarise(spec: DatasetSpec, store: PartitionStore, registry: ModelRegistry, ledger: PredictionLedger) -> ReplaySummary:
    s = ReplaySummary()
    versions = registry.list_versions()
    s.versions = len(versions)
    s.gates_failed = sum(not v.gates_passed for v in versions)
    audit = registry.audit_log()
    s.champions = list(dict.fromkeys(e.version for e in audit if e.to_alias == "champion"))
    s.canaries = {
        "started": sum(e.action == "canary_start" for e in audit),
        "completed": sum(e.to_alias == "champion" and e.from_alias == "canary" for e in audit),
        "rolled_back": sum(e.to_alias == "archived" and e.from_alias == "canary" for e in audit),
    }
    s.rollbacks = sum(e.action == "rollback" for e in audit)
    for axis, asset in (("data drift", "data_drift_report"), ("performance", "performance_report")):
        for day in store.documents(asset):
            status = store.read_json(asset, day).get("status")
            if status in ("WARN", "ERROR"):
                s.alerts.append((day, axis, status))
    s.alerts.sort()
    _accuracy(spec, store, registry, ledger, s)
    return s


def _accuracy(spec, store, registry, ledger, s: ReplaySummary) -> None:
    if not spec.is_classification or not s.champions:
        return
    scored = [d for d in store.documents("scoring_stats") if store.exists("labeled_examples", d)]
    if not scored:
        return
    first = registry.load_model(s.champions[0])
    served_hits = first_hits = n = 0
    for day in scored:
        labeled = store.read("labeled_examples", day)
        labels = ledger_labels(labeled, spec)
        rows = ledger.day(day)
        acted = rows[rows["acted_on"]].merge(labels.assign(timestamp=labels["timestamp"].astype("datetime64[us]")),
                                             on=["entity", "timestamp"])
        served_hits += int((acted["decision"].to_numpy() == acted["label"].to_numpy()).sum())
        y = training.labels(spec, labeled)
        first_scores = training.predict_scores(first, spec, labeled)
        first_hits += int(((first_scores >= spec.deployment.decision_threshold) == y).sum())
        n += len(labeled)
    s.days_scored, s.labelled_rows = len(scored), n
    s.accuracy_served = served_hits / n if n else None
    s.accuracy_first_model = first_hits / n if n else None
    if s.accuracy_served is not None and np.isnan(s.accuracy_served):
        s.accuracy_served = None
