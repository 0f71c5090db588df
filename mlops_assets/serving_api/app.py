"""`create_app(settings)`: the ASGI app of `mlops serve`, independent of Dagster.

    POST /models/{model}/predict   one row (a JSON object) or a batch (a JSON array of objects), raw columns
                                   as in the spec's features file -> {"model", "predictions": [{row, entity,
                                   timestamp, score, decision, threshold, model_version, route}, ...]}
    GET  /models                   every model served: its versions, canary share, input columns
    GET  /healthz                  liveness;  GET /readyz: every model has a verified champion loaded (503 if
                                   not), and whether the registry is readable
    GET  /metrics                  Prometheus text;  GET /openapi.json, /docs: the OpenAPI document

The work is in the core: RequestRows (422s), MicroBatcher and OnlineScorer (one model call per micro-batch,
routed as batch scoring routes), LiveModels (follows the registry), LedgerBuffer (the ledger write path).
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from mlops_assets.core.config.settings import Settings
from mlops_assets.core.config.suggest import did_you_mean
from mlops_assets.core.portfolio import Portfolio
from mlops_assets.core.serving.ledger_buffer import LedgerBackpressure, LedgerBuffer
from mlops_assets.core.serving.live_models import LiveModels
from mlops_assets.core.serving.online import MicroBatcher, ModelUnavailable, OnlineScorer
from mlops_assets.core.serving.service_config import ServeConfig
from mlops_assets.core.serving.request_rows import RequestRows, RowsRejected
from mlops_assets.serving_api.telemetry import ServiceMetrics, input_columns

JSON = "application/json"


class BodyTooLarge(Exception):
    pass


def create_app(settings: Settings | None = None, models: list[str] | None = None,
               config: ServeConfig | None = None, portfolio: Portfolio | None = None) -> FastAPI:
    """The service for `models` (default: every model of the portfolio of `settings`, else of the
    environment). Models are loaded and verified when the app starts (its lifespan), not here."""
    config = config or ServeConfig()
    portfolio = portfolio or Portfolio(settings or Settings.from_env())
    names = list(dict.fromkeys(models or portfolio.names))
    for name in names:
        portfolio.model(name)  # an unknown name fails now, naming the portfolio's models
    metrics = ServiceMetrics()
    buffer = LedgerBuffer(lambda name: portfolio.model(name).ledger, config.ledger_flush_seconds,
                          config.ledger_max_rows, on_flush=metrics.ledger_flushed, on_error=metrics.ledger_failed)
    live = LiveModels.for_portfolio(portfolio, names, poll_seconds=config.poll_seconds, on_swap=metrics.swapped)
    checkers = {name: RequestRows(portfolio.model(name).spec) for name in names}
    batchers = {name: MicroBatcher(OnlineScorer(name, portfolio.model(name).spec, live, buffer,
                                                config.model_threads).score,
                                   None, config.max_batch_rows, config.max_wait_seconds,
                                   on_batch=metrics.batch_observer(name))
                for name in names}
    metrics.attach(live, buffer)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(live.refresh)  # load and verify before the first request
        live.start()
        buffer.start()
        try:
            yield
        finally:
            for batcher in batchers.values():
                await batcher.close()
            live.stop()
            buffer.close()  # a clean shutdown writes every buffered ledger row

    app = FastAPI(title="mlops serve", version="1", lifespan=lifespan,
                  description="Online scoring for every model of the portfolio, routed and recorded as batch "
                              "scoring is: champion, canary hash share, shadow, prediction ledger.")
    app.state.live, app.state.buffer, app.state.metrics, app.state.config = live, buffer, metrics, config

    def error(status: int, model: str, message: str, **extra) -> Response:
        metrics.requests.inc(model, str(status))
        return Response(json.dumps({"error": message, **extra}), status_code=status, media_type=JSON)

    @app.post("/models/{model}/predict", summary="Score one row or a batch of rows",
              openapi_extra={"requestBody": {"required": True, "content": {JSON: {"schema": {
                  "oneOf": [{"type": "object", "description": "one row: column -> value"},
                            {"type": "array", "items": {"type": "object"}, "description": "a batch of rows"}]}}}}},
              responses={413: {"description": "body or batch too large"},
                         422: {"description": "rows that break the spec: {error, problems: [{row, column, reason}]}"},
                         503: {"description": "no verified champion, or the ledger cannot keep up"}})
    async def predict(model: str, request: Request) -> Response:
        started = time.perf_counter()
        if model not in batchers:
            close = did_you_mean(model, list(batchers))
            return error(404, "(unknown)", f"no model named {model!r} is served"
                         + (f"; did you mean {close!r}?" if close else f" (served: {', '.join(batchers)})"))
        try:
            body = await _read_body(request, config.max_body_bytes)
        except BodyTooLarge:
            return error(413, model, f"request body larger than {config.max_body_bytes} bytes")
        try:
            payload = json.loads(body)
        except ValueError as exc:
            return error(400, model, f"the body is not JSON: {exc}")
        records = [payload] if isinstance(payload, dict) else payload
        if not isinstance(records, list) or not records:
            return error(422, model, "send one row as a JSON object or a batch as a non-empty JSON array of objects")
        if len(records) > config.max_request_rows:
            return error(413, model, f"{len(records)} rows in one request; at most {config.max_request_rows}")
        try:
            rows = checkers[model].check_columns(records)
        except RowsRejected as exc:
            return error(422, model, "invalid rows: nothing was scored or recorded",
                         problems=[p.to_dict() for p in exc.problems])
        try:
            predictions = await batchers[model].submit(rows)
        except ModelUnavailable as exc:
            return error(503, model, str(exc))
        except LedgerBackpressure as exc:
            return error(503, model, str(exc))
        routes = {p["route"] for p in predictions}
        metrics.served(model, routes.pop() if len(routes) == 1 else "mixed", len(predictions),
                       time.perf_counter() - started)
        return Response(json.dumps({"model": model, "predictions": predictions}), media_type=JSON)

    @app.get("/models", summary="The models served, their versions and input columns")
    def list_models() -> dict:
        return {"models": [{**live.status(name), "columns": input_columns(portfolio.model(name).spec)}
                           for name in names]}

    @app.get("/healthz", summary="Liveness")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: every model's champion loaded and verified")
    def readyz() -> JSONResponse:
        statuses = {name: live.status(name) for name in names}
        ready = all(s["ready"] for s in statuses.values())
        registry = live.registry_status()
        status = "ready" if ready and registry["readable"] else "degraded" if ready else "not ready"
        body = {"status": status, "ready": ready, "registry": registry, "ledger": buffer.stats(),
                "models": {name: {k: s[k] for k in ("ready", "champion", "canary", "canary_share", "shadow",
                                                     "previous_champion", "problems")}
                           for name, s in statuses.items()}}
        if not registry["readable"]:
            body["message"] = "the registry cannot be read: serving the last verified models"
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
