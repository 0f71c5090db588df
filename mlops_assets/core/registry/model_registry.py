"""The model registry: versions, their lifecycle aliases, and an append-only audit log, on DuckDB or PostgreSQL.

One code path serves both databases (see registry_db for the adapter); every operation is one transaction.
Lifecycle: `register` makes a version the candidate; `promote` moves it to shadow, canary, champion or
archived; `rollback` restores the previous known-good champion. A version holds at most one alias at a
time (its current stage); candidate, shadow, canary and champion are held by one version each, archived by
any number. Alias tenures are kept in `alias_history` (current = not ended), every transition in `audit_log`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mlops_assets.core.registry.artifacts import ArtifactError, ArtifactStore, StoredArtifact
from mlops_assets.core.registry.database import DuckDBBackend, RegistryError, Transaction, backend_for
from mlops_assets.core.config.settings import Settings
from mlops_assets.core.io.json_safe import json_safe

ALIASES = ("candidate", "shadow", "canary", "champion", "archived")
EXCLUSIVE_ALIASES = ("candidate", "shadow", "canary", "champion")
GATED_ALIASES = ("shadow", "canary", "champion")  # serve (or shadow) traffic: gates must have passed
PROMOTION_TARGETS = ("shadow", "canary", "champion", "archived")
VERSION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+\-]{0,127}")

_DDL = (
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
_VERSION_COLUMNS = (
    "version, dataset, task, created_at, registered_by, run_id, artifact_path, artifact_sha256, "
    "artifact_bytes, key_metric, lineage, metrics, gate_report, gates_passed"
)
_AUDIT_COLUMNS = "id, logged_at, actor, action, version, from_alias, to_alias, reason, forced, details"


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
    action: str  # register, supersede, promote, archive, rollback, restore
    version: str | None
    from_alias: str | None
    to_alias: str | None
    reason: str
    forced: bool
    details: dict


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _json(value) -> str:
    return json.dumps(json_safe(value if value is not None else {}), sort_keys=True)


# ----------------------------------------------------------------------------------------------- registry


class ModelRegistry:
    def __init__(self, url: str, artifacts: ArtifactStore):
        self._db = backend_for(url)
        self.artifacts = artifacts
        with self._db.transaction(write=True) as tx:
            for statement in _DDL:
                tx.rows(statement)

    @property
    def schema(self) -> str:
        return self._db.schema

    def __repr__(self) -> str:  # no URL: it may carry a password
        return f"ModelRegistry({type(self._db).__name__.removesuffix('Backend')}, schema={self.schema})"

    # -- writes

    def register(
        self, version: str, *, dataset: str, task: str, lineage: dict, metrics: dict, gate_report: dict,
        gates_passed: bool, artifact: StoredArtifact, run_id: str, actor: str, key_metric: str = "",
    ) -> ModelVersion:
        """Record a new version and make it the candidate; the same version and checksum again is a no-op.

        `lineage` should say how to rebuild the model: data manifest, code version, git commit, parameters,
        seed and library versions. The artifact's file must match its checksum before it is recorded.
        """
        if not isinstance(version, str) or not VERSION_NAME.fullmatch(version):
            raise RegistryError(f"invalid version name {version!r}: use letters, digits and . _ - : +")
        try:
            self.artifacts.verify(artifact.path, artifact.sha256)
        except ArtifactError as exc:
            raise RegistryError(f"cannot register {version}: {exc}") from exc
        with self._db.transaction(write=True) as tx:
            existing = tx.scalar("SELECT artifact_sha256 FROM {s}.model_versions WHERE version = ?", [version])
            if existing is not None:
                if existing != artifact.sha256:
                    raise RegistryError(
                        f"version {version} is already registered with artifact sha256 {existing}; "
                        f"refusing to re-register it with {artifact.sha256}"
                    )
                return self._get(tx, version)
            now = _now()
            seq = tx.next_id("model_versions", "seq")
            tx.rows(
                f"INSERT INTO {{s}}.model_versions (seq, {_VERSION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [seq, version, dataset, task, now, actor, run_id, artifact.path, artifact.sha256,
                 artifact.size_bytes, key_metric, _json(lineage), _json(metrics), _json(gate_report),
                 bool(gates_passed)],
            )
            previous = self._holder(tx, "candidate")
            if previous is not None:
                self._move(tx, previous, "candidate", None, actor, now, "supersede",
                           f"replaced as candidate by {version}")
            self._move(tx, version, None, "candidate", actor, now, "register", "",
                       details={"run_id": run_id, "artifact_sha256": artifact.sha256,
                                "gates_passed": bool(gates_passed)})
            return self._get(tx, version)

    def promote(self, version: str, to: str, *, actor: str, reason: str = "", force: bool = False) -> str | None:
        """Move `version` to alias `to`; returns the version it replaced there, if any.

        A version that failed its gates goes to shadow, canary or champion only with force=True and a reason.
        """
        if to not in PROMOTION_TARGETS:
            raise RegistryError(f"cannot promote to {to!r}: choose one of {', '.join(PROMOTION_TARGETS)}")
        with self._db.transaction(write=True) as tx:
            record = self._get(tx, version)
            current = record.aliases[0] if record.aliases else None
            if current == to:
                return None
            forced = False
            if to in GATED_ALIASES and not record.gates_passed:
                failed = ", ".join(_failed_gates(record.gate_report)) or "see its gate report"
                if not force:
                    raise RegistryError(
                        f"refusing to promote {version} to {to}: it did not pass its promotion gates ({failed}); "
                        "use --force with a --reason to override"
                    )
                if not reason.strip():
                    raise RegistryError(f"refusing to force {version} to {to} without a reason")
                forced = True
            if to == "archived" and current == "champion":
                raise RegistryError(
                    f"refusing to archive the champion {version}: promote another version or roll back instead"
                )
            now = _now()
            details = {"gates_passed": record.gates_passed}
            holder = self._holder(tx, to) if to in EXCLUSIVE_ALIASES else None
            if holder is not None:
                details["replaced"] = holder
                if to == "champion":  # the outgoing champion stays restorable as the previous known-good one
                    self._move(tx, holder, "champion", "archived", actor, now, "archive",
                               f"replaced as champion by {version}", details={"replaced_by": version})
                else:
                    self._move(tx, holder, to, None, actor, now, "supersede", f"replaced as {to} by {version}")
            self._move(tx, version, current, to, actor, now, "promote", reason, forced=forced, details=details)
            return holder

    def rollback(self, *, actor: str, reason: str = "") -> str:
        """Archive the champion (marked rolled back) and restore the previous known-good champion; returns it."""
        with self._db.transaction(write=True) as tx:
            current = self._holder(tx, "champion")
            if current is None:
                raise RegistryError("nothing to roll back: no version is champion")
            restored = self._previous_champion(tx, current)
            if restored is None:
                raise RegistryError(f"cannot roll back {current}: there is no previous known-good champion")
            now = _now()
            restored_from = tx.scalar(
                "SELECT alias FROM {s}.alias_history WHERE version = ? AND ended_at IS NULL", [restored]
            )
            self._move(tx, current, "champion", "archived", actor, now, "rollback", reason,
                       details={"restored": restored})
            sha = tx.scalar("SELECT artifact_sha256 FROM {s}.model_versions WHERE version = ?", [restored])
            self._move(tx, restored, restored_from, "champion", actor, now, "restore", reason,
                       details={"rolled_back_from": current, "artifact_sha256": sha})
            return restored

    def record(self, version: str, action: str, *, actor: str, reason: str = "", details: dict | None = None) -> None:
        """Append an audit entry that moves no alias: a canary ramp step, a window held, a guardrail read."""
        with self._db.transaction(write=True) as tx:
            self._get(tx, version)  # an entry about an unknown version is refused
            audit_id = tx.next_id("audit_log")
            tx.rows(f"INSERT INTO {{s}}.audit_log ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [audit_id, _now(), actor, action, version, None, None, reason or "", False, _json(details)])

    # -- queries

    def get(self, version: str) -> ModelVersion:
        with self._db.transaction(write=False) as tx:
            return self._get(tx, version)

    def list_versions(self) -> list[ModelVersion]:
        with self._db.transaction(write=False) as tx:
            current = dict(tx.rows("SELECT version, alias FROM {s}.alias_history WHERE ended_at IS NULL"))
            rows = tx.rows(f"SELECT {_VERSION_COLUMNS} FROM {{s}}.model_versions ORDER BY seq")
        return [_version_from_row(row, (current[row[0]],) if row[0] in current else ()) for row in rows]

    def version_for(self, alias: str) -> str | None:
        if alias not in EXCLUSIVE_ALIASES:
            raise RegistryError(f"{alias!r} is not a single-version alias; use one of {', '.join(EXCLUSIVE_ALIASES)}")
        with self._db.transaction(write=False) as tx:
            return self._holder(tx, alias)

    def versions_with(self, alias: str) -> list[str]:
        with self._db.transaction(write=False) as tx:
            rows = tx.rows("SELECT version FROM {s}.alias_history WHERE alias = ? AND ended_at IS NULL ORDER BY id",
                           [alias])
        return [r[0] for r in rows]

    def aliases_of(self, version: str) -> list[str]:
        return list(self.get(version).aliases)

    def alias_history(self, version: str) -> list[AliasTenure]:
        with self._db.transaction(write=False) as tx:
            self._get(tx, version)
            rows = tx.rows(
                "SELECT version, alias, started_at, started_by, ended_at, ended_by, end_action "
                "FROM {s}.alias_history WHERE version = ? ORDER BY id", [version])
        return [AliasTenure(*row) for row in rows]

    def previous_champion(self) -> str | None:
        """The version `rollback` would restore, if any."""
        with self._db.transaction(write=False) as tx:
            current = self._holder(tx, "champion")
            return self._previous_champion(tx, current) if current else None

    def audit_log(self, limit: int | None = None, version: str | None = None) -> list[AuditEntry]:
        """Audit entries oldest first; with `limit`, the most recent `limit` of them."""
        where, params = ("WHERE version = ?", [version]) if version is not None else ("", [])
        sql = f"SELECT {_AUDIT_COLUMNS} FROM {{s}}.audit_log {where} ORDER BY id DESC"
        if limit is not None:
            sql, params = sql + " LIMIT ?", params + [int(limit)]
        with self._db.transaction(write=False) as tx:
            rows = tx.rows(sql, params)
        return [AuditEntry(*row[:9], details=json.loads(row[9])) for row in reversed(rows)]

    def load_model(self, version: str):
        """Unpickle a version's model after checking the file against the checksum recorded at registration."""
        record = self.get(version)
        return self.artifacts.load(record.artifact.path, record.artifact.sha256)

    # -- helpers, all inside an open transaction

    def _get(self, tx: Transaction, version: str) -> ModelVersion:
        rows = tx.rows(f"SELECT {_VERSION_COLUMNS} FROM {{s}}.model_versions WHERE version = ?", [version])
        if not rows:
            raise RegistryError(f"unknown model version {version!r}")
        aliases = tx.rows("SELECT alias FROM {s}.alias_history WHERE version = ? AND ended_at IS NULL", [version])
        return _version_from_row(rows[0], tuple(a[0] for a in aliases))

    def _holder(self, tx: Transaction, alias: str) -> str | None:
        return tx.scalar("SELECT version FROM {s}.alias_history WHERE alias = ? AND ended_at IS NULL", [alias])

    def _previous_champion(self, tx: Transaction, current: str) -> str | None:
        # Walk champion tenures newest first; a version counts by its latest tenure, which must not have
        # ended in a rollback. Ordered by id, so two rollbacks in a row always give the same answer.
        seen = set()
        for version, end_action in tx.rows(
            "SELECT version, end_action FROM {s}.alias_history WHERE alias = 'champion' AND version <> ? "
            "ORDER BY id DESC", [current]
        ):
            if version not in seen:
                seen.add(version)
                if end_action != "rollback":
                    return version
        return None

    def _move(self, tx: Transaction, version: str, from_alias: str | None, to_alias: str | None, actor: str, now: str,
              action: str, reason: str, *, forced: bool = False, details: dict | None = None) -> None:
        """End `version`'s current tenure, start one under `to_alias` and append the audit entry."""
        if from_alias is not None:
            tx.rows("UPDATE {s}.alias_history SET ended_at = ?, ended_by = ?, end_action = ? "
                    "WHERE version = ? AND ended_at IS NULL", [now, actor, action, version])
        if to_alias is not None:
            tenure_id = tx.next_id("alias_history")
            tx.rows("INSERT INTO {s}.alias_history (id, version, alias, started_at, started_by) VALUES (?, ?, ?, ?, ?)",
                    [tenure_id, version, to_alias, now, actor])
        audit_id = tx.next_id("audit_log")
        tx.rows(f"INSERT INTO {{s}}.audit_log ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [audit_id, now, actor, action, version, from_alias, to_alias, reason or "", forced, _json(details)])


def _version_from_row(row: tuple, aliases: tuple[str, ...]) -> ModelVersion:
    (version, dataset, task, created_at, registered_by, run_id, path, sha, size, key_metric,
     lineage, metrics, gate_report, gates_passed) = row
    return ModelVersion(
        version=version, dataset=dataset, task=task, created_at=created_at, registered_by=registered_by,
        run_id=run_id, artifact=StoredArtifact(path=path, sha256=sha, size_bytes=int(size)),
        key_metric=key_metric, lineage=json.loads(lineage), metrics=json.loads(metrics),
        gate_report=json.loads(gate_report), gates_passed=bool(gates_passed), aliases=aliases,
    )


def _failed_gates(report: dict) -> list[str]:
    """Failed gate names from a stored gate report, as GateReport.to_dict() writes it (its "failures")."""
    return [str(name) for name in (report or {}).get("failures", [])]


def artifacts_dir_for(url: str, default: Path) -> Path:
    """Where a registry's artifacts live: in `artifacts/` next to a DuckDB file, else in `default`."""
    db = backend_for(url)
    return db.path.parent / "artifacts" if isinstance(db, DuckDBBackend) else Path(default)


def open_registry(settings: Settings, url: str | None = None, artifacts_dir: str | Path | None = None) -> ModelRegistry:
    """The registry of `settings` (or at an explicit URL), with its artifact store."""
    url = url or settings.registry
    root = Path(artifacts_dir) if artifacts_dir else artifacts_dir_for(url, settings.artifacts_dir)
    return ModelRegistry(url, ArtifactStore(root))
