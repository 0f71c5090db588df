"""`mlops decision` and `mlops predictions`, driven through main([...]) against a ledger in a temporary folder."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlops_assets import cli
from mlops_assets.core.serving.ledger import PredictionLedger

D1, D2 = dt.date(2025, 3, 1), dt.date(2025, 3, 2)
SCORED_AT = pd.Timestamp("2025-03-02 06:00", tz="UTC")


def rows_for(day, version, route, entities, scores, threshold=0.5, hour=9):
    n = len(entities)
    scores = np.asarray(scores, dtype=float)
    decision = (scores >= threshold).astype(float) if threshold == threshold else scores
    return pd.DataFrame({
        "day": [day] * n, "entity": entities, "timestamp": [pd.Timestamp(day) + pd.Timedelta(hours=hour)] * n,
        "score": scores, "decision": decision, "threshold": threshold, "model_version": version, "route": route,
        "acted_on": route != "shadow", "scored_at": pd.Series([SCORED_AT] * n),
    })


@pytest.fixture
def ledger_dir(tmp_path):
    ledger = PredictionLedger(tmp_path / "ledger")
    ledger.write(pd.concat([
        rows_for(D1, "v1", "champion", ["c1", "c2"], [0.8123, 0.3]),
        rows_for(D1, "v2", "canary", ["c3"], [0.61]),
        rows_for(D1, "v1", "shadow", ["c3"], [0.42]),
        rows_for(D2, "v1", "champion", ["c1", "c2", "c3"], [0.7, 0.2, 0.1]),
    ], ignore_index=True))
    return str(ledger.root)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_decision_names_the_model_that_acted_and_the_shadow_opinion(ledger_dir, capsys):
    code, out, err = run(capsys, "decision", "c3", "2025-03-01", "--ledger", ledger_dir)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "entity c3 on 2025-03-01: decided by v2 (canary)"
    assert lines[1].split() == ["TIMESTAMP", "VERSION", "ROUTE", "ACTED", "ON", "SCORE", "DECISION", "SCORED", "AT",
                                "(UTC)"]
    assert lines[3].split() == ["2025-03-01", "09:00:00", "v2", "canary", "yes", "0.6100", "positive", "(>=", "0.5)",
                                "2025-03-02", "06:00:00"]
    assert lines[4].split()[2:9] == ["v1", "shadow", "no", "(shadow)", "0.4200", "negative", "(<"]
    assert len(lines) == 5


def test_decision_on_another_day_and_for_regression_prints_the_prediction(tmp_path, capsys):
    ledger = PredictionLedger(tmp_path / "ledger")
    ledger.write(rows_for(D2, "r1", "champion", ["c7"], [12.5], threshold=np.nan))
    code, out, _ = run(capsys, "decision", "c7", "2025-03-02", "--ledger", str(ledger.root))
    assert code == 0 and out.splitlines()[0] == "entity c7 on 2025-03-02: decided by r1 (champion)"
    assert out.splitlines()[3].split()[2:7] == ["r1", "champion", "yes", "12.5000", "12.5"]


def test_decision_without_a_record_or_with_a_bad_day_is_a_one_line_error(ledger_dir, capsys):
    code, out, err = run(capsys, "decision", "c404", "2025-03-01", "--ledger", ledger_dir)
    assert (code, out) == (1, "") and err == "mlops: error: no prediction recorded for entity 'c404' on 2025-03-01\n"
    code, _, err = run(capsys, "decision", "c1", "../etc", "--ledger", ledger_dir)
    assert code == 1 and "'../etc' is not a day (YYYY-MM-DD)" in err


def test_predictions_summarises_a_version(ledger_dir, capsys):
    code, out, _ = run(capsys, "predictions", "--version", "v1", "--ledger", ledger_dir)
    assert code == 0
    lines = out.splitlines()
    mean = (0.8123 + 0.3 + 0.42 + 0.7 + 0.2 + 0.1) / 6
    assert lines[0] == f"version v1: 6 rows over 2 days (2025-03-01 .. 2025-03-02), mean score {mean:.4f}"
    table = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    assert table["champion"][:3] == ["5", "5", "2"] and table["shadow"][:3] == ["1", "0", "1"]

    code, out, _ = run(capsys, "predictions", "--version", "v1", "--start", "2025-03-02", "--ledger", ledger_dir)
    assert out.splitlines()[0] == ("version v1 between 2025-03-02 and the end: 3 rows over 1 days "
                                   "(2025-03-02 .. 2025-03-02), mean score 0.3333")
    code, out, _ = run(capsys, "predictions", "--version", "v7", "--ledger", ledger_dir)
    assert (code, out.strip()) == (0, "no predictions recorded for v7")
    code, _, err = run(capsys, "predictions", "--version", "../x", "--ledger", ledger_dir)
    assert code == 1 and "invalid model version" in err


def test_the_ledger_defaults_to_each_models_ledger_in_the_data_dir(ledger_dir, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    (data / "models" / "synthetic").mkdir(parents=True)
    (tmp_path / "ledger").rename(data / "models" / "synthetic" / "ledger")
    monkeypatch.setenv("MLOPS_DATA_DIR", str(data))
    code, out, _ = run(capsys, "decision", "c1", "2025-03-02")
    assert code == 0 and "synthetic: entity c1 on 2025-03-02: decided by v1 (champion)" in out
    code, _, err = run(capsys, "decision", "c1", "2025-03-02", "--model", "elec2")
    assert code == 1 and "no prediction recorded for entity 'c1'" in err
    code, _, err = run(capsys, "decision", "c1", "2025-03-02", "--model", "elc2")
    assert code == 1 and "no model named 'elc2'" in err
