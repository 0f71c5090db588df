"""The prediction ledger: one Parquet file per (version, route, day), queried with DuckDB."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core.serving.ledger import LEDGER_COLUMNS, LedgerError, PredictionLedger, entity_keys
from conftest import SPECS
from mlops_assets.core.config.settings import Settings

D1, D2, D3 = dt.date(2025, 3, 1), dt.date(2025, 3, 2), dt.date(2025, 3, 3)
SCORED_AT = pd.Timestamp("2025-03-04 06:00", tz="UTC")


def rows_for(day, version, route, entities, scores, threshold=0.5):
    n = len(entities)
    ts = pd.Series([pd.Timestamp(day) + pd.Timedelta(hours=1 + i) for i in range(n)])
    scores = np.asarray(scores, dtype=float)
    return pd.DataFrame({
        "day": [day] * n, "entity": list(entities), "timestamp": ts, "score": scores,
        "decision": (scores >= threshold).astype(float), "threshold": threshold,
        "model_version": version, "route": route, "acted_on": route != "shadow",
        "scored_at": pd.Series([SCORED_AT] * n),
    })


@pytest.fixture
def ledger(tmp_path):
    return PredictionLedger(tmp_path / "ledger")


@pytest.fixture
def served(ledger):
    """Two days: v1 champion on c1, c2; v2 canary on c3; v9 shadow on all three; day 2 only the champion."""
    frames = [
        rows_for(D1, "v1", "champion", ["c1", "c2"], [0.8, 0.3]),
        rows_for(D1, "v2", "canary", ["c3"], [0.6]),
        rows_for(D1, "v9", "shadow", ["c1", "c2", "c3"], [0.4, 0.35, 0.9]),
        rows_for(D2, "v1", "champion", ["c1", "c2", "c3"], [0.7, 0.2, 0.1]),
    ]
    ledger.write(pd.concat(frames, ignore_index=True))
    return frames


def test_one_file_per_version_route_and_day_and_no_temporary_files_left(ledger, served):
    files = sorted(p.relative_to(ledger.root).as_posix() for p in ledger.root.rglob("*") if p.is_file())
    assert files == ["v1/champion/2025-03-01.parquet", "v1/champion/2025-03-02.parquet",
                     "v2/canary/2025-03-01.parquet", "v9/shadow/2025-03-01.parquet"]


def test_by_version_round_trips_every_column(ledger, served):
    got = ledger.by_version("v1")
    want = pd.concat([served[0], served[3]], ignore_index=True)
    assert list(got.columns) == list(LEDGER_COLUMNS)
    assert got["entity"].tolist() == want["entity"].tolist()
    np.testing.assert_allclose(got["score"], want["score"])
    np.testing.assert_array_equal(got["decision"], want["decision"])
    assert (pd.to_datetime(got["timestamp"]) == want["timestamp"]).all()
    assert [d.date() for d in pd.to_datetime(got["day"])] == [D1, D1, D2, D2, D2]
    assert got["acted_on"].all() and set(got["route"]) == {"champion"}
    assert (got["scored_at"] == SCORED_AT).all() and str(got["scored_at"].dt.tz) == "UTC"
    assert got["latency_ms_per_1k"].isna().all()  # optional: NULL when the writer measured none


def test_by_version_filters_days_inclusively(ledger, served):
    assert len(ledger.by_version("v1", start=D2)) == 3
    assert len(ledger.by_version("v1", end=D1)) == 2
    assert len(ledger.by_version("v1", start=D1, end=D2)) == 5
    assert ledger.by_version("v1", start=D3).empty
    assert ledger.by_version("v404").empty


def test_for_entity_says_who_decided_and_what_the_shadow_thought(ledger, served):
    rows = ledger.for_entity("c3", D1)
    assert rows[["model_version", "route", "acted_on"]].values.tolist() == [
        ["v2", "canary", True], ["v9", "shadow", False]]
    assert rows["score"].tolist() == [0.6, 0.9]
    again = ledger.for_entity("c3", D2)
    assert again[["model_version", "route"]].values.tolist() == [["v1", "champion"]]
    assert ledger.for_entity("c404", D1).empty


def test_day_returns_every_version_and_route(ledger, served):
    day = ledger.day(D1)
    assert len(day) == 6
    assert sorted(set(zip(day["model_version"], day["route"]))) == [
        ("v1", "champion"), ("v2", "canary"), ("v9", "shadow")]
    assert ledger.day("2025-03-05").empty


def test_rewriting_a_day_replaces_its_file_and_replace_days_drops_stale_models(ledger, served):
    ledger.write(rows_for(D1, "v1", "champion", ["c1", "c2", "c3"], [0.1, 0.2, 0.3]))
    assert ledger.by_version("v1", end=D1)["score"].tolist() == [0.1, 0.2, 0.3]
    assert len(ledger.by_version("v2")) == 1  # other files of the day untouched by default
    ledger.write(rows_for(D1, "v1", "champion", ["c1", "c2", "c3"], [0.5, 0.5, 0.5]), replace_days=True)
    assert ledger.by_version("v2").empty and ledger.by_version("v9").empty
    assert len(ledger.by_version("v1", start=D2)) == 3  # other days untouched


def test_summary_and_totals_are_computed_per_route_and_overall(ledger, served):
    ledger.write(rows_for(D2, "v1", "shadow", ["c9"], [0.0]))
    summary = ledger.summary("v1").set_index("route")
    assert summary.loc["champion", "rows"] == 5 and summary.loc["champion", "days"] == 2
    assert summary.loc["shadow", "acted_on"] == 0
    assert summary.loc["champion", "mean_score"] == pytest.approx((0.8 + 0.3 + 0.7 + 0.2 + 0.1) / 5)
    totals = ledger.totals("v1")
    assert totals == {"rows": 6, "days": 2, "first_day": "2025-03-01", "last_day": "2025-03-02",
                      "mean_score": pytest.approx(2.1 / 6)}
    assert ledger.totals("v1", start=D3)["rows"] == 0


def test_rows_that_would_lie_or_escape_are_refused(ledger):
    shadow = rows_for(D1, "v1", "shadow", ["c1"], [0.5])
    with pytest.raises(LedgerError, match="shadow models are never acted on"):
        ledger.write(shadow.assign(acted_on=True))
    with pytest.raises(LedgerError, match="not acted_on"):
        ledger.write(rows_for(D1, "v1", "champion", ["c1"], [0.5]).assign(acted_on=False))
    with pytest.raises(LedgerError, match="invalid model version"):
        ledger.write(shadow.assign(model_version="../../etc"))
    with pytest.raises(LedgerError, match="unknown routes"):
        ledger.write(shadow.assign(route="blue"))
    with pytest.raises(LedgerError, match="outside their `day`"):
        ledger.write(shadow.assign(day=D2))
    with pytest.raises(LedgerError, match="invalid model version"):
        ledger.by_version("..")
    with pytest.raises(ValueError, match="not a YYYY-MM-DD"):
        ledger.for_entity("c1", "2025-03-01/../..")
    assert not ledger.root.exists()


def test_without_an_entity_id_the_timestamp_is_the_entity_and_lookups_accept_a_spaced_form(ledger):
    ts = pd.Series(pd.to_datetime(["2025-03-01 10:30:00", "2025-03-01 11:00:00.250000"], format="ISO8601"))
    keys = entity_keys(ts)
    assert keys.tolist() == ["2025-03-01T10:30:00", "2025-03-01T11:00:00.250000"]
    rows = rows_for(D1, "v1", "champion", keys, [0.9, 0.1]).assign(timestamp=ts)
    ledger.write(rows)
    assert ledger.for_entity("2025-03-01 10:30", D1)["score"].tolist() == [0.9]
    assert ledger.for_entity("2025-03-01T11:00:00.25", D1)["score"].tolist() == [0.1]


def test_settings_put_each_models_ledger_in_the_data_dir(tmp_path):
    settings = Settings.for_data_dir(tmp_path / "data", SPECS / "synthetic.toml")
    assert settings.model_paths("synthetic").ledger_dir == (tmp_path / "data" / "models" / "synthetic" / "ledger").resolve()
