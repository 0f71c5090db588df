"""The prediction ledger: one Parquet file per day (every version and route), queried with DuckDB; a day is
replaced in one atomic step."""

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


def test_one_file_per_day_and_no_temporary_files_left(ledger, served):
    files = sorted(p.relative_to(ledger.root).as_posix() for p in ledger.root.rglob("*") if p.is_file())
    assert files == ["2025-03-01.parquet", "2025-03-02.parquet"]
    assert ledger.days() == ["2025-03-01", "2025-03-02"] and ledger.versions() == ["v1", "v2", "v9"]


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


# -------------------------------------------------------------- a day's replacement is one atomic step

import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

from conftest import REPO  # noqa: E402
from mlops_assets.core.io.storage import PartitionStore  # noqa: E402

ENTITIES = ["c1", "c2", "c3"]
# Every call that changes what a reader of the ledger folder sees, and the fsync before a rename.
FILE_STEPS = ("replace", "rename", "unlink", "remove", "fsync")


class Crash(BaseException):
    """The process dies here (BaseException: no `except Exception` in the code under test catches it)."""


def old_day():
    """D1 as served yesterday: v1 champion, v9 shadow."""
    return pd.concat([rows_for(D1, "v1", "champion", ENTITIES, [0.8, 0.3, 0.6]),
                      rows_for(D1, "v9", "shadow", ENTITIES, [0.4, 0.35, 0.9])], ignore_index=True)


def new_day():
    """D1 re-scored after v2 became champion: v2 decides every row, nobody shadows."""
    return rows_for(D1, "v2", "champion", ENTITIES, [0.2, 0.7, 0.1])


def story(ledger):
    """The day as a reader sees it: (entity, version, route, score) sorted; and who acted on each entity."""
    rows = ledger.day(D1)
    seen = sorted(zip(rows["entity"], rows["model_version"], rows["route"], rows["score"].round(6)))
    acted = rows[rows["acted_on"]].groupby("entity")["model_version"].apply(list).to_dict()
    return seen, acted


def expected(frame):
    return sorted(zip(frame["entity"], frame["model_version"], frame["route"], frame["score"].round(6)))


def write_legacy(root, frame):
    """The layout before one file per day: <version>/<route>/<day>.parquet."""
    frame = frame.assign(latency_ms_per_1k=np.nan)[list(LEDGER_COLUMNS)]
    for (version, route), group in frame.groupby(["model_version", "route"]):
        PartitionStore(root / version).write(route, D1.isoformat(), group.reset_index(drop=True))


def crash_at(monkeypatch, step):
    """Make the `step`-th file operation (0-based) crash the process before it happens; returns the call log."""
    calls = []
    for name in FILE_STEPS:
        real = getattr(os, name)

        def wrapper(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            if len(calls) - 1 == step:
                raise Crash(f"killed before {_name} #{step}")
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, wrapper)
    return calls


@pytest.mark.parametrize("layout", ["current", "legacy"])
def test_a_crash_at_any_point_of_replacing_a_day_leaves_the_old_day_or_the_new_one(tmp_path, monkeypatch, layout,
                                                                                      capsys):
    from mlops_assets import cli

    prepared = tmp_path / "prepared"
    if layout == "current":
        PredictionLedger(prepared).write(old_day())
    else:
        write_legacy(prepared, old_day())
    before = story(PredictionLedger(prepared))
    assert before[0] == expected(old_day()) and before[1] == {e: ["v1"] for e in ENTITIES}
    assert cli.main(["decision", "c1", D1.isoformat(), "--ledger", str(prepared)]) == 0
    answer_before = capsys.readouterr().out

    outcomes, step = [], 0
    while True:
        root = tmp_path / f"crash-{step}"
        shutil.copytree(prepared, root)
        with monkeypatch.context() as patch:
            calls = crash_at(patch, step)
            try:
                PredictionLedger(root).write(new_day(), replace_days=True)
                crashed = False
            except Crash:
                crashed = True
        seen, acted = story(PredictionLedger(root))
        assert all(len(versions) == 1 for versions in acted.values()), (step, calls, acted)  # one decision each
        if seen == expected(old_day()):
            outcomes.append("old")
            assert cli.main(["decision", "c1", D1.isoformat(), "--ledger", str(root)]) == 0
            assert capsys.readouterr().out == answer_before  # `mlops decision` says what it said before
        else:
            assert seen == expected(new_day()), (step, calls, seen)
            outcomes.append("new")
        if not crashed:
            break
        step += 1
    assert outcomes[0] == "old" and outcomes[-1] == "new"
    assert outcomes == sorted(outcomes, key=["old", "new"].index)  # one switch from old to new, never back


def test_a_torn_temporary_file_left_by_a_killed_writer_is_never_read(ledger, served):
    before = ledger.day(D1)
    (ledger.root / f".{D1.isoformat()}.parquet.tmp-999999-1").write_bytes(b"PAR1 torn in the middle")
    pd.testing.assert_frame_equal(ledger.day(D1), before)
    assert len(ledger.by_version("v1")) == 5
    ledger.write(rows_for(D1, "v1", "champion", ["c1"], [0.5]), replace_days=True)  # the next write still works
    assert ledger.day(D1)["score"].tolist() == [0.5]


def test_a_write_without_replace_days_keeps_the_days_other_models(ledger, served):
    ledger.write(rows_for(D1, "v9", "shadow", ["c1"], [0.11]))
    day = ledger.day(D1)
    assert sorted(set(zip(day["model_version"], day["route"]))) == [
        ("v1", "champion"), ("v2", "canary"), ("v9", "shadow")]
    assert day.loc[day["model_version"] == "v9", "score"].tolist() == [0.11]


SIGKILL_WRITER = textwrap.dedent("""
    import os, sys, time
    import pandas as pd
    from pathlib import Path
    from mlops_assets.core.serving.ledger import PredictionLedger

    root, step, rows = Path(sys.argv[1]), int(sys.argv[2]), pd.read_pickle(sys.argv[3])
    calls = []
    for name in {steps!r}:
        real = getattr(os, name)
        def wrapper(*args, _real=real, **kwargs):
            calls.append(1)
            if len(calls) - 1 == step:
                print("paused", flush=True)
                time.sleep(600)  # killed here with SIGKILL
            return _real(*args, **kwargs)
        setattr(os, name, wrapper)
    PredictionLedger(root).write(rows, replace_days=True)
    print("done", flush=True)
""").format(steps=FILE_STEPS)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_writer_killed_with_sigkill_mid_write_leaves_one_decision_per_entity(tmp_path):
    prepared = tmp_path / "prepared"
    write_legacy(prepared, old_day())  # the worst case: the old day spread over several files
    new_day().to_pickle(tmp_path / "new.pkl")
    outcomes, step = [], 0
    while step < 10:
        root = tmp_path / f"kill-{step}"
        shutil.copytree(prepared, root)
        proc = subprocess.Popen([sys.executable, "-c", SIGKILL_WRITER, str(root), str(step), str(tmp_path / "new.pkl")],
                                cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        line = proc.stdout.readline().strip()
        if line == "paused":
            os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=120) in (0, -signal.SIGKILL), line
        proc.stdout.close()
        seen, acted = story(PredictionLedger(root))
        assert all(len(versions) == 1 for versions in acted.values()), (step, acted)
        assert seen in (expected(old_day()), expected(new_day())), (step, seen)
        outcomes.append("old" if seen == expected(old_day()) else "new")
        if line == "done":
            break
        step += 1
    assert outcomes[0] == "old" and outcomes[-1] == "new"


def test_a_ledger_in_the_previous_layout_is_read_and_moved_to_day_files_as_days_are_written(tmp_path):
    ledger = PredictionLedger(tmp_path / "ledger")
    write_legacy(ledger.root, old_day())
    assert ledger.days() == [D1.isoformat()] and ledger.versions() == ["v1", "v9"]
    assert story(ledger)[0] == expected(old_day())
    assert ledger.for_entity("c2", D1)["model_version"].tolist() == ["v1", "v9"]
    assert ledger.totals("v1")["rows"] == 3
    ledger.write(rows_for(D1, "v9", "shadow", ["c1"], [0.5]))  # a pair written again replaces its rows
    files = sorted(p.relative_to(ledger.root).as_posix() for p in ledger.root.rglob("*.parquet"))
    assert files == ["2025-03-01.parquet"]
    seen, acted = story(ledger)
    assert seen == expected(pd.concat([old_day().iloc[:3], rows_for(D1, "v9", "shadow", ["c1"], [0.5])]))
    assert acted == {e: ["v1"] for e in ENTITIES}


def test_reading_one_day_does_not_list_the_ledger(tmp_path, monkeypatch):
    """A day's rows come from its own file: the daily cycle's cost must not grow with the days stored."""
    import pathlib

    ledger = PredictionLedger(tmp_path / "ledger")
    ledger.write(pd.concat([rows_for(dt.date(2025, 3, d), "v1", "champion", ["c1", "c2"], [0.2, 0.7])
                            for d in (1, 2)], ignore_index=True))
    before = ledger.day("2025-03-02")

    def no_listing(self, *args, **kwargs):
        raise AssertionError(f"listed {self}")

    monkeypatch.setattr(pathlib.Path, "glob", no_listing)
    monkeypatch.setattr(pathlib.Path, "iterdir", no_listing)
    after = ledger.day("2025-03-02")
    assert len(after) == len(before) > 0 and set(after["day"].astype(str)) == {"2025-03-02"}
