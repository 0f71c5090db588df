"""The online service's core without HTTP: request rows checked as the ingestion schema checks a file, the
micro-batcher, the ledger buffer and online ledger parts, the Prometheus text."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import threading

import duckdb
import numpy as np
import pandas as pd
import pytest

from mlops_assets.core.ingestion.validation import validate_batch
from mlops_assets.core.serving.ledger import PredictionLedger
from mlops_assets.core.serving.ledger_buffer import LedgerBackpressure, LedgerBuffer
from mlops_assets.core.serving.metrics import Counter, Histogram, render
from mlops_assets.core.serving.online import MicroBatcher
from mlops_assets.core.serving.request_rows import RequestRows, RowsRejected

DAY = "2025-03-01"


def good_row(i=0):
    return {"event_time": f"{DAY}T{i % 24:02d}:15:00", "customer_id": f"c{i}", "tenure": 1.5, "spend": -2.0,
            "visits": 0.0, "support_calls": 3, "discount": 0.25, "app_errors": -1.0, "region": "north",
            "plan": "pro"}


# ------------------------------------------------------------------------------------------ request rows


BAD_VALUES = [  # (column, value, what the reason says)
    ("tenure", 10.5, "above the maximum 10"),
    ("spend", -11, "below the minimum -10"),
    ("visits", "3", "wrong type: expected a number"),
    ("visits", True, "wrong type: expected a number"),
    ("discount", None, "null, but the spec does not allow nulls"),
    ("app_errors", float("inf"), "not finite"),
    ("region", "mars", "unknown category 'mars'"),
    ("plan", 3, "unknown category '3'"),
    ("event_time", "2025-03-01T10:00:00+01:00", "timezone offset"),
    ("event_time", "yesterday", "not an ISO 8601 timestamp"),
    ("customer_id", "", "the entity id is empty"),
]


@pytest.mark.parametrize("column,value,reason", BAD_VALUES)
def test_a_bad_value_is_named_by_row_column_and_reason(synthetic_spec, column, value, reason):
    rows = [good_row(0), {**good_row(1), column: value}]
    with pytest.raises(RowsRejected) as err:
        RequestRows(synthetic_spec).check(rows)
    [problem] = err.value.problems
    assert (problem.row, problem.column) == (1, column) and reason in problem.reason


@pytest.mark.parametrize("column,value", [(c, v) for c, v, _ in BAD_VALUES if c not in ("event_time", "customer_id")
                                          and not isinstance(v, (str, bool)) or c == "region"])
def test_the_values_refused_online_are_those_the_ingestion_schema_refuses(synthetic_spec, column, value):
    """The same value in a landed file fails the spec's pandera schema on the same column."""
    frame = pd.DataFrame([good_row(0), {**good_row(1), column: value}])
    frame["event_time"] = pd.to_datetime(frame["event_time"])
    failures = validate_batch(frame, synthetic_spec, DAY).failures
    assert {f["column"] for f in failures} == {column}
    assert validate_batch(pd.DataFrame([good_row(0)]).assign(event_time=lambda f: pd.to_datetime(f["event_time"])),
                          synthetic_spec, DAY).passed


def test_missing_extra_and_duplicate_are_reported_for_every_row(synthetic_spec):
    extra = {**good_row(0), "churned": 1}
    missing = good_row(1)
    del missing["plan"]
    with pytest.raises(RowsRejected) as err:
        RequestRows(synthetic_spec).check([extra, missing, good_row(2), good_row(2), "not a row"])
    found = {(p.row, p.column): p.reason for p in err.value.problems}
    assert found[(0, "churned")].startswith("unexpected column")
    assert found[(1, "plan")] == "missing column"
    assert found[(3, "customer_id")] == "duplicate key (event_time, customer_id): the same as row 2"
    assert found[(4, None)].startswith("a row must be a JSON object")
    assert len(found) == 4


def test_good_rows_come_back_typed_for_the_feature_module(synthetic_spec):
    [row] = RequestRows(synthetic_spec).check([{**good_row(0), "customer_id": 17, "plan": "pro"}])
    assert row["event_time"] == dt.datetime(2025, 3, 1, 0, 15) and row["customer_id"] == "17"
    assert row["support_calls"] == 3.0 and isinstance(row["support_calls"], float)


def _outcome(check, batch):
    try:
        return "ok", check(batch)
    except RowsRejected as exc:
        return "rejected", exc.problems


@pytest.mark.parametrize("case", ["good", "entity as number", "duplicate", "extra", "missing", "not a row", "empty id",
                                  *[f"bad {c}={v!r}" for c, v, _ in BAD_VALUES]])
def test_the_column_check_accepts_types_and_rejects_exactly_as_the_row_by_row_check(synthetic_spec, case):
    """check_columns (the service's) against _check_rows (row by row): same rows, same problems in the same order."""
    from mlops_assets.core.features.engineering import engineer

    batch = [good_row(i) for i in range(5)]
    if case == "entity as number":
        batch[1]["customer_id"], batch[2]["customer_id"] = 17, 2.5
    elif case == "duplicate":
        batch[3] = dict(batch[1])
    elif case == "extra":
        batch[2]["churned"] = 1
    elif case == "missing":
        del batch[4]["plan"]
    elif case == "not a row":
        batch[0] = [1, 2]
    elif case == "empty id":
        batch[2]["customer_id"] = "  "
    elif case.startswith("bad "):
        column, value, _ = BAD_VALUES[[f"bad {c}={v!r}" for c, v, _ in BAD_VALUES].index(case)]
        batch[3][column] = value
        batch[1][column] = value
    checker = RequestRows(synthetic_spec)
    by_row = _outcome(checker._check_rows, batch)
    by_column = _outcome(lambda b: checker.check_columns(b), batch)
    assert by_row[0] == by_column[0] == ("ok" if case in ("good", "entity as number") else "rejected")
    if by_row[0] == "rejected":
        assert by_column[1] == by_row[1]
    else:
        assert by_column[1].records() == by_row[1]
        columns = list(synthetic_spec.batch_columns)
        from_rows = engineer(pd.DataFrame.from_records(by_row[1], columns=columns), synthetic_spec)
        # the service engineers the checked columns as they are; a DataFrame of them gives the same table
        pd.testing.assert_frame_equal(engineer(by_column[1].columns, synthetic_spec), from_rows, check_exact=True)
        pd.testing.assert_frame_equal(engineer(pd.DataFrame(by_column[1].columns, columns=columns), synthetic_spec),
                                      from_rows, check_exact=True)


def test_engineer_gives_the_same_table_from_columns_with_nulls_as_from_a_dataframe(synthetic_spec):
    """Checked columns hold lists where a null or a mixed type forced value-by-value typing: the feature module
    must type them as it types a DataFrame's columns."""
    from dataclasses import replace

    from mlops_assets.core.features.engineering import engineer

    spec = replace(synthetic_spec, features=[replace(f, nullable=True) for f in synthetic_spec.features])
    rows = [good_row(i) for i in range(4)]
    rows[1]["discount"], rows[2]["region"], rows[3]["plan"], rows[0]["support_calls"] = None, None, None, 2
    checked = RequestRows(spec).check_columns(rows)
    assert isinstance(checked.columns["discount"], list) and isinstance(checked.columns["region"], list)
    table = engineer(checked.columns, spec)
    pd.testing.assert_frame_equal(table, engineer(pd.DataFrame.from_records(checked.records()), spec),
                                  check_exact=True)
    assert np.isnan(table["discount"][1]) and table["region"][2] is None and table["support_calls"].dtype == np.float64


# ------------------------------------------------------------------------------------------ micro-batcher


def test_concurrent_requests_share_a_model_call_and_each_gets_its_own_rows():
    calls = []

    def score(requests):
        calls.append([len(r) for r in requests])
        return [[f"scored {x}" for x in rows] for rows in requests]

    async def main():
        batcher = MicroBatcher(score, max_rows=5)
        first = await batcher.submit(["alone"])  # an idle model scores at once
        results = await asyncio.gather(*[batcher.submit([i, i]) for i in range(4)])
        await batcher.close()
        return first, results

    first, results = asyncio.run(main())
    assert first == ["scored alone"]
    assert results == [[f"scored {i}", f"scored {i}"] for i in range(4)]
    assert calls[0] == [1]
    assert calls[1:] == [[2, 2], [2, 2]]  # at most max_rows rows per call, requests never split


def test_a_failed_model_call_fails_its_requests_and_the_next_batch_still_runs():
    def score(requests):
        if any("bad" in rows for rows in requests):
            raise ValueError("model exploded")
        return [list(rows) for rows in requests]

    async def main():
        batcher = MicroBatcher(score)
        with pytest.raises(ValueError, match="model exploded"):
            await batcher.submit(["bad"])
        ok = await batcher.submit(["fine"])
        await batcher.close()
        return ok

    assert asyncio.run(main()) == ["fine"]


def test_the_model_call_runs_on_the_configured_threads_and_the_setting_is_restored_after(synthetic_spec,
                                                                                        monkeypatch):
    importlib.import_module("sklearn.ensemble")  # loads scikit-learn's OpenMP runtime, whose threads are limited
    from threadpoolctl import threadpool_info, threadpool_limits

    from mlops_assets.core.serving import online
    from mlops_assets.core.serving.plan import ServingModels, ServingPlan

    seen = []

    def record_threads(*args, **kwargs):
        seen.append({lib["internal_api"]: lib["num_threads"] for lib in threadpool_info()})
        raise RuntimeError("recorded")

    monkeypatch.setattr(online, "score_parts", record_threads)
    live = type("Live", (), {"serving": lambda self, name: ServingModels(ServingPlan("v1"), None, None, None)})()
    rows = RequestRows(synthetic_spec).check_columns([good_row(0)])
    with threadpool_limits(limits=3):  # the process's setting, whatever the machine's cores
        for threads in (1, None):
            with pytest.raises(RuntimeError, match="recorded"):
                online.OnlineScorer("m", synthetic_spec, live, None, model_threads=threads).score([rows])
        after = {lib["internal_api"]: lib["num_threads"] for lib in threadpool_info()}
    assert "openmp" in seen[0]
    assert set(seen[0].values()) == {1}  # limited inside the call
    assert set(seen[1].values()) == {3} and set(after.values()) == {3}  # None leaves it; the limit is undone


# ------------------------------------------------------------------------------------------ ledger


def ledger_rows(entities, version="v1", day=DAY, route="champion"):
    n = len(entities)
    ts = pd.Timestamp(day) + pd.to_timedelta(np.arange(n), unit="min")
    return pd.DataFrame({
        "day": ts.normalize(), "entity": entities, "timestamp": ts, "score": np.linspace(0, 1, n),
        "decision": (np.linspace(0, 1, n) >= 0.5).astype(float), "threshold": 0.5, "model_version": version,
        "route": route, "acted_on": route != "shadow",
        "scored_at": pd.Series([pd.Timestamp("2025-03-02", tz="UTC")] * n, dtype="datetime64[us, UTC]"),
        "latency_ms_per_1k": np.nan})


def test_online_parts_are_read_with_the_batch_day_and_survive_a_replace_day(tmp_path):
    ledger = PredictionLedger(tmp_path / "ledger")
    ledger.write(ledger_rows(["b1", "b2"], version="v1"))
    ledger.append_online(ledger_rows(["o1"], version="v2"), "0001")
    ledger.append_online(ledger_rows(["o2"], version="v2", day="2025-03-03"), "0002")
    assert sorted(ledger.day(DAY)["entity"]) == ["b1", "b2", "o1"]
    assert ledger.days() == [DAY, "2025-03-03"] and ledger.versions() == ["v1", "v2"]
    assert ledger.for_entity("o1", DAY)["model_version"].tolist() == ["v2"]
    assert ledger.totals("v2")["rows"] == 2
    ledger.write(ledger_rows(["b3"], version="v3"), replace_days=True)  # batch re-scores the day
    assert sorted(ledger.day(DAY)["entity"]) == ["b3", "o1"]
    ledger.write(ledger_rows(["b4"], version="v4"))  # keep_others: the online rows are not folded in twice
    assert sorted(ledger.day(DAY)["entity"]) == ["b3", "b4", "o1"]
    with pytest.raises(ValueError, match="invalid online part name"):
        ledger.append_online(ledger_rows(["x"]), "../escape")


def test_the_buffer_flushes_in_order_keeps_rows_a_failed_flush_could_not_write_and_refuses_past_its_bound(tmp_path):
    ledger = PredictionLedger(tmp_path / "ledger")
    fail = threading.Event()

    class Flaky:
        def append_online(self, rows, part):
            if fail.is_set():
                raise OSError("disk full")
            return ledger.append_online(rows, part)

    buffer = LedgerBuffer(lambda model: Flaky(), flush_seconds=60, max_rows=5)
    buffer.append("m", ledger_rows(["a", "b"]))
    fail.set()
    with pytest.raises(OSError):
        buffer.flush()
    assert buffer.stats()["pending_rows"] == 2 and buffer.stats()["flush_errors"] == 1
    buffer.append("m", ledger_rows(["c", "d"]))
    with pytest.raises(LedgerBackpressure):
        buffer.append("m", ledger_rows(["e", "f"]))
    fail.clear()
    buffer.flush()
    buffer.append("m", ledger_rows(["g"]))
    buffer.start()
    buffer.close()  # a clean shutdown writes what is left
    parts = ledger._online_files(day=DAY)
    assert len(parts) == 2 and parts == sorted(parts)
    in_file_order = [e for p in parts for (e,) in duckdb.sql(f"SELECT entity FROM read_parquet('{ledger.root / p}')").fetchall()]
    assert in_file_order == ["a", "b", "c", "d", "g"]
    assert buffer.stats() | {"last_error": None} == buffer.stats() | {
        "pending_rows": 0, "max_pending_rows": 4, "flushed_rows": 5, "parts": 2, "last_error": None}


# ------------------------------------------------------------------------------------------ metrics


def test_metrics_render_as_prometheus_text():
    latency = Histogram("x_seconds", "Latency", ("model",), buckets=(0.01, 0.1))
    latency.observe(0.005, "m")
    latency.observe(0.05, "m")
    latency.observe(5.0, "m")
    count = Counter("x_total", "Requests", ("model", "status"))
    count.inc("m", "200", by=2)
    text = render([latency, count])
    assert text.splitlines() == [
        "# HELP x_seconds Latency", "# TYPE x_seconds histogram",
        'x_seconds_bucket{model="m",le="0.01"} 1', 'x_seconds_bucket{model="m",le="0.1"} 2',
        'x_seconds_bucket{model="m",le="+Inf"} 3', 'x_seconds_sum{model="m"} 5.055', 'x_seconds_count{model="m"} 3',
        "# HELP x_total Requests", "# TYPE x_total counter", 'x_total{model="m",status="200"} 2',
    ]


# ------------------------------------------------------------------------------------------ live models


class FakeRegistry:
    """Aliases and files the test moves by hand; `load_model` refuses a damaged version as the registry does."""

    def __init__(self):
        self.aliases, self.damaged, self.broken, self.loads = {"champion": "v1"}, set(), False, []
        self.previous = None
        self.token = None  # (stamp, newest change) as DuckDBBackend.change_token gives; None: no token
        self.reads = 0

    def serving_aliases(self):
        if self.broken:
            raise OSError("registry unreachable")
        self.reads += 1
        return {**{a: self.aliases.get(a) for a in ("champion", "canary", "shadow")},
                "previous_champion": self.previous}

    def change_token(self):
        return self.token

    def load_model(self, version):
        self.loads.append(version)
        if version in self.damaged:
            raise ValueError(f"{version}: sha256 mismatch")
        return f"pipeline {version}"


def live_models(tmp_path, registry):
    from mlops_assets.core.serving.canary import CanaryStateFile
    from mlops_assets.core.serving.live_models import LiveModels, ModelSlot

    return LiveModels([ModelSlot("m", registry, CanaryStateFile(tmp_path / "canary.json"))])


def test_live_models_swap_on_promotion_keep_the_previous_champion_and_survive_a_registry_outage(tmp_path):
    registry = FakeRegistry()
    live = live_models(tmp_path, registry)
    live.refresh()
    first = live.serving("m")
    assert first.champion.pipeline == "pipeline v1"
    registry.aliases["champion"], registry.previous = "v2", "v1"
    live.refresh()
    assert live.serving("m").champion.version == "v2" and first.champion.version == "v1"  # old object untouched
    assert live.status("m")["loaded_versions"] == ["v1", "v2"]
    registry.aliases["champion"], registry.previous = "v1", None  # rollback: v1 is still loaded
    loads = len(registry.loads)
    live.refresh()
    assert live.serving("m").champion.version == "v1" and len(registry.loads) == loads
    registry.broken = True
    live.refresh()
    assert live.serving("m").champion.version == "v1"
    assert not live.registry_status()["readable"] and "registry unreachable" in live.registry_status()["error"]
    registry.broken = False
    live.refresh()
    assert live.registry_status()["readable"]


def test_the_registry_is_read_only_when_its_change_token_moves(tmp_path, monkeypatch):
    import time

    from mlops_assets.core.serving import live_models as live_module

    registry = FakeRegistry()
    registry.token = ("stat 1", time.time() - 60)  # last written a minute ago
    live = live_models(tmp_path, registry)
    live.refresh()
    live.refresh()
    assert registry.reads == 1  # same token, old enough: nothing read
    registry.aliases["champion"], registry.token = "v2", ("stat 2", time.time() - 10)
    live.refresh()
    assert registry.reads == 2 and live.serving("m").champion.version == "v2"
    # racily clean: a token whose file changed within RACY_SECONDS of the stat may hide a second write
    registry.token = ("stat 3", time.time())
    live.refresh()
    live.refresh()
    assert registry.reads == 4
    # the periodic full read happens whatever the token says
    registry.token = ("stat 4", time.time() - 60)
    live.refresh()
    monkeypatch.setattr(live_module, "FULL_READ_SECONDS", 0.0)
    registry.aliases["champion"] = "v1"
    live.refresh()
    assert registry.reads == 6 and live.serving("m").champion.version == "v1"
    # no token (PostgreSQL): every poll reads
    registry.token = None
    monkeypatch.setattr(live_module, "FULL_READ_SECONDS", 30.0)
    live.refresh()
    live.refresh()
    assert registry.reads == 8


def test_a_failed_registry_read_is_not_cached_behind_an_unchanged_token(tmp_path):
    import time

    registry = FakeRegistry()
    registry.token = ("stat 1", time.time() - 60)
    live = live_models(tmp_path, registry)
    live.refresh()
    registry.broken, registry.token = True, ("stat 2", time.time() - 60)
    live.refresh()
    assert not live.registry_status()["readable"]
    registry.broken, registry.aliases["champion"] = False, "v2"
    live.refresh()  # same token as the failed read: read anyway
    assert live.registry_status()["readable"] and live.serving("m").champion.version == "v2"


def test_a_version_failing_its_checksum_is_not_served(tmp_path):
    registry = FakeRegistry()
    live = live_models(tmp_path, registry)
    live.refresh()
    registry.aliases["champion"], registry.aliases["shadow"] = "v2", "v3"
    registry.damaged = {"v2", "v3"}
    live.refresh()
    assert live.serving("m").plan.champion == "v1" and live.serving("m").shadow is None
    assert sorted(p.split(" ")[0] for p in live.status("m")["problems"][:2]) == ["v2", "v3"]
    registry.damaged = {"v3"}
    registry.aliases["shadow"] = None
    live.refresh()  # a plan change retries the file (restored meanwhile)
    assert live.serving("m").plan.champion == "v2"
    registry.aliases["champion"] = None  # retired on purpose: nothing served
    live.refresh()
    assert live.serving("m") is None and not live.status("m")["ready"]


def test_a_loaded_version_is_prepared_for_scoring_before_it_serves(tmp_path):
    """Compiling a pipeline's preprocessor (a probe through the ColumnTransformer: a few ms) happens when the
    version is loaded, in the poller, not in the first request that scores with it."""
    from mlops_assets.core.config.spec import TrainingPolicy
    from mlops_assets.core.training import trainer
    from test_training import D0, days_from, labeled_days, small_spec

    spec = small_spec()
    frame = labeled_days(spec, days_from(D0, 2))
    pipeline = trainer.train(spec, TrainingPolicy(estimator="logistic_regression"), frame, git_commit="test").pipeline

    class RealModels(FakeRegistry):
        def load_model(self, version):
            super().load_model(version)
            return pipeline

    assert "compiled" not in trainer._facts(pipeline)
    live = live_models(tmp_path, RealModels())
    live.refresh()
    assert live.serving("m").champion.pipeline is pipeline
    assert trainer._facts(pipeline)["compiled"] is not None
