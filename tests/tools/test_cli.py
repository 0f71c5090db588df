"""The `mlops` command line, driven through main([...]) against a DuckDB registry in a temporary folder."""

from __future__ import annotations

import getpass
import json

import pytest

from mlops_assets import cli
from mlops_assets.core.evaluation.gates import GateReport, GateResult
from mlops_assets.core.registry.artifacts import ArtifactStore
from mlops_assets.core.registry.model_registry import ModelRegistry


@pytest.fixture
def registry(tmp_path):
    # The CLI looks for artifacts next to a DuckDB file, so the fixture keeps them there too.
    return ModelRegistry(f"duckdb:///{tmp_path / 'registry.duckdb'}", ArtifactStore(tmp_path / "artifacts"))


@pytest.fixture
def url(registry, tmp_path):
    return f"duckdb:///{tmp_path / 'registry.duckdb'}"


def add(registry: ModelRegistry, version: str, auc: float, passed: bool = True):
    artifact = registry.artifacts.save({"model": version}, version)
    registry.register(
        version, dataset="elec2", task="binary_classification",
        lineage={"git_commit": f"commit-{version}", "seed": 42, "parameters": {"max_depth": 3}},
        metrics={"key_metric": "roc_auc", "candidate": {"metrics": {"roc_auc": auc, "log_loss": 0.4}}},
        gate_report=GateReport([GateResult("slice_regression", passed, 0.01, 0.05, 0.04 if passed else -0.04, "test"),
                                GateResult("latency", True, 10.0, 500.0, 490.0, "test")]).to_dict(),
        gates_passed=passed, artifact=artifact, run_id=f"run-{version}", actor="trainer",
    )


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_lists_versions_with_aliases_key_metric_and_gates(registry, url, capsys):
    add(registry, "v1", 0.81)
    add(registry, "v2", 0.7712, passed=False)
    registry.promote("v1", "champion", actor="a")
    code, out, _ = run(capsys, "models", "--registry", url)
    assert code == 0
    summary, versions = out.split("\n\n")
    models = {line.split()[0]: line.split() for line in summary.splitlines()[2:]}
    assert models["elec2"][1:4] == ["binary_classification", "v1", "-"]  # task, champion, canary
    lines = {line.split()[1]: line.split() for line in versions.splitlines()[2:]}
    assert lines["v1"][0] == "elec2"
    assert lines["v1"][2:5] == ["champion", "roc_auc=0.8100", "passed"]
    assert lines["v2"][2:5] == ["candidate", "roc_auc=0.7712", "FAILED"]


def test_models_json_and_an_empty_registry(registry, url, capsys):
    assert run(capsys, "models", "--registry", url)[1].strip().splitlines()[-1] == "no model versions registered yet"
    add(registry, "v1", 0.8)
    code, out, _ = run(capsys, "models", "--registry", url, "--json")
    assert code == 0 and [r["version"] for r in json.loads(out)] == ["v1"]


def test_show_prints_lineage_metrics_gate_report_and_alias_history(registry, url, capsys):
    add(registry, "v1", 0.8)
    add(registry, "v2", 0.82)
    registry.promote("v1", "champion", actor="alice")
    registry.promote("v2", "champion", actor="bob")
    code, out, _ = run(capsys, "show", "v1", "--registry", url)
    assert code == 0
    assert "commit-v1" in out and '"max_depth": 3' in out  # lineage
    assert '"log_loss": 0.4' in out  # metrics
    assert '"failures": []' in out  # gate report
    history = out.split("alias history:")[1]
    assert [line.split()[0] for line in history.strip().splitlines()[2:]] == ["candidate", "champion", "archived"]
    assert "archive (bob)" in history
    shown = json.loads(run(capsys, "show", "v1", "--registry", url, "--json")[1])
    assert shown["aliases"] == ["archived"] and len(shown["alias_history"]) == 3


def test_promote_refuses_failed_gates_with_a_one_line_error(registry, url, capsys):
    add(registry, "v1", 0.8, passed=False)
    code, out, err = run(capsys, "promote", "v1", "--to", "champion", "--registry", url)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "did not pass its promotion gates (gate_slices: slice_regression)" in err
    code, _, err = run(capsys, "promote", "v1", "--to", "champion", "--force", "--registry", url)
    assert code == 1 and "without a reason" in err
    assert registry.version_for("champion") is None


def test_forced_promotion_is_recorded_with_actor_and_reason(registry, url, capsys):
    add(registry, "v1", 0.8, passed=False)
    code, out, _ = run(capsys, "promote", "v1", "--to", "champion", "--force", "--reason", "hotfix for INC-7",
                       "--actor", "carol", "--registry", url)
    assert code == 0 and "v1 is now champion" in out
    entry = registry.audit_log(limit=1)[0]
    assert (entry.actor, entry.forced, entry.reason) == ("carol", True, "hotfix for INC-7")
    code, out, _ = run(capsys, "audit", "--registry", url)
    assert "promote (FORCED)" in out and "hotfix for INC-7" in out and "carol" in out


def test_actor_defaults_to_the_os_user(registry, url, capsys, monkeypatch):
    monkeypatch.setattr(getpass, "getuser", lambda: "ops-bot")
    add(registry, "v1", 0.8)
    assert run(capsys, "promote", "v1", "--to", "canary", "--registry", url)[0] == 0
    assert registry.audit_log(limit=1)[0].actor == "ops-bot"


def test_promote_to_champion_reports_the_archived_predecessor(registry, url, capsys):
    add(registry, "v1", 0.8)
    add(registry, "v2", 0.85)
    registry.promote("v1", "champion", actor="a")
    code, out, _ = run(capsys, "promote", "v2", "--to", "champion", "--registry", url)
    assert code == 0 and out.strip() == "v2 is now champion (previous champion v1 archived)"
    assert registry.aliases_of("v1") == ["archived"]


def test_rollback_restores_the_previous_champion(registry, url, capsys):
    add(registry, "v1", 0.8)
    add(registry, "v2", 0.85)
    registry.promote("v1", "champion", actor="a")
    registry.promote("v2", "champion", actor="a")
    code, out, _ = run(capsys, "rollback", "--reason", "bad canary", "--actor", "oncall", "--registry", url)
    assert code == 0
    assert out.strip() == f"champion is now v1 again (artifact sha256 {registry.get('v1').artifact.sha256})"
    assert registry.version_for("champion") == "v1"
    assert run(capsys, "rollback", "--registry", url)[0] == 2  # --reason is required
    assert registry.version_for("champion") == "v1"
    code, _, err = run(capsys, "rollback", "--reason", "again", "--registry", url)
    assert code == 1 and "no previous known-good champion" in err


def test_audit_filters_by_version(registry, url, capsys):
    add(registry, "v1", 0.8)
    add(registry, "v2", 0.85)
    code, out, _ = run(capsys, "audit", "--version", "v1", "--registry", url)
    assert code == 0
    rows = [line.split()[4] for line in out.splitlines()[2:]]
    assert rows == ["v1", "v1"]  # register, then superseded as candidate by v2
    assert "supersede" in out and "replaced as candidate by v2" in out
    assert run(capsys, "audit", "--version", "v9", "--registry", url)[1].strip() == "the audit log is empty for v9"


def test_unknown_version_and_bad_arguments(registry, url, capsys):
    code, _, err = run(capsys, "show", "nope", "--registry", url)
    assert code == 1 and err.strip() == "mlops: error: unknown model version 'nope'"
    assert run(capsys, "promote", "v1", "--to", "king", "--registry", url)[0] == 2  # argparse usage error
    assert run(capsys)[0] == 2  # no command


def test_registry_defaults_come_from_the_environment(tmp_path, monkeypatch, capsys):
    # Settings put the DuckDB registry and its artifacts under $MLOPS_DATA_DIR/registry/.
    monkeypatch.delenv("MLOPS_REGISTRY_URL", raising=False)
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "data" / "registry"
    registry = ModelRegistry(f"duckdb:///{folder / 'registry.duckdb'}", ArtifactStore(folder / "artifacts"))
    add(registry, "v1", 0.8)
    code, out, _ = run(capsys, "models")
    assert code == 0 and "v1" in out
    monkeypatch.setenv("MLOPS_REGISTRY_URL", f"duckdb:///{tmp_path / 'other.duckdb'}")
    assert run(capsys, "models")[1].strip().splitlines()[-1] == "no model versions registered yet"


def test_new_subcommands_plug_in_through_the_decorator(capsys, monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMANDS", dict(cli.SUBCOMMANDS))

    @cli.subcommand("hello", "say hello")
    def build(parser):
        parser.add_argument("name")

        def handler(args):
            if args.name == "error":
                raise cli.CliError("no such person")
            print(f"hello {args.name}")
            return 0

        return handler

    assert run(capsys, "hello", "ann") == (0, "hello ann\n", "")
    assert run(capsys, "hello", "error") == (1, "", "mlops: error: no such person\n")


# ------------------------------------------------------------------ a champion always, intact files only


def damage(registry: ModelRegistry, version: str, how: str = "tamper") -> str:
    path = registry.get(version).artifact.path
    full = registry.artifacts.root / path
    if how == "tamper":
        full.write_bytes(full.read_bytes() + b"\x00")
    else:
        full.unlink()
    return path


@pytest.mark.parametrize("target", ["shadow", "canary"])
def test_promote_never_moves_the_champion_away(registry, url, capsys, target):
    add(registry, "v1", 0.8)
    registry.promote("v1", "champion", actor="a")
    code, out, err = run(capsys, "promote", "v1", "--to", target, "--registry", url)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert f"refusing to move the champion v1 to {target}" in err and "without a champion" in err
    assert registry.version_for("champion") == "v1"
    code, out, _ = run(capsys, "models", "--registry", url)
    assert code == 0 and out.splitlines()[2].split()[2] == "v1"


def test_retiring_the_champion_is_explicit_forced_and_audited(registry, url, capsys):
    add(registry, "v1", 0.8)
    registry.promote("v1", "champion", actor="a")
    code, _, err = run(capsys, "promote", "v1", "--to", "archived", "--registry", url)
    assert code == 1 and "refusing to archive the champion v1" in err and "--force" in err
    code, out, _ = run(capsys, "promote", "v1", "--to", "archived", "--force", "--reason", "model withdrawn",
                       "--actor", "lead", "--registry", url)
    assert code == 0 and out.strip() == "v1 retired: model elec2 has no champion now"
    assert registry.version_for("champion") is None
    code, out, _ = run(capsys, "audit", "--registry", url)
    assert "retire (FORCED)" in out and "model withdrawn" in out


def test_the_retire_command(registry, url, capsys):
    add(registry, "v1", 0.8)
    registry.promote("v1", "champion", actor="a")
    assert run(capsys, "retire", "v1", "--registry", url)[0] == 2  # --reason is required
    code, out, _ = run(capsys, "retire", "v1", "--reason", "product closed", "--registry", url)
    assert code == 0 and out.strip() == "v1 retired: model elec2 has no champion now"
    assert [(e.action, e.reason) for e in registry.audit_log(limit=1)] == [("retire", "product closed")]


@pytest.mark.parametrize("how", ["tamper", "delete"])
def test_promote_and_rollback_refuse_a_damaged_artifact_naming_the_version(registry, url, capsys, how):
    add(registry, "v1", 0.8)
    add(registry, "v2", 0.85)
    registry.promote("v1", "champion", actor="a")
    path = damage(registry, "v2", how)
    code, out, err = run(capsys, "promote", "v2", "--to", "champion", "--registry", url)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "refusing to promote v2 to champion" in err and path in err
    assert registry.version_for("champion") == "v1"

    add(registry, "v3", 0.9)
    registry.promote("v3", "champion", actor="a")
    damage(registry, "v1", how)
    code, _, err = run(capsys, "rollback", "--reason", "v3 bad", "--registry", url)
    assert code == 1 and "refusing to roll back to v1" in err
    assert registry.version_for("champion") == "v3"


def test_show_and_models_warn_about_damaged_or_missing_files(registry, url, capsys):
    add(registry, "v1", 0.8)
    add(registry, "v2", 0.85)
    add(registry, "v3", 0.9)
    tampered, missing = damage(registry, "v1"), damage(registry, "v2", "delete")
    code, out, err = run(capsys, "show", "v1", "--registry", url)
    assert code == 0 and "commit-v1" in out
    [warning] = err.strip().splitlines()
    assert warning.startswith("mlops: warning: v1: its artifact") and tampered in warning and "sha256" in warning
    code, out, err = run(capsys, "models", "--registry", url)
    assert code == 0 and "v3" in out
    warnings = err.strip().splitlines()
    assert len(warnings) == 2 and warnings[0].startswith("mlops: warning: v1:")
    assert warnings[1].startswith("mlops: warning: v2:") and missing in warnings[1] and "missing" in warnings[1]
    assert run(capsys, "show", "v3", "--registry", url)[2] == ""


def test_decision_warns_when_a_deciding_versions_artifact_is_damaged(registry, url, tmp_path, capsys):
    import pandas as pd

    from mlops_assets.core.serving.ledger import PredictionLedger

    add(registry, "v1", 0.8)
    ts = pd.Timestamp("2025-03-01 09:00")
    PredictionLedger(tmp_path / "ledger").write(pd.DataFrame({
        "day": [ts.date()], "entity": ["c1"], "timestamp": [ts], "score": [0.9], "decision": [1.0],
        "threshold": [0.5], "model_version": ["v1"], "route": ["champion"], "acted_on": [True],
        "scored_at": [pd.Timestamp("2025-03-02", tz="UTC")]}))
    argv = ("decision", "c1", "2025-03-01", "--ledger", str(tmp_path / "ledger"), "--registry", url)
    code, out, err = run(capsys, *argv)
    assert code == 0 and "decided by v1 (champion)" in out and err == ""
    path = damage(registry, "v1")
    code, out2, err = run(capsys, *argv)
    assert code == 0 and out2 == out
    [warning] = err.strip().splitlines()
    assert warning.startswith("mlops: warning: v1: its artifact") and path in warning


def test_show_names_each_gate_as_the_ui_check_that_shows_it(registry, url, capsys):
    add(registry, "v1", 0.8, passed=False)
    code, out, _ = run(capsys, "show", "v1", "--registry", url)
    assert code == 0
    gates = out.split("\ngates:\n", 1)[1].split("\n\n", 1)[0]
    rows = [line.split() for line in gates.splitlines()[2:]]  # after the header and its rule
    assert [r[:3] for r in rows] == [["gate_slices", "slice_regression", "FAILED"],
                                     ["gate_latency", "latency", "passed"]]
