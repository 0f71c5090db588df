"""`mlops serve`'s HTTP service through FastAPI's TestClient (and once under uvicorn in a subprocess): the same
decisions as batch_scoring row by row, errors that name row and column, the ledger, hot swap and rollback,
an unreadable registry, a damaged artifact, metrics."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import dagster as dg
import duckdb
import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from conftest import REPO, SPECS
from serving_support import SERVE_DAY, register_model, request_rows, serving_location, start_canary_at
from mlops_assets import cli
from mlops_assets.core.monitoring.served import served_rows
from mlops_assets.core.serving.service_config import ServeConfig
from mlops_assets.serving_api.app import create_app

DAY = SERVE_DAY.isoformat()
FAST = ServeConfig(poll_seconds=0.1, ledger_flush_seconds=0.05)


@pytest.fixture
def loc(tmp_path):
    return serving_location(tmp_path)


@pytest.fixture
def dagster_loc(tmp_path):
    return serving_location(tmp_path, with_dagster=True)


def client_for(loc, config=FAST) -> TestClient:
    return TestClient(create_app(config=config, portfolio=loc.portfolio))


def batch_ledger(loc):
    """batch_scoring materialized for DAY through Dagster, then the day's ledger rows keyed by (route, version,
    entity)."""
    asset = loc.defs.resolve_assets_def(loc.key("batch_scoring"))
    result = dg.materialize([asset], partition_key=DAY, instance=loc.instance, raise_on_error=False)
    assert result.success
    rows = loc.project.ledger.day(DAY)
    return {(r.route, r.model_version, r.entity): r for r in rows.itertuples()}


def assert_identical_to_batch(loc, predictions, batch):
    """Same rows, routes, versions and decisions; scores equal up to the last bits of floating-point rounding
    (a model's matrix product rounds differently for a different number of rows in the call)."""
    online = loc.project.ledger.day(DAY)
    online = online[online["scored_at"] > max(r.scored_at for r in batch.values())]
    assert len(online) == len(batch), "online scoring wrote a different number of ledger rows than batch"
    for r in online.itertuples():
        twin = batch[(r.route, r.model_version, r.entity)]
        assert (r.decision, r.acted_on, r.timestamp) == (twin.decision, twin.acted_on, twin.timestamp)
        assert r.score == pytest.approx(twin.score, rel=1e-12, abs=1e-15)
    served = {p["entity"]: p for p in predictions}
    acted = [r for r in batch.values() if r.acted_on]
    assert len(served) == len(acted)
    for r in acted:
        p = served[r.entity]
        assert (p["decision"], p["model_version"], p["route"]) == (r.decision, r.model_version, r.route)
        assert p["score"] == pytest.approx(r.score, rel=1e-12, abs=1e-15)


def post_each(client, rows, threads=8):
    """Every row in its own request, from several threads at once (they share micro-batches)."""
    out, errors = [None] * len(rows), []

    def work(k):
        for i in range(k, len(rows), threads):
            response = client.post("/models/synthetic/predict", json=rows[i])
            if response.status_code != 200:
                errors.append(response.text)
            else:
                out[i] = response.json()["predictions"][0]

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    [w.start() for w in workers]
    [w.join() for w in workers]
    assert errors == []
    return out


def test_champion_only_scores_every_row_as_batch_scoring_does(dagster_loc):
    loc = dagster_loc
    champion = register_model(loc, 1)
    batch = batch_ledger(loc)
    rows = request_rows(loc)
    with client_for(loc) as client:
        predictions = post_each(client, rows)
    assert {p["model_version"] for p in predictions} == {champion}
    assert_identical_to_batch(loc, predictions, batch)


def test_canary_share_and_shadow_match_batch_scoring_row_by_row(dagster_loc):
    loc = dagster_loc
    register_model(loc, 1)
    canary, shadow = register_model(loc, 2, alias=None), register_model(loc, 3, alias=None)
    start_canary_at(loc, canary, 0.5)
    loc.registry.promote(shadow, "shadow", actor="test", reason="test")
    batch = batch_ledger(loc)
    assert {k[0] for k in batch} == {"champion", "canary", "shadow"}
    with client_for(loc) as client:
        response = client.post("/models/synthetic/predict", json=request_rows(loc))  # one batch request
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["row"] for p in predictions] == list(range(len(predictions)))
    assert {p["route"] for p in predictions} == {"champion", "canary"}
    assert_identical_to_batch(loc, predictions, batch)


def test_bad_rows_are_422_naming_row_column_and_reason_and_nothing_is_recorded(loc):
    register_model(loc, 1)
    good = request_rows(loc)[:3]
    bad = [dict(good[0]), dict(good[1]), dict(good[2]), dict(good[0])]
    bad[0]["tenure"] = 11.5  # above the spec's max 10
    bad[1]["region"] = "mars"
    bad[1]["bonus"] = 1
    bad[2]["spend"] = "12"
    del bad[3]["plan"]
    with client_for(loc) as client:
        response = client.post("/models/synthetic/predict", json=bad)
        assert response.status_code == 422
        problems = {(p["row"], p["column"]): p["reason"] for p in response.json()["problems"]}
        assert problems[(0, "tenure")] == "out of range: 11.5 is above the maximum 10"
        assert problems[(1, "region")].startswith("unknown category 'mars'")
        assert problems[(1, "bonus")].startswith("unexpected column")
        assert problems[(2, "spend")] == "wrong type: expected a number, got text '12'"
        assert problems[(3, "plan")] == "missing column"
        dup = client.post("/models/synthetic/predict", json=[good[0], good[0]])
        assert dup.status_code == 422 and dup.json()["problems"][0]["row"] == 1
        tz = client.post("/models/synthetic/predict", json={**good[0], "event_time": "2025-01-16T10:00:00Z"})
        assert tz.status_code == 422 and "timezone offset" in tz.json()["problems"][0]["reason"]
        assert client.post("/models/synthetic/predict", content=b"{not json").status_code == 400
        assert client.post("/models/synthetic/predict", json=[]).status_code == 422
        unknown = client.post("/models/synthetc/predict", json=good[0])
        assert unknown.status_code == 404 and "did you mean 'synthetic'" in unknown.json()["error"]
    assert loc.project.ledger.day(DAY).empty  # nothing invalid reached the ledger


def test_an_oversized_body_or_batch_is_refused_with_413(loc):
    register_model(loc, 1)
    rows = request_rows(loc)
    with client_for(loc, ServeConfig(max_body_bytes=2000, max_request_rows=5)) as client:
        assert client.post("/models/synthetic/predict", json=rows[:1]).status_code == 200
        big = client.post("/models/synthetic/predict", json=rows[:40])
        assert big.status_code == 413 and "2000 bytes" in big.json()["error"]
    with client_for(loc, ServeConfig(max_request_rows=5)) as client:
        assert client.post("/models/synthetic/predict", json=rows[:6]).status_code == 413


def test_online_decisions_reach_the_ledger_in_order_and_mlops_decision_finds_them(dagster_loc, capsys, monkeypatch):
    loc = dagster_loc
    champion = register_model(loc, 1)
    rows = request_rows(loc)
    slow = ServeConfig(ledger_flush_seconds=60)  # nothing flushes on its own: only the clean shutdown writes
    with client_for(loc, slow) as client:
        for chunk in (rows[:10], rows[10:20], rows[20:30]):
            assert client.post("/models/synthetic/predict", json=chunk).status_code == 200
        assert client.app.state.buffer.stats()["pending_rows"] == 30
        assert loc.project.ledger.day(DAY).empty
    ledger = loc.project.ledger
    written = ledger.day(DAY)
    assert len(written) == 30 and set(written["model_version"]) == {champion}
    # several flushes: parts in flush order, each part's rows in request order
    with client_for(loc) as client:
        for row in rows[30:36]:
            assert client.post("/models/synthetic/predict", json=row).status_code == 200
            time.sleep(0.08)
    parts = ledger._online_files(day=DAY)
    assert len(parts) >= 3 and parts == sorted(parts)
    entities = [e for part in parts for (e,) in duckdb.sql(f"SELECT entity FROM read_parquet('{ledger.root / part}')").fetchall()]
    assert entities == [r["customer_id"] for r in rows[:36]]  # the parts in name order, each in file order
    # the batch job re-scoring the day leaves the online parts alone
    batch_started = pd.Timestamp.now(tz="UTC")
    batch_ledger(loc)
    assert ledger._online_files(day=DAY) == parts
    # daily monitoring (served_rows) reads online and batch rows alike, each entity's decision once: the first
    day_rows = ledger.day(DAY)
    served = served_rows(day_rows, DAY)
    batch_acted = int((day_rows["acted_on"] & (day_rows["scored_at"] >= batch_started)).sum())
    assert served.repeated_rows == 36 and len(served.rows) == batch_acted
    online_first = served.rows.set_index("entity").loc[[r["customer_id"] for r in rows[:36]], "scored_at"]
    assert (online_first < batch_started).all()
    monkeypatch.setenv("MLOPS_DATA_DIR", str(loc.settings.data_dir))
    monkeypatch.setenv("MLOPS_SPECS", str(SPECS / "synthetic.toml"))
    assert cli.main(["decision", rows[31]["customer_id"], DAY, "--model", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert f"decided by {champion} (champion)" in out


def test_promotion_and_rollback_swap_under_load_without_a_failed_request(loc):
    first = register_model(loc, 1)
    second = register_model(loc, 2, alias=None)
    rows = request_rows(loc)
    seen, failures, stop = [], [], threading.Event()
    with client_for(loc) as client:
        def hammer(k):
            i = k
            while not stop.is_set():
                response = client.post("/models/synthetic/predict", json=rows[i % len(rows)])
                if response.status_code != 200:
                    failures.append(response.status_code)
                else:
                    seen.append((time.monotonic(), response.json()["predictions"][0]["model_version"]))
                i += 4

        workers = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
        [w.start() for w in workers]
        try:
            swap_under_load(loc, client, seen, first, second)
        finally:  # a failed assertion must not leave the clients running (the client's exit would wait forever)
            stop.set()
            [w.join() for w in workers]
    assert failures == []
    assert seen[-1][1] == first, "the rollback did not take effect within 2 s"
    assert {v for _, v in seen} == {first, second}


def swap_under_load(loc, client, seen, first, second):
    """Promote, then roll back, while clients send requests: each takes effect within 2 s."""
    time.sleep(0.3)
    promoted_at = time.monotonic()
    loc.registry.promote(second, "champion", actor="test", reason="promote under load")
    deadline = promoted_at + 2.0
    while time.monotonic() < deadline and not (seen and seen[-1][1] == second):
        time.sleep(0.02)
    assert seen[-1][1] == second, "the promotion did not take effect within 2 s"
    status = client.get("/models").json()["models"][0]
    assert status["previous_champion"] == first and first in status["loaded_versions"]
    rolled_at = time.monotonic()
    loc.registry.rollback(actor="test", reason="rollback under load")
    while time.monotonic() < rolled_at + 2.0 and seen[-1][1] != first:
        time.sleep(0.02)
    time.sleep(0.2)


def test_a_canary_started_in_the_registry_takes_its_share_without_a_restart(loc):
    register_model(loc, 1)
    canary = register_model(loc, 2, alias=None)
    rows = request_rows(loc)
    with client_for(loc) as client:
        assert {p["route"] for p in client.post("/models/synthetic/predict", json=rows).json()["predictions"]} == {
            "champion"}
        start_canary_at(loc, canary, 0.5)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            predictions = client.post("/models/synthetic/predict", json=rows).json()["predictions"]
            if any(p["route"] == "canary" for p in predictions):
                break
            time.sleep(0.05)
        routes = {p["route"]: p["model_version"] for p in predictions}
        assert routes.get("canary") == canary and "champion" in routes
        assert client.get("/models").json()["models"][0]["canary_share"] == 0.5


def test_an_unreadable_registry_keeps_the_last_models_serving_and_readyz_says_so(loc, monkeypatch):
    champion = register_model(loc, 1)
    with client_for(loc) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        slot = client.app.state.live.slots["synthetic"]
        database = slot.registry._db.path
        good = database.read_bytes()
        database.write_bytes(b"not a database" * 100)  # its change token moves: the next poll reads, and fails
        time.sleep(0.3)
        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "degraded" and not body["registry"]["readable"]
        assert f"cannot open the registry database {database}" in body["registry"]["error"]
        response = client.post("/models/synthetic/predict", json=request_rows(loc)[0])
        assert response.status_code == 200 and response.json()["predictions"][0]["model_version"] == champion
        assert "mlops_serving_registry_readable 0" in client.get("/metrics").text
        database.write_bytes(good)  # repaired: read again at once, though the last failed read saw no other change
        time.sleep(0.3)
        assert client.get("/readyz").json()["status"] == "ready"


def test_a_model_whose_file_fails_its_checksum_is_never_served(loc):
    first = register_model(loc, 1)
    damaged = register_model(loc, 2, alias=None)

    def damage(version):
        path = loc.registry.artifacts.root / loc.registry.get(version).artifact.path
        path.write_bytes(path.read_bytes()[:-1] + b"\x00")

    with client_for(loc, ServeConfig(poll_seconds=600)) as client:  # the test reads the registry itself
        loc.registry.promote(damaged, "champion", actor="test", reason="test")
        damage(damaged)  # after the promotion (which checks the file), before the service loads it
        client.app.state.live.refresh()
        response = client.post("/models/synthetic/predict", json=request_rows(loc)[0])
        assert response.json()["predictions"][0]["model_version"] == first  # the last verified champion
        problems = client.get("/readyz").json()["models"]["synthetic"]["problems"]
        assert any(p.startswith(f"{damaged} is not served") and "sha256" in p for p in problems)
    with client_for(loc) as client:  # started with only the damaged champion: nothing to serve
        assert client.get("/readyz").status_code == 503
        assert client.post("/models/synthetic/predict", json=request_rows(loc)[0]).status_code == 503


def test_metrics_are_prometheus_text_with_latency_status_and_versions(loc):
    champion = register_model(loc, 1)
    with client_for(loc) as client:
        rows = request_rows(loc)
        client.post("/models/synthetic/predict", json=rows[0])
        client.post("/models/synthetic/predict", json={**rows[0], "tenure": 99.0})
        text = client.get("/metrics").text
        assert client.get("/healthz").json() == {"status": "ok"}
        assert "/models/{model}/predict" in client.get("/openapi.json").json()["paths"]
    assert 'mlops_serving_request_seconds_count{model="synthetic",route="champion"} 1' in text
    assert 'mlops_serving_request_seconds_bucket{model="synthetic",route="champion",le="+Inf"} 1' in text
    assert 'mlops_serving_requests_total{model="synthetic",status="200"} 1' in text
    assert 'mlops_serving_requests_total{model="synthetic",status="422"} 1' in text
    assert f'mlops_serving_model_version{{model="synthetic",alias="champion",version="{champion}"}} 1' in text
    assert "# TYPE mlops_serving_request_seconds histogram" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlops_serve_runs_under_uvicorn_and_flushes_the_ledger_on_sigterm(loc):
    register_model(loc, 1)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLOPS_DATA_DIR": str(loc.settings.data_dir),
           "MLOPS_SPECS": str(SPECS / "synthetic.toml")}
    proc = subprocess.Popen([sys.executable, "-m", "mlops_assets.cli", "serve", "--port", str(port),
                             "--ledger-flush-seconds", "30"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        rows = request_rows(loc)[:5]
        response = httpx.post(f"{url}/models/synthetic/predict", json=rows)
        assert response.status_code == 200 and len(response.json()["predictions"]) == 5
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode()
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is -15 either way
    assert "Application shutdown complete" in output, output
    assert len(loc.project.ledger.day(DAY)) == 5  # written at shutdown, not by the 30 s flusher


def test_serve_refuses_an_unknown_model_with_the_portfolio_named(loc, capsys, monkeypatch):
    monkeypatch.setenv("MLOPS_DATA_DIR", str(loc.settings.data_dir))
    monkeypatch.setenv("MLOPS_SPECS", str(SPECS / "synthetic.toml"))
    assert cli.main(["serve", "--model", "synthetc"]) == 1
    assert "no model named 'synthetc': this portfolio has synthetic" in capsys.readouterr().err
    assert cli.main(["serv"]) == 2
    assert "did you mean 'serve'" in capsys.readouterr().err

