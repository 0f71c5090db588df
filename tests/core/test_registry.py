"""The model registry, every test run on DuckDB and on PostgreSQL (skipped when the server is unreachable)."""

from __future__ import annotations

import functools
import multiprocessing
import os
import uuid

import pytest

from mlops_assets.core.evaluation.gates import GateReport, GateResult
from mlops_assets.core.registry.artifacts import ArtifactIntegrityError, ArtifactStore, StoredArtifact
from mlops_assets.core.registry.model_registry import ModelRegistry, RegistryError, artifacts_dir_for, open_registry
from conftest import SPECS
from mlops_assets.core.config.settings import Settings

POSTGRES_URL = os.environ.get("MLOPS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@functools.lru_cache(maxsize=1)
def postgres_unavailable() -> str:
    """Why PostgreSQL cannot be used for these tests, or "" when it can."""
    try:
        import psycopg2

        psycopg2.connect(POSTGRES_URL, connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001 - any failure means "skip", with the reason shown
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {str(exc).strip()}"
    return ""


def drop_schema(schema: str) -> None:
    import psycopg2
    from psycopg2 import sql

    con = psycopg2.connect(POSTGRES_URL)
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    finally:
        con.close()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry_url(request, tmp_path):
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'registry.duckdb'}"
        return
    if reason := postgres_unavailable():
        pytest.skip(reason)
    schema = f"test_registry_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
    finally:
        drop_schema(schema)


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def registry(registry_url, store):
    return ModelRegistry(registry_url, store)


def registry_is_postgres(registry: ModelRegistry) -> bool:
    return "Postgres" in repr(registry)


def gate_report(passed: bool) -> dict:
    """A gate report as the evaluation stores it (GateReport.to_dict()); a failed one fails two criteria."""
    margin = 0.01 if passed else -0.01
    return GateReport([GateResult("key_metric_vs_champion", passed, margin, 0.0, margin, "test"),
                       GateResult("latency", passed, 500 - margin, 500.0, margin, "test"),
                       GateResult("row_overlap", True, 0, 0, 0, "test")]).to_dict()


def register(registry: ModelRegistry, version: str, *, passed: bool = True, payload=None, actor: str = "trainer"):
    artifact = registry.artifacts.save(payload if payload is not None else {"model": version}, version)
    return registry.register(
        version, dataset="elec2", task="binary_classification",
        lineage={"data_manifest": {"2024-01-01": "abc"}, "git_commit": "deadbeef", "parameters": {"lr": 0.1},
                 "seed": 7, "library_versions": {"scikit-learn": "1.9.1"}},
        metrics={"roc_auc": 0.8}, gate_report=gate_report(passed), gates_passed=passed, artifact=artifact,
        run_id=f"run-{version}", actor=actor, key_metric="roc_auc",
    )


def actions(registry: ModelRegistry, version: str | None = None) -> list[tuple]:
    return [(e.action, e.version, e.from_alias, e.to_alias) for e in registry.audit_log(version=version)]


# ------------------------------------------------------------------------------------------ registration


def test_register_records_everything_and_makes_the_candidate(registry):
    record = register(registry, "v1")
    again = registry.get("v1")
    assert again == record
    assert record.aliases == ("candidate",)
    assert record.lineage["git_commit"] == "deadbeef" and record.lineage["parameters"] == {"lr": 0.1}
    assert record.metrics == {"roc_auc": 0.8} and record.gates_passed is True
    assert record.run_id == "run-v1" and record.registered_by == "trainer" and record.key_metric == "roc_auc"
    assert registry.version_for("candidate") == "v1"
    [entry] = registry.audit_log()
    assert (entry.action, entry.version, entry.to_alias, entry.actor) == ("register", "v1", "candidate", "trainer")
    assert entry.details["artifact_sha256"] == record.artifact.sha256


def test_reregistering_the_same_checksum_is_idempotent(registry):
    first = register(registry, "v1")
    second = register(registry, "v1")  # same payload, same checksum
    assert second == first
    assert [v.version for v in registry.list_versions()] == ["v1"]
    assert actions(registry) == [("register", "v1", None, "candidate")]


def test_reregistering_with_a_different_checksum_is_refused(registry):
    first = register(registry, "v1")
    with pytest.raises(RegistryError, match="already registered") as err:
        register(registry, "v1", payload={"model": "something else"})
    assert first.artifact.sha256 in str(err.value)
    assert registry.get("v1").artifact == first.artifact
    assert len(registry.audit_log()) == 1


def test_registering_an_artifact_whose_file_does_not_match_is_refused(registry):
    stored = registry.artifacts.save({"model": 1}, "v1")
    wrong = StoredArtifact(stored.path, "0" * 64, stored.size_bytes)
    with pytest.raises(RegistryError, match="integrity"):
        registry.register("v1", dataset="d", task="t", lineage={}, metrics={}, gate_report={}, gates_passed=True,
                          artifact=wrong, run_id="r", actor="a")
    assert registry.list_versions() == []


def test_a_new_registration_supersedes_the_previous_candidate(registry):
    register(registry, "v1")
    register(registry, "v2")
    assert registry.version_for("candidate") == "v2"
    assert registry.aliases_of("v1") == []
    assert ("supersede", "v1", "candidate", None) in actions(registry)


@pytest.mark.parametrize("version", ["", "../v1", "v 1", "v1;DROP TABLE x"])
def test_invalid_version_names_are_rejected(registry, version):
    artifact = registry.artifacts.save(1, "ok")
    with pytest.raises(RegistryError, match="invalid version"):
        registry.register(version, dataset="d", task="t", lineage={}, metrics={}, gate_report={},
                          gates_passed=True, artifact=artifact, run_id="r", actor="a")
    assert registry.list_versions() == []


# --------------------------------------------------------------------------------------------- promotion


@pytest.mark.parametrize("target", ["shadow", "canary", "champion"])
def test_a_version_that_failed_its_gates_is_refused_without_force(registry, target):
    register(registry, "v1", passed=False)
    with pytest.raises(RegistryError, match="did not pass its promotion gates") as err:
        registry.promote("v1", target, actor="alice")
    assert "key_metric" in str(err.value)  # names the failed gates
    with pytest.raises(RegistryError, match="without a reason"):
        registry.promote("v1", target, actor="alice", force=True, reason="  ")
    assert registry.aliases_of("v1") == ["candidate"]
    assert actions(registry) == [("register", "v1", None, "candidate")]


def test_a_forced_promotion_is_logged_as_forced_with_its_reason(registry):
    register(registry, "v1", passed=False)
    registry.promote("v1", "champion", actor="alice", force=True, reason="incident 42: old model broken")
    assert registry.version_for("champion") == "v1"
    entry = registry.audit_log(limit=1)[0]
    assert (entry.action, entry.forced, entry.actor) == ("promote", True, "alice")
    assert entry.reason == "incident 42: old model broken"


def test_force_is_not_recorded_when_the_gates_passed(registry):
    register(registry, "v1")
    registry.promote("v1", "canary", actor="alice", force=True, reason="no need")
    assert registry.audit_log(limit=1)[0].forced is False


def test_archiving_needs_no_gates(registry):
    register(registry, "v1", passed=False)
    registry.promote("v1", "archived", actor="alice")
    assert registry.aliases_of("v1") == ["archived"]


def test_promoting_to_champion_archives_the_previous_champion(registry):
    for v in ("v1", "v2"):
        register(registry, v)
    assert registry.promote("v1", "champion", actor="alice") is None
    assert registry.promote("v2", "champion", actor="bob", reason="better auc") == "v1"
    assert registry.version_for("champion") == "v2"
    assert registry.aliases_of("v1") == ["archived"]
    assert registry.previous_champion() == "v1"
    archive = [e for e in registry.audit_log(version="v1") if e.action == "archive"]
    assert [(e.from_alias, e.to_alias, e.actor, e.details["replaced_by"]) for e in archive] == [
        ("champion", "archived", "bob", "v2")]


def test_single_version_aliases_are_exclusive(registry):
    for v in ("v1", "v2", "v3"):
        register(registry, v)
    registry.promote("v1", "canary", actor="a")
    registry.promote("v2", "canary", actor="a")
    registry.promote("v3", "shadow", actor="a")
    assert registry.version_for("canary") == "v2"
    assert registry.aliases_of("v1") == []  # a replaced canary is unassigned, not archived
    registry.promote("v3", "canary", actor="a")  # moving v3 from shadow to canary frees shadow
    assert (registry.version_for("shadow"), registry.version_for("canary")) == (None, "v3")
    assert sum(1 for v in registry.list_versions() if "canary" in v.aliases) == 1


def test_promoting_to_the_current_alias_changes_nothing(registry):
    register(registry, "v1")
    registry.promote("v1", "champion", actor="a")
    before = len(registry.audit_log())
    assert registry.promote("v1", "champion", actor="a") is None
    assert len(registry.audit_log()) == before


def test_a_promotion_failing_halfway_changes_nothing(registry, monkeypatch):
    for v in ("v1", "v2"):
        register(registry, v)
    registry.promote("v1", "champion", actor="a")
    before = registry.audit_log()
    real_move, calls = ModelRegistry._move, []

    def move_then_fail(self, tx, version, *args, **kwargs):
        calls.append(version)
        if len(calls) == 2:  # after archiving v1, before v2 takes over
            raise RuntimeError("database went away")
        return real_move(self, tx, version, *args, **kwargs)

    monkeypatch.setattr(ModelRegistry, "_move", move_then_fail)
    with pytest.raises(RuntimeError):
        registry.promote("v2", "champion", actor="a")
    monkeypatch.setattr(ModelRegistry, "_move", real_move)
    assert calls == ["v1", "v2"]
    assert registry.version_for("champion") == "v1" and registry.aliases_of("v2") == ["candidate"]
    assert registry.audit_log() == before


def test_the_champion_cannot_simply_be_archived(registry):
    register(registry, "v1")
    registry.promote("v1", "champion", actor="a")
    with pytest.raises(RegistryError, match="refusing to archive the champion"):
        registry.promote("v1", "archived", actor="a")
    assert registry.version_for("champion") == "v1"


def test_unknown_versions_and_aliases_are_clear_errors(registry):
    with pytest.raises(RegistryError, match="unknown model version 'nope'"):
        registry.promote("nope", "champion", actor="a")
    with pytest.raises(RegistryError, match="unknown model version"):
        registry.get("nope")
    register(registry, "v1")
    with pytest.raises(RegistryError, match="cannot promote to 'candidate'"):
        registry.promote("v1", "candidate", actor="a")


# ---------------------------------------------------------------------------------------------- rollback


def champion_chain(registry, versions):
    for v in versions:
        register(registry, v, payload={"model": v, "weights": list(range(len(v)))})
        registry.promote(v, "champion", actor="deployer")


def test_rollback_restores_the_previous_champion_with_the_same_artifact(registry):
    champion_chain(registry, ["v1", "v2", "v3"])
    sha_when_champion = registry.get("v2").artifact.sha256
    restored = registry.rollback(actor="oncall", reason="v3 mis-scores weekends")
    assert restored == "v2"
    assert registry.version_for("champion") == "v2"
    assert registry.get("v2").artifact.sha256 == sha_when_champion
    assert registry.load_model("v2") == {"model": "v2", "weights": [0, 1]}
    assert registry.aliases_of("v3") == ["archived"]
    last_v3 = registry.alias_history("v3")[-2]
    assert (last_v3.alias, last_v3.end_action, last_v3.rolled_back) == ("champion", "rollback", True)
    rollback, restore = registry.audit_log(limit=2)
    assert (rollback.action, rollback.version, rollback.actor, rollback.reason) == (
        "rollback", "v3", "oncall", "v3 mis-scores weekends")
    assert (restore.action, restore.version, restore.to_alias, restore.details["artifact_sha256"]) == (
        "restore", "v2", "champion", sha_when_champion)


def test_serving_aliases_read_in_one_go_match_the_single_questions(registry):
    champion_chain(registry, ["v1", "v2", "v3"])
    register(registry, "v4")
    registry.promote("v4", "shadow", actor="alice")
    assert registry.serving_aliases() == {"champion": "v3", "canary": None, "shadow": "v4", "previous_champion": "v2"}
    registry.rollback(actor="oncall", reason="bad")
    assert registry.serving_aliases()["champion"] == "v2" and registry.serving_aliases()["previous_champion"] == "v1"


def test_the_change_token_stays_put_on_reads_and_moves_on_every_write(registry):
    token = registry.change_token()
    if registry_is_postgres(registry):
        assert token is None  # no cheap token: the online service queries every poll
        return
    register(registry, "v1")
    after_register = registry.change_token()
    assert after_register != token
    for _ in range(3):
        registry.serving_aliases(), registry.list_versions()
    assert registry.change_token() == after_register
    registry.promote("v1", "champion", actor="alice")
    assert registry.change_token() != after_register


def test_two_rollbacks_in_a_row_walk_back_deterministically(registry):
    champion_chain(registry, ["v1", "v2", "v3"])
    assert registry.rollback(actor="oncall", reason="first") == "v2"
    assert registry.rollback(actor="oncall", reason="second") == "v1"
    assert registry.aliases_of("v2") == ["archived"] and registry.aliases_of("v3") == ["archived"]
    with pytest.raises(RegistryError, match="no previous known-good champion"):
        registry.rollback(actor="oncall", reason="third")
    assert registry.version_for("champion") == "v1"


def test_rollback_skips_versions_whose_last_champion_tenure_was_rolled_back(registry):
    champion_chain(registry, ["v1", "v2"])
    assert registry.rollback(actor="oncall", reason="v2 bad") == "v1"
    assert registry.previous_champion() is None  # v2 was rolled back from: not known-good
    # A human re-promotes v2 (the data issue was elsewhere) and v3 later replaces it normally:
    # v2's latest tenure ended well, so it is the known-good champion again.
    registry.promote("v2", "champion", actor="lead", reason="root cause was upstream")
    champion_chain(registry, ["v3"])
    assert registry.rollback(actor="oncall", reason="v3 bad") == "v2"


def test_rollback_without_a_previous_champion_is_a_clear_error(registry):
    with pytest.raises(RegistryError, match="no version is champion"):
        registry.rollback(actor="oncall", reason="x")
    champion_chain(registry, ["v1"])
    with pytest.raises(RegistryError, match="no previous known-good champion"):
        registry.rollback(actor="oncall", reason="x")
    assert registry.version_for("champion") == "v1"


def test_alias_history_keeps_every_tenure_of_a_version(registry):
    champion_chain(registry, ["v1", "v2"])
    registry.rollback(actor="oncall", reason="r")
    history = [(h.alias, h.end_action) for h in registry.alias_history("v1")]
    assert history == [("candidate", "promote"), ("champion", "archive"), ("archived", "restore"),
                       ("champion", None)]
    assert registry.alias_history("v1")[-1].ended_at is None


def test_audit_log_filters_by_version_and_limits_to_the_latest(registry):
    champion_chain(registry, ["v1", "v2"])
    everything = registry.audit_log()
    assert [e.id for e in everything] == list(range(1, len(everything) + 1))
    assert registry.audit_log(limit=2) == everything[-2:]
    assert all(e.version == "v2" for e in registry.audit_log(version="v2"))
    assert [e.action for e in registry.audit_log(version="v2")] == ["register", "promote"]


# --------------------------------------------------------------------------------------------- integrity


def test_load_model_refuses_a_tampered_artifact(registry):
    record = register(registry, "v1")
    assert registry.load_model("v1") == {"model": "v1"}
    full = registry.artifacts.root / record.artifact.path
    full.write_bytes(full.read_bytes() + b"\x00")  # pickle would ignore trailing bytes; the checksum does not
    with pytest.raises(ArtifactIntegrityError, match=record.artifact.sha256):
        registry.load_model("v1")


def test_urls_and_schemas_are_validated(store):
    for url in ("sqlite:///x.db", "duckdb://host/x.duckdb", "duckdb:///x.duckdb?schema=Bad;name"):
        with pytest.raises(RegistryError):
            ModelRegistry(url, store)


def test_open_registry_keeps_duckdb_artifacts_next_to_the_database(tmp_path):
    settings = Settings.for_data_dir(tmp_path / "data", SPECS / "synthetic.toml")
    registry = open_registry(settings)
    assert registry.artifacts.root == settings.artifacts_dir
    assert (tmp_path / "data" / "registry" / "registry.duckdb").exists()
    assert artifacts_dir_for(POSTGRES_URL, tmp_path / "elsewhere") == tmp_path / "elsewhere"


# ------------------------------------------------------------------------------------------- concurrency

WRITERS, VERSIONS_PER_WRITER = 4, 5  # each DuckDB transaction opens the file (~40 ms of CPU)


def _writer(url: str, artifacts_root: str, writer: int) -> None:
    """One process of the concurrency test: register and promote its own versions."""
    registry = ModelRegistry(url, ArtifactStore(artifacts_root))
    for i in range(VERSIONS_PER_WRITER):
        version = f"w{writer}-{i:02d}"
        register(registry, version, actor=f"writer-{writer}")
        registry.promote(version, "champion", actor=f"writer-{writer}", reason="concurrency test")


def test_concurrent_writers_keep_the_registry_consistent(registry, registry_url):
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters, like Dagster's multiprocess executor
    procs = [ctx.Process(target=_writer, args=(registry_url, str(registry.artifacts.root), w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WRITERS

    total = WRITERS * VERSIONS_PER_WRITER
    versions = registry.list_versions()
    assert len(versions) == total
    champions = [v.version for v in versions if "champion" in v.aliases]
    assert len(champions) == 1
    assert sum(1 for v in versions if "archived" in v.aliases) == total - 1

    log = registry.audit_log()
    assert [e.id for e in log] == list(range(1, len(log) + 1))  # no gaps, no duplicates
    counts = {a: sum(1 for e in log if e.action == a) for a in ("register", "promote", "archive")}
    assert counts == {"register": total, "promote": total, "archive": total - 1}
    # Replaying the log's transitions in order must reproduce the current aliases exactly.
    state: dict[str, str | None] = {}
    for e in log:
        assert state.get(e.version) == e.from_alias, f"audit entry {e.id} starts from a stale alias"
        state[e.version] = e.to_alias
    assert {v: a for v, a in state.items() if a} == {v.version: v.aliases[0] for v in versions if v.aliases}
    # Champion tenures never overlap: each one ends before (at the same moment as) the next begins.
    tenures = sorted((h for v in versions for h in registry.alias_history(v.version) if h.alias == "champion"),
                     key=lambda h: h.started_at)
    assert len(tenures) == total and sum(1 for h in tenures if h.ended_at is None) == 1
    assert all(a.ended_at <= b.started_at for a, b in zip(tenures, tenures[1:]))


# ------------------------------------------------------------------------- the model always has a champion


def tamper(registry, stored) -> None:
    full = registry.artifacts.root / stored.path
    full.write_bytes(full.read_bytes() + b"\x00")


@pytest.mark.parametrize("target", ["shadow", "canary"])
def test_the_champion_cannot_be_moved_to_another_serving_alias(registry, target):
    register(registry, "v1")
    registry.promote("v1", "champion", actor="a")
    before = registry.audit_log()
    with pytest.raises(RegistryError, match=f"refusing to move the champion v1 to {target}") as err:
        registry.promote("v1", target, actor="a", reason="oops", force=True)
    assert "without a champion" in str(err.value)
    assert registry.version_for("champion") == "v1" and registry.version_for(target) is None
    assert registry.audit_log() == before


def test_retiring_the_champion_needs_force_and_a_reason_and_is_audited_as_a_retirement(registry):
    register(registry, "v1")
    registry.promote("v1", "champion", actor="a")
    with pytest.raises(RegistryError, match="refusing to archive the champion v1"):
        registry.promote("v1", "archived", actor="a", reason="no longer needed")
    with pytest.raises(RegistryError, match="without a reason"):
        registry.promote("v1", "archived", actor="a", force=True, reason=" ")
    assert registry.version_for("champion") == "v1"
    registry.promote("v1", "archived", actor="lead", force=True, reason="product discontinued")
    assert registry.version_for("champion") is None and registry.aliases_of("v1") == ["archived"]
    entry = registry.audit_log(limit=1)[0]
    assert (entry.action, entry.version, entry.from_alias, entry.to_alias, entry.forced, entry.actor, entry.reason) == (
        "retire", "v1", "champion", "archived", True, "lead", "product discontinued")
    assert registry.alias_history("v1")[-2].end_action == "retire"


def test_retire_is_the_same_audited_operation(registry):
    register(registry, "v1")
    registry.promote("v1", "champion", actor="a")
    with pytest.raises(RegistryError, match="without a reason"):
        registry.retire("v1", actor="lead", reason="")
    register(registry, "v2")
    with pytest.raises(RegistryError, match="v2 is not the champion"):
        registry.retire("v2", actor="lead", reason="x")
    registry.retire("v1", actor="lead", reason="model withdrawn")
    assert registry.version_for("champion") is None
    assert [(e.action, e.forced) for e in registry.audit_log(version="v1")][-1] == ("retire", True)


@pytest.mark.parametrize("target", ["shadow", "canary", "champion"])
@pytest.mark.parametrize("damage", ["tampered", "missing"])
def test_promotion_verifies_the_artifact_before_changing_anything(registry, target, damage):
    register(registry, "v1")
    registry.promote("v1", "champion", actor="a")
    record = register(registry, "v2")
    if damage == "tampered":
        tamper(registry, record.artifact)
    else:
        (registry.artifacts.root / record.artifact.path).unlink()
    before = registry.audit_log()
    with pytest.raises(RegistryError, match=f"refusing to promote v2 to {target}") as err:
        registry.promote("v2", target, actor="a")
    assert record.artifact.path in str(err.value)
    assert ("sha256" in str(err.value)) if damage == "tampered" else ("missing" in str(err.value))
    assert registry.version_for("champion") == "v1" and registry.aliases_of("v2") == ["candidate"]
    assert registry.audit_log() == before
    registry.promote("v2", "archived", actor="a", reason="broken file")  # archiving serves nothing: allowed
    assert registry.aliases_of("v2") == ["archived"]


def test_promotion_verifies_the_monitoring_reference_when_one_is_recorded(registry):
    artifact = registry.artifacts.save({"model": "v1"}, "v1")
    reference = registry.artifacts.save_json({"not": "parsed by promote"}, "v1")
    # register() parses the reference; these tests only need its checksum recorded
    registry._read_reference = lambda *args: None
    registry.register("v1", dataset="elec2", task="binary_classification", lineage={}, metrics={},
                      gate_report=gate_report(True), gates_passed=True, artifact=artifact, run_id="r", actor="a",
                      reference=reference)
    tamper(registry, reference)
    with pytest.raises(RegistryError, match="refusing to promote v1 to champion") as err:
        registry.promote("v1", "champion", actor="a")
    assert "monitoring reference" in str(err.value) and reference.path in str(err.value)
    assert registry.version_for("champion") is None


def test_rollback_verifies_the_restored_version_before_changing_anything(registry):
    champion_chain(registry, ["v1", "v2"])
    tamper(registry, registry.get("v1").artifact)
    before = registry.audit_log()
    with pytest.raises(RegistryError, match="refusing to roll back to v1") as err:
        registry.rollback(actor="oncall", reason="v2 bad")
    assert "v2 stays champion" in str(err.value)
    assert registry.version_for("champion") == "v2" and registry.audit_log() == before


def test_file_problems_name_each_damaged_file(registry):
    good, bad, gone = (register(registry, v) for v in ("v1", "v2", "v3"))
    tamper(registry, bad.artifact)
    (registry.artifacts.root / gone.artifact.path).unlink()
    assert registry.file_problems("v1") == []
    [problem] = registry.file_problems("v2")
    assert bad.artifact.path in problem and bad.artifact.sha256 in problem
    [problem] = registry.file_problems(registry.get("v3"))
    assert gone.artifact.path in problem and "missing" in problem
