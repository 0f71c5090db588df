"""What the registry stores: its tables, the records it returns, and the rules for names and aliases."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from mlops_assets.core.evaluation.gate_names import labelled
from mlops_assets.core.io.json_safe import json_safe
from mlops_assets.core.registry.artifacts import StoredArtifact

ALIASES = ("candidate", "shadow", "canary", "champion", "archived")
EXCLUSIVE_ALIASES = ("candidate", "shadow", "canary", "champion")
GATED_ALIASES = ("shadow", "canary", "champion")  # serve (or shadow) traffic: gates must have passed
PROMOTION_TARGETS = ("shadow", "canary", "champion", "archived")
VERSION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+\-]{0,127}")

DDL = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    """CREATE TABLE IF NOT EXISTS {s}.model_versions (
        version TEXT PRIMARY KEY, seq BIGINT NOT NULL, dataset TEXT NOT NULL, task TEXT NOT NULL,
        created_at TEXT NOT NULL, registered_by TEXT NOT NULL, run_id TEXT NOT NULL,
        artifact_path TEXT NOT NULL, artifact_sha256 TEXT NOT NULL, artifact_bytes BIGINT NOT NULL,
        key_metric TEXT NOT NULL, lineage TEXT NOT NULL, metrics TEXT NOT NULL, gate_report TEXT NOT NULL,
        gates_passed BOOLEAN NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS {s}.alias_history (
        id BIGINT PRIMARY KEY, version TEXT NOT NULL, alias TEXT NOT NULL,
        started_at TEXT NOT NULL, started_by TEXT NOT NULL,
        ended_at TEXT, ended_by TEXT, end_action TEXT)""",
    """CREATE TABLE IF NOT EXISTS {s}.audit_log (
        id BIGINT PRIMARY KEY, logged_at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, version TEXT,
        from_alias TEXT, to_alias TEXT, reason TEXT NOT NULL, forced BOOLEAN NOT NULL, details TEXT NOT NULL)""",
)
# Columns added to model_versions after its first release: added to existing databases when a registry opens
# them, nullable (versions registered before have none).
ADDED_VERSION_COLUMNS = (
    ("reference_path", "TEXT"), ("reference_sha256", "TEXT"), ("reference_bytes", "BIGINT"),
)
VERSION_COLUMNS = (
    "version, dataset, task, created_at, registered_by, run_id, artifact_path, artifact_sha256, "
    "artifact_bytes, key_metric, lineage, metrics, gate_report, gates_passed, "
    "reference_path, reference_sha256, reference_bytes"
)
AUDIT_COLUMNS = "id, logged_at, actor, action, version, from_alias, to_alias, reason, forced, details"


@dataclass(frozen=True)
class ModelVersion:
    version: str
    dataset: str
    task: str
    created_at: str  # ISO-8601, UTC
    registered_by: str
    run_id: str
    artifact: StoredArtifact
    key_metric: str
    lineage: dict
    metrics: dict
    gate_report: dict
    gates_passed: bool
    aliases: tuple[str, ...] = ()  # current alias(es) when the record was read
    reference: StoredArtifact | None = None  # its monitoring reference (None: registered without one)


@dataclass(frozen=True)
class AliasTenure:
    version: str
    alias: str
    started_at: str
    started_by: str
    ended_at: str | None
    ended_by: str | None
    end_action: str | None  # the audit action that ended it, e.g. "promote", "rollback"

    @property
    def rolled_back(self) -> bool:
        return self.end_action == "rollback"


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    action: str  # register, supersede, promote, retire, archive, rollback, restore, attach_reference (+ `record`'s)
    version: str | None
    from_alias: str | None
    to_alias: str | None
    reason: str
    forced: bool
    details: dict


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def json_text(value) -> str:
    return json.dumps(json_safe(value if value is not None else {}), sort_keys=True)


def version_from_row(row: tuple, aliases: tuple[str, ...]) -> ModelVersion:
    (version, dataset, task, created_at, registered_by, run_id, path, sha, size, key_metric,
     lineage, metrics, gate_report, gates_passed, ref_path, ref_sha, ref_size) = row
    reference = (StoredArtifact(path=ref_path, sha256=ref_sha, size_bytes=int(ref_size or 0))
                 if ref_path is not None and ref_sha is not None else None)
    return ModelVersion(
        version=version, dataset=dataset, task=task, created_at=created_at, registered_by=registered_by,
        run_id=run_id, artifact=StoredArtifact(path=path, sha256=sha, size_bytes=int(size)),
        key_metric=key_metric, lineage=json.loads(lineage), metrics=json.loads(metrics),
        gate_report=json.loads(gate_report), gates_passed=bool(gates_passed), aliases=aliases, reference=reference,
    )


def failed_gates(report: dict) -> list[str]:
    """Failed gates from a stored gate report, as GateReport.to_dict() writes it (its "failures"), each named
    as the UI's check shows it, then the criterion (`gate_slices: slice_regression`)."""
    return [labelled(str(name)) for name in (report or {}).get("failures", [])]
