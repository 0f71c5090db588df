"""`mlops spec check | draft | keys` through main([...]): exit codes, messages, and usage errors that help."""

from __future__ import annotations

import pytest

from mlops_assets import cli
from mlops_assets.core.config.spec import load_spec

from conftest import SPECS


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


BROKEN = """
[dataset]
name = "shop"
timestamp = "t"
target = "y"
task = "regression"
start_date = "2024-01-01"
slices = ["plan"]

[features.x]
type = "numeric"
min = 2.0
max = 1.0

[training]
estimator = "logistic_regression"
windows_days = 10

[gates]
key_metric = "roc_auc"
"""


def test_check_lists_every_problem_and_exits_1(tmp_path, capsys):
    spec = tmp_path / "shop.toml"
    spec.write_text(BROKEN)
    code, out, _ = run(capsys, "spec", "check", spec)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{spec}: 5 problems"
    for needle in ["dataset.slices: 'plan' is not a declared feature", "features.x: min (2.0) is greater than max",
                   "training.estimator 'logistic_regression' cannot be used for task 'regression'",
                   "training.windows_days: unknown key, did you mean 'window_days'?",
                   "gates.key_metric: 'roc_auc' is not a regression metric"]:
        assert any(line.startswith(f"  - {needle}") for line in lines[1:]), needle


def test_check_a_clean_spec_prints_a_summary_and_exits_0(capsys):
    code, out, _ = run(capsys, "spec", "check", SPECS / "synthetic.toml")
    assert code == 0
    assert out.splitlines()[0].endswith("synthetic.toml: OK")
    assert "model synthetic: binary_classification" in out and "logistic_regression, 21-day window" in out


def test_check_columns_against_a_csv(tmp_path, capsys):
    csv = tmp_path / "h.csv"
    csv.write_text("event_time,customer_id,tenure,spend,churned\n")
    code, out, _ = run(capsys, "spec", "check", SPECS / "synthetic.toml", "--csv", csv)
    assert code == 1
    assert "  - features.visits: column 'visits' is not in h.csv" in out and "features.tenure" not in out


def test_check_usage_errors_exit_2(tmp_path, capsys):
    code, _, err = run(capsys, "spec", "check", tmp_path / "missing.toml")
    assert code == 2 and "missing.toml: no such file" in err
    code, _, err = run(capsys, "spec", "chek", SPECS / "elec2.toml")
    assert code == 2 and "invalid choice: 'chek'" in err and "did you mean 'check'?" in err
    code, _, err = run(capsys, "spec", "check", SPECS / "elec2.toml", "--cvs", "x.csv")
    assert code == 2 and "unrecognized arguments: --cvs" in err and "did you mean --csv (for --cvs)?" in err
    code, _, err = run(capsys, "sepc", "check")
    assert code == 2 and "did you mean 'spec'?" in err


def test_draft_writes_a_spec_that_checks_and_refuses_to_overwrite(tmp_path, capsys):
    csv = tmp_path / "loans.csv"
    rows = [f"2024-01-{1 + i // 10:02d} {i % 10:02d}:00:00,{i * 1.5},{'ab'[i % 2]},{i % 3 == 0:d}" for i in range(100)]
    csv.write_text("ts,amount,grade,defaulted\n" + "\n".join(rows) + "\n")
    out_file = tmp_path / "specs" / "loans.toml"
    code, _, err = run(capsys, "spec", "draft", csv, "--timestamp", "ts", "--target", "defaulted", "--out", out_file)
    assert code == 0 and f"mlops spec check {out_file} --csv {csv}" in err
    spec = load_spec(out_file)
    assert spec.name == "loans" and spec.task == "binary_classification"
    assert spec.feature_names == ["amount", "grade"] and spec.feature("grade").categories == ("a", "b")
    assert run(capsys, "spec", "check", out_file, "--csv", csv)[0] == 0
    code, _, err = run(capsys, "spec", "draft", csv, "--timestamp", "ts", "--target", "defaulted", "--out", out_file)
    assert code == 2 and "exists; --force" in err
    code, _, err = run(capsys, "spec", "draft", csv, "--timestamp", "ts", "--target", "defaulted", "--task",
                       "regression", "--name", "loss", "--out", out_file, "--force")
    assert code == 0 and load_spec(out_file).task == "regression" and load_spec(out_file).name == "loss"
    code, _, err = run(capsys, "spec", "draft", csv, "--timestamp", "time", "--target", "defaulted")
    assert code == 1 and "--timestamp 'time' is not a column of loans.csv" in err
    code, _, err = run(capsys, "spec", "draft", csv, "--target", "defaulted")
    assert code == 2 and "the following arguments are required: --timestamp" in err


@pytest.mark.parametrize("markdown", [False, True])
def test_keys_lists_every_key_with_its_default(capsys, markdown):
    code, out, err = run(capsys, "spec", "keys", *(["--markdown"] if markdown else []))
    assert code == 0 and not err
    assert ("| `retrain_cooldown_days` | `7` | days |" if markdown else "retrain_cooldown_days = 7   (days)") in out
