"""The service's Prometheus series, and the input columns `GET /models` describes."""

from __future__ import annotations

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.serving.ledger_buffer import LedgerBuffer
from mlops_assets.core.serving.live_models import LiveModels
from mlops_assets.core.serving.metrics import BATCH_BUCKETS, Counter, Gauge, Histogram, render


class ServiceMetrics:
    def __init__(self):
        self.latency = Histogram("mlops_serving_request_seconds", "Time to answer a scored request, by model and "
                                 "route (mixed: a batch served partly by the canary)", ("model", "route"))
        self.requests = Counter("mlops_serving_requests_total", "Prediction requests by model and HTTP status",
                                ("model", "status"))
        self.rows = Counter("mlops_serving_rows_total", "Rows scored and acted on, by model and route",
                            ("model", "route"))
        self.batch_rows = Histogram("mlops_serving_batch_rows", "Rows per model call (micro-batch)", ("model",),
                                    buckets=BATCH_BUCKETS)
        self.batch_requests = Histogram("mlops_serving_batch_requests", "Requests per micro-batch", ("model",),
                                        buckets=BATCH_BUCKETS)
        self.swaps = Counter("mlops_serving_model_swaps_total", "Serving plans swapped in (promotion, canary start "
                             "or step, rollback)", ("model",))
        self.flush_seconds = Histogram("mlops_ledger_flush_seconds", "Time to write one flush of the ledger buffer")
        self.flush_errors = Counter("mlops_ledger_flush_errors_total", "Ledger flushes that failed (retried)")
        self._gauges: list[Gauge] = []

    def attach(self, live: LiveModels, buffer: LedgerBuffer) -> None:
        def versions():
            out = {}
            for name in live.slots:
                status = live.status(name)
                for alias in ("champion", "canary", "shadow", "previous_champion"):
                    if status[alias]:
                        out[(name, alias, status[alias])] = 1
            return out

        self._gauges = [
            Gauge("mlops_serving_model_version", "Model versions serving (1), by model, alias and version",
                  ("model", "alias", "version"), versions),
            Gauge("mlops_serving_canary_share", "The canary's share of entities", ("model",),
                  lambda: {(n,): live.status(n)["canary_share"] for n in live.slots}),
            Gauge("mlops_serving_ready", "1 when the model has a verified champion loaded", ("model",),
                  lambda: {(n,): int(live.slots[n].serving is not None) for n in live.slots}),
            Gauge("mlops_serving_registry_readable", "1 when the last registry read succeeded", (),
                  lambda: {(): int(live.registry_error is None)}),
            Gauge("mlops_serving_registry_errors", "Registry reads that failed since start", (),
                  lambda: {(): live.registry_errors}),
            Gauge("mlops_ledger_buffer_rows", "Ledger rows buffered, not yet written (a crash would lose them)", (),
                  lambda: {(): buffer.stats()["pending_rows"]}),
            Gauge("mlops_ledger_buffer_rows_max", "The largest buffered backlog seen: the measured worst-case crash "
                  "loss", (), lambda: {(): buffer.stats()["max_pending_rows"]}),
            Gauge("mlops_ledger_written_rows", "Ledger rows written since start", (),
                  lambda: {(): buffer.stats()["flushed_rows"]}),
        ]

    def served(self, model: str, route: str, rows: int, seconds: float) -> None:
        self.latency.observe(seconds, model, route)
        self.requests.inc(model, "200")
        self.rows.inc(model, route, by=rows)

    def batch_observer(self, model: str):
        def observe(requests: int, rows: int) -> None:
            self.batch_rows.observe(rows, model)
            self.batch_requests.observe(requests, model)
        return observe

    def swapped(self, model: str, plan) -> None:
        self.swaps.inc(model)

    def ledger_flushed(self, rows: int, seconds: float) -> None:
        self.flush_seconds.observe(seconds)

    def ledger_failed(self, exc: Exception) -> None:
        self.flush_errors.inc()

    def render(self) -> str:
        return render([self.latency, self.requests, self.rows, self.batch_rows, self.batch_requests, self.swaps,
                       self.flush_seconds, self.flush_errors, *self._gauges])


def input_columns(spec: DatasetSpec) -> dict:
    """What a request row must carry, column by column."""
    out = {spec.timestamp: {"type": "timestamp", "format": "ISO 8601 without offset"}}
    if spec.entity_id:
        out[spec.entity_id] = {"type": "entity id"}
    for f in spec.features:
        if f.is_numeric:
            out[f.name] = {"type": "number", "min": f.min, "max": f.max, "nullable": f.nullable}
        else:
            out[f.name] = {"type": "category", "categories": list(f.categories), "nullable": f.nullable}
    for column in spec.batch_columns:
        out.setdefault(column, {"type": "any"})
    return out
