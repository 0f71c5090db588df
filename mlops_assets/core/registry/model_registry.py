"""The model registry: versions, their lifecycle aliases, and an append-only audit log, on DuckDB or PostgreSQL.

One code path serves both databases (see database.py for the adapter; records.py for what is stored); every operation is one transaction.
Lifecycle: `register` makes a version the candidate; `promote` moves it to shadow, canary, champion or
archived; `rollback` restores the previous known-good champion. A version holds at most one alias at a
time (its current stage); candidate, shadow, canary and champion are held by one version each, archived by
any number. Alias tenures are kept in `alias_history` (current = not ended), every transition in `audit_log`.

A model that has a champion keeps one unless it is retired on purpose (`retire`, audited). A version goes
to a serving alias (promotion, rollback) only if its files match their recorded sha256 (`file_problems`).

Each version may carry its monitoring reference (drift profile, calibrator, baselines), a JSON file stored
beside its artifact whose path and sha256 are recorded with the version; `load_reference` checks the file
against that checksum before parsing it. Rows registered before references were recorded have NULL there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.core.io.objects import ObjectStore, open_object_store
from mlops_assets.core.registry.artifacts import ArtifactError, ArtifactIntegrityError, ArtifactStore, StoredArtifact
from mlops_assets.core.registry.database import DuckDBBackend, RegistryError, Transaction, backend_for
from mlops_assets.core.config.settings import Settings
from mlops_assets.core.registry.records import (  # noqa: F401  (re-exported: the registry's public names)
    ADDED_VERSION_COLUMNS, AUDIT_COLUMNS, DDL, EXCLUSIVE_ALIASES, GATED_ALIASES, PROMOTION_TARGETS, VERSION_COLUMNS,
    VERSION_NAME, AliasTenure, AuditEntry, ModelVersion, failed_gates, json_text, utc_now, version_from_row)

if TYPE_CHECKING:  # imported when a reference is read: it pulls in scikit-learn, which the CLI need not load
    from mlops_assets.core.monitoring.reference import MonitoringReference

# ----------------------------------------------------------------------------------------------- registry


class ModelRegistry:
    """One registry for every model of the portfolio. Exclusive aliases (candidate, shadow, canary, champion)
    are held once per model (a version's `dataset`); `for_model` gives a view scoped to one model, which is
    what the Dagster assets and `mlops --model` use."""

    def __init__(self, url: str, artifacts: ArtifactStore, model: str | None = None, *, _db=None):
        self.model = model
        self.artifacts = artifacts
        if _db is not None:
            self._db = _db
            return
        self._db = backend_for(url)
        with self._db.transaction(write=True) as tx:
            for statement in DDL:
                tx.rows(statement)
            present = {row[0] for row in tx.rows(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                [self._db.schema, "model_versions"])}
            for column, kind in ADDED_VERSION_COLUMNS:
                if column not in present:  # (writers are serialised; IF NOT EXISTS is belt and braces)
                    tx.rows(f"ALTER TABLE {{s}}.model_versions ADD COLUMN IF NOT EXISTS {column} {kind}")

    def for_model(self, model: str) -> "ModelRegistry":
        """The same registry, scoped to one model's versions, aliases and audit entries."""
        return ModelRegistry("", self.artifacts, model, _db=self._db)

    def models(self) -> list[str]:
        with self._db.transaction(write=False) as tx:
            return [r[0] for r in tx.rows("SELECT DISTINCT dataset FROM {s}.model_versions ORDER BY dataset")]

    @property
    def schema(self) -> str:
        return self._db.schema

    def __repr__(self) -> str:  # no URL: it may carry a password
        return f"ModelRegistry({type(self._db).__name__.removesuffix('Backend')}, schema={self.schema})"

    # -- writes

    def register(
        self, version: str, *, dataset: str, task: str, lineage: dict, metrics: dict, gate_report: dict,
        gates_passed: bool, artifact: StoredArtifact, run_id: str, actor: str, key_metric: str = "",
        reference: StoredArtifact | None = None,
    ) -> ModelVersion:
        """Record a new version and make it the candidate; the same version and checksum again is a no-op.

        `lineage` should say how to rebuild the model: data manifest, code version, git commit, parameters,
        seed and library versions. `reference` is the version's monitoring reference, stored as JSON beside
        the artifact. Both files must match their checksums (and the reference must parse) before they are
        recorded. Registering an existing version again keeps its recorded reference; it only fills one in
        for a version registered without any.
        """
        if not isinstance(version, str) or not VERSION_NAME.fullmatch(version):
            raise RegistryError(f"invalid version name {version!r}: use letters, digits and . _ - : +")
        if self.model is not None and dataset != self.model:
            raise RegistryError(f"cannot register {version} of model {dataset!r} in the registry view of {self.model!r}")
        try:
            self.artifacts.verify(artifact.path, artifact.sha256)
        except ArtifactError as exc:
            raise RegistryError(f"cannot register {version}: {exc}") from exc
        if reference is not None:
            self._read_reference(version, reference, "cannot register")
        with self._db.transaction(write=True) as tx:
            existing = tx.rows("SELECT artifact_sha256, reference_sha256 FROM {s}.model_versions WHERE version = ?",
                               [version])
            if existing:
                existing_sha, existing_reference = existing[0]
                if existing_sha != artifact.sha256:
                    raise RegistryError(
                        f"version {version} is already registered with artifact sha256 {existing_sha}; "
                        f"refusing to re-register it with {artifact.sha256}"
                    )
                if existing_reference is None and reference is not None:
                    tx.rows("UPDATE {s}.model_versions SET reference_path = ?, reference_sha256 = ?, "
                            "reference_bytes = ? WHERE version = ?",
                            [reference.path, reference.sha256, reference.size_bytes, version])
                    audit_id = tx.next_id("audit_log")
                    tx.rows(f"INSERT INTO {{s}}.audit_log ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [audit_id, utc_now(), actor, "attach_reference", version, None, None,
                             "monitoring reference recorded", False,
                             json_text({"run_id": run_id, "reference_sha256": reference.sha256})])
                return self._get(tx, version)
            now = utc_now()
            seq = tx.next_id("model_versions", "seq")
            ref = (reference.path, reference.sha256, reference.size_bytes) if reference else (None, None, None)
            tx.rows(
                f"INSERT INTO {{s}}.model_versions (seq, {VERSION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [seq, version, dataset, task, now, actor, run_id, artifact.path, artifact.sha256,
                 artifact.size_bytes, key_metric, json_text(lineage), json_text(metrics), json_text(gate_report),
                 bool(gates_passed), *ref],
            )
            previous = self._holder(tx, "candidate", dataset)
            if previous is not None:
                self._move(tx, previous, "candidate", None, actor, now, "supersede",
                           f"replaced as candidate by {version}")
            self._move(tx, version, None, "candidate", actor, now, "register", "",
                       details={"run_id": run_id, "artifact_sha256": artifact.sha256,
                                "reference_sha256": reference.sha256 if reference else None,
                                "gates_passed": bool(gates_passed)})
            return self._get(tx, version)

    def promote(self, version: str, to: str, *, actor: str, reason: str = "", force: bool = False) -> str | None:
        """Move `version` to alias `to`; returns the version it replaced there, if any.

        A version that failed its gates goes to shadow, canary or champion only with force=True and a reason.
        The champion moves to no other alias: it is replaced (promote another version, roll back) or retired
        (to "archived" with force=True and a reason, audited as `retire`). A version goes to shadow, canary
        or champion only if its files match their recorded checksums; nothing changes otherwise.
        """
        if to not in PROMOTION_TARGETS:
            raise RegistryError(f"cannot promote to {to!r}: choose one of {', '.join(PROMOTION_TARGETS)}")
        with self._db.transaction(write=True) as tx:
            record = self._get(tx, version)
            current = record.aliases[0] if record.aliases else None
            if current == to:
                return None
            forced, action = False, "promote"
            if current == "champion":
                if to != "archived" or not force:
                    raise RegistryError(
                        f"refusing to {'archive' if to == 'archived' else 'move'} the champion {version}"
                        f"{'' if to == 'archived' else ' to ' + to}: model {record.dataset} would be left without a "
                        "champion; promote another version to champion or roll back instead"
                        + (", or retire it on purpose with --force and a --reason" if to == "archived" else ""))
                if not reason.strip():
                    raise RegistryError(f"refusing to retire the champion {version} without a reason")
                forced, action = True, "retire"
            if to in GATED_ALIASES and not record.gates_passed:
                failed = ", ".join(failed_gates(record.gate_report)) or "see its gate report"
                if not force:
                    raise RegistryError(
                        f"refusing to promote {version} to {to}: it did not pass its promotion gates ({failed}); "
                        "use --force with a --reason to override"
                    )
                if not reason.strip():
                    raise RegistryError(f"refusing to force {version} to {to} without a reason")
                forced = True
            if to in GATED_ALIASES:
                self._require_intact(record, f"refusing to promote {version} to {to}")
            now = utc_now()
            details = {"gates_passed": record.gates_passed}
            holder = self._holder(tx, to, record.dataset) if to in EXCLUSIVE_ALIASES else None
            if holder is not None:
                details["replaced"] = holder
                if to == "champion":  # the outgoing champion stays restorable as the previous known-good one
                    self._move(tx, holder, "champion", "archived", actor, now, "archive",
                               f"replaced as champion by {version}", details={"replaced_by": version})
                else:
                    self._move(tx, holder, to, None, actor, now, "supersede", f"replaced as {to} by {version}")
            self._move(tx, version, current, to, actor, now, action, reason, forced=forced, details=details)
            return holder

    def retire(self, version: str, *, actor: str, reason: str) -> None:
        """Archive the champion on purpose, leaving its model without one (audited as `retire`, forced)."""
        if "champion" not in self.get(version).aliases:  # (promote checks again inside its transaction)
            raise RegistryError(f"cannot retire {version}: {version} is not the champion")
        self.promote(version, "archived", actor=actor, reason=reason, force=True)

    def rollback(self, *, actor: str, reason: str = "") -> str:
        """Archive the champion (marked rolled back) and restore the previous known-good champion; returns it."""
        with self._db.transaction(write=True) as tx:
            model = self._scope(tx)
            current = self._holder(tx, "champion", model)
            if current is None:
                raise RegistryError("nothing to roll back: no version is champion" + (f" of model {model}" if model else ""))
            restored = self._previous_champion(tx, current, model)
            if restored is None:
                raise RegistryError(f"cannot roll back {current}: there is no previous known-good champion")
            self._require_intact(self._get(tx, restored),
                                 f"refusing to roll back to {restored} ({current} stays champion)")
            now = utc_now()
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
            tx.rows(f"INSERT INTO {{s}}.audit_log ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [audit_id, utc_now(), actor, action, version, None, None, reason or "", False, json_text(details)])

    # -- queries

    def get(self, version: str) -> ModelVersion:
        with self._db.transaction(write=False) as tx:
            return self._get(tx, version)

    def list_versions(self) -> list[ModelVersion]:
        where, params = ("WHERE dataset = ?", [self.model]) if self.model else ("", [])
        with self._db.transaction(write=False) as tx:
            current = dict(tx.rows("SELECT version, alias FROM {s}.alias_history WHERE ended_at IS NULL"))
            rows = tx.rows(f"SELECT {VERSION_COLUMNS} FROM {{s}}.model_versions {where} ORDER BY seq", params)
        return [version_from_row(row, (current[row[0]],) if row[0] in current else ()) for row in rows]

    def version_for(self, alias: str) -> str | None:
        if alias not in EXCLUSIVE_ALIASES:
            raise RegistryError(f"{alias!r} is not a single-version alias; use one of {', '.join(EXCLUSIVE_ALIASES)}")
        with self._db.transaction(write=False) as tx:
            return self._holder(tx, alias, self._scope(tx))

    def versions_with(self, alias: str) -> list[str]:
        where, params = (" AND v.dataset = ?", [self.model]) if self.model else ("", [])
        with self._db.transaction(write=False) as tx:
            rows = tx.rows("SELECT a.version FROM {s}.alias_history a JOIN {s}.model_versions v ON v.version = a.version "
                           f"WHERE a.alias = ? AND a.ended_at IS NULL{where} ORDER BY a.id", [alias, *params])
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

    def serving_aliases(self) -> dict[str, str | None]:
        """champion, canary, shadow and previous_champion (what `rollback` would restore) in one read: the
        online service asks this every poll, and each transaction opens the database (DuckDB: ~20 ms)."""
        with self._db.transaction(write=False) as tx:
            model = self._scope(tx)
            out = {alias: self._holder(tx, alias, model) for alias in ("champion", "canary", "shadow")}
            out["previous_champion"] = (self._previous_champion(tx, out["champion"], model)
                                        if out["champion"] else None)
        return out

    def change_token(self):
        """Something that changes whenever the registry's database may have changed (DuckDB: its files' stat),
        with the newest modification time it covers; None when no cheap token exists (PostgreSQL: ask)."""
        return self._db.change_token()

    def previous_champion(self) -> str | None:
        """The version `rollback` would restore, if any."""
        with self._db.transaction(write=False) as tx:
            model = self._scope(tx)
            current = self._holder(tx, "champion", model)
            return self._previous_champion(tx, current, model) if current else None

    def audit_log(self, limit: int | None = None, version: str | None = None) -> list[AuditEntry]:
        """Audit entries oldest first; with `limit`, the most recent `limit` of them."""
        conditions, params = [], []
        if version is not None:
            conditions, params = ["version = ?"], [version]
        if self.model is not None:
            conditions.append("version IN (SELECT version FROM {s}.model_versions WHERE dataset = ?)")
            params.append(self.model)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"SELECT {AUDIT_COLUMNS} FROM {{s}}.audit_log {where} ORDER BY id DESC"
        if limit is not None:
            sql, params = sql + " LIMIT ?", params + [int(limit)]
        with self._db.transaction(write=False) as tx:
            rows = tx.rows(sql, params)
        return [AuditEntry(*row[:9], details=json.loads(row[9])) for row in reversed(rows)]

    def load_model(self, version: str):
        """Unpickle a version's model after checking the file against the checksum recorded at registration."""
        record = self.get(version)
        return self.artifacts.load(record.artifact.path, record.artifact.sha256)

    def load_reference(self, version: str) -> MonitoringReference:
        """A version's own monitoring reference, parsed only after its file matches the recorded checksum.

        Raises RegistryError when the version has no reference recorded, or its file is missing or not a
        monitoring reference; ArtifactIntegrityError when the file's checksum does not match.
        """
        record = self.get(version)
        if record.reference is None:
            raise RegistryError(
                f"model version {version} has no monitoring reference recorded (registered without one); "
                "retrain its as-of date, or register it again with its reference"
            )
        return self._read_reference(version, record.reference, "cannot load the monitoring reference of")

    def _read_reference(self, version: str, reference: StoredArtifact, doing: str) -> MonitoringReference:
        from mlops_assets.core.monitoring.reference import MonitoringReference

        try:
            raw = self.artifacts.load_json(reference.path, reference.sha256)
        except ArtifactIntegrityError as exc:
            raise ArtifactIntegrityError(f"{doing} {version}: {exc}") from exc
        except (ArtifactError, ValueError) as exc:  # missing file, path outside the store, not JSON
            raise RegistryError(f"{doing} {version}: {exc}") from exc
        try:
            return MonitoringReference.from_dict(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"{doing} {version}: {reference.path} is not a monitoring reference ({exc!r})") from exc

    def file_problems(self, version: str | ModelVersion) -> list[str]:
        """What is wrong with a version's stored files (its artifact; its monitoring reference when recorded):
        one line each, naming the file; [] when every file matches its recorded sha256."""
        record = version if isinstance(version, ModelVersion) else self.get(version)
        problems = []
        for what, stored in (("artifact", record.artifact), ("monitoring reference", record.reference)):
            problem = self.artifacts.problem(stored.path, stored.sha256) if stored is not None else None
            if problem:
                problems.append(f"its {what} {problem}")
        return problems

    def _require_intact(self, record: ModelVersion, refusal: str) -> None:
        problems = self.file_problems(record)
        if problems:
            raise RegistryError(f"{refusal}: {'; '.join(problems)}")

    # -- helpers, all inside an open transaction

    def _get(self, tx: Transaction, version: str) -> ModelVersion:
        rows = tx.rows(f"SELECT {VERSION_COLUMNS} FROM {{s}}.model_versions WHERE version = ?", [version])
        if not rows:
            raise RegistryError(f"unknown model version {version!r}")
        if self.model is not None and rows[0][1] != self.model:
            raise RegistryError(f"version {version!r} belongs to model {rows[0][1]!r}, not {self.model!r}")
        aliases = tx.rows("SELECT alias FROM {s}.alias_history WHERE version = ? AND ended_at IS NULL", [version])
        return version_from_row(rows[0], tuple(a[0] for a in aliases))

    def _scope(self, tx: Transaction) -> str | None:
        """The model an alias question is about: this view's, else the registry's only model."""
        if self.model is not None:
            return self.model
        models = [r[0] for r in tx.rows("SELECT DISTINCT dataset FROM {s}.model_versions")]
        if len(models) > 1:
            raise RegistryError(f"the registry holds several models ({', '.join(sorted(models))}): name one "
                                "(--model NAME)")
        return models[0] if models else None

    def _holder(self, tx: Transaction, alias: str, model: str | None) -> str | None:
        return tx.scalar("SELECT a.version FROM {s}.alias_history a JOIN {s}.model_versions v ON v.version = a.version "
                         "WHERE a.alias = ? AND a.ended_at IS NULL AND v.dataset = ?", [alias, model])

    def _previous_champion(self, tx: Transaction, current: str, model: str | None) -> str | None:
        # Walk champion tenures newest first; a version counts by its latest tenure, which must not have
        # ended in a rollback. Ordered by id, so two rollbacks in a row always give the same answer.
        seen = set()
        for version, end_action in tx.rows(
            "SELECT a.version, a.end_action FROM {s}.alias_history a JOIN {s}.model_versions v ON v.version = a.version "
            "WHERE a.alias = 'champion' AND a.version <> ? AND v.dataset = ? ORDER BY a.id DESC", [current, model]
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
        tx.rows(f"INSERT INTO {{s}}.audit_log ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [audit_id, now, actor, action, version, from_alias, to_alias, reason or "", forced, json_text(details)])


def artifacts_dir_for(url: str, default: Path) -> Path:
    """Where a registry's artifacts live: in `artifacts/` next to a DuckDB file, else in `default`."""
    db = backend_for(url)
    return db.path.parent / "artifacts" if isinstance(db, DuckDBBackend) else Path(default)


def open_registry(settings: Settings, url: str | None = None, artifacts_dir: str | Path | ObjectStore | None = None,
                  model: str | None = None) -> ModelRegistry:
    """The registry of `settings` (or at an explicit URL), with its artifact store (a folder, or an ObjectStore
    such as S3); scoped to `model` if given."""
    url = url or settings.registry
    if isinstance(artifacts_dir, str) and "://" in artifacts_dir:  # s3://bucket/prefix (or file:///folder)
        artifacts_dir = open_object_store(artifacts_dir)
    if artifacts_dir is None and settings.storage_url:
        artifacts_dir = settings.storage_root().child("registry/artifacts")
    if isinstance(artifacts_dir, ObjectStore):
        return ModelRegistry(url, ArtifactStore(artifacts_dir), model)
    root = Path(artifacts_dir) if artifacts_dir else artifacts_dir_for(url, settings.artifacts_dir)
    return ModelRegistry(url, ArtifactStore(root), model)
