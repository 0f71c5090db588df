"""The online service's settings (`mlops serve` options), importable without the service's dependencies."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    poll_seconds: float = 0.5  # how often the registry is read (a promotion takes effect within this)
    # Rows per model call. A call costs ~4 ms of fixed overhead and ~5 us a row, so 100-row requests gain from
    # sharing one (--quick bench, 100-row requests at concurrency 16: 125 req/s, p99 173 ms at 256; 292 req/s,
    # p99 82 ms at 1,024; 286 req/s, p99 180 ms at 4,096). At least max_request_rows, so any request can share.
    max_batch_rows: int = 1024
    # OpenMP/BLAS threads of a model call (None: the libraries' default, one per core). One by default: a
    # 1-100-row call gains nothing from a second thread, and on a busy machine the default threads wait on
    # each other (measured: 54 ms for one row against 3.9 ms on one thread at load 4 on 2 cores).
    model_threads: int | None = 1
    max_wait_seconds: float = 0.0  # extra wait for a shared micro-batch to fill (0: none)
    max_body_bytes: int = 1 << 20  # larger bodies are refused (413)
    max_request_rows: int = 1000  # rows per request (413 beyond)
    # How often buffered ledger rows are written: each flush writes one part file per model and day, ~15 ms of a
    # core (DuckDB's COPY, the frame, fsync), much of it holding the GIL the request path needs. Measured at 100-row
    # requests, concurrency 1, quiet machine: p50 15-19 ms flushing every 0.2 s against 11-12 ms every 5 s. A crash
    # loses at most this interval's predictions plus the flush in progress (bounded by ledger_max_rows).
    ledger_flush_seconds: float = 1.0
    ledger_max_rows: int = 200_000  # unflushed ledger rows before requests are refused (503)
