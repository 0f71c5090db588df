"""The online service's write path to the prediction ledger: buffered, flushed in order, off the response path.

A scored micro-batch hands its ledger rows to `append` (a lock and a list append); a flusher thread writes
what has accumulated every `flush_seconds` as one atomic part file per model and day
(`PredictionLedger.append_online`). So:

- order: flushes run one at a time, and part names grow with each flush (a nanosecond clock, the process id and
  a counter), so a day's parts sort in the order they were flushed; rows keep their order within a part;
- durability: a part is fsynced and renamed into place before the flusher takes the next; a flush that fails
  (disk full) puts its rows back at the front and is retried on the next tick, so nothing is dropped;
- a clean shutdown (`close`) flushes everything still buffered;
- a crash loses only the rows not yet flushed: those appended in the last `flush_seconds` plus the flush in
  progress. The buffer is bounded: past `max_rows` unflushed rows `append` refuses (LedgerBackpressure, the
  service answers 503), so no prediction is served that could not be recorded. `stats()` reports the largest
  backlog seen, which is the measured worst case a crash could have lost.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

import pandas as pd

from mlops_assets.core.serving.ledger import PredictionLedger
from mlops_assets.core.serving.scoring import LedgerPart, ledger_frame


class LedgerBackpressure(RuntimeError):
    """The buffer holds `max_rows` unflushed rows: the ledger is not keeping up (or cannot be written)."""


class LedgerBuffer:
    def __init__(self, ledger_for: Callable[[str], PredictionLedger], flush_seconds: float = 0.2,
                 max_rows: int = 200_000, on_flush: Callable[[int, float], None] | None = None,
                 on_error: Callable[[Exception], None] | None = None):
        self._ledger_for = ledger_for
        self.flush_seconds, self.max_rows = flush_seconds, max_rows
        self._on_flush, self._on_error = on_flush, on_error
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time: parts are written in order
        self._pending: list[tuple[str, pd.DataFrame]] = []
        self._pending_rows = 0
        self._max_pending_rows = 0
        self._flushed_rows = self._parts = self._errors = 0
        self._counter = 0
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ writes
    def append(self, model: str, rows: pd.DataFrame | list[LedgerPart]) -> None:
        """Queue a model's ledger rows (a frame, or scored parts: their frame is built at the flush, one for all
        the parts flushed together, off the response path) for the next flush; refuses when the backlog is full."""
        size = len(rows) if isinstance(rows, pd.DataFrame) else sum(len(p.score) for p in rows)
        if size == 0:
            return
        with self._lock:
            if self._pending_rows + size > self.max_rows:
                raise LedgerBackpressure(f"{self._pending_rows} prediction rows wait to be written to the ledger "
                                         f"(limit {self.max_rows}): refusing to serve what could not be recorded")
            self._pending.append((model, rows))
            self._pending_rows += size
            self._max_pending_rows = max(self._max_pending_rows, self._pending_rows)

    def flush(self) -> int:
        """Write everything buffered now, in order; returns the rows written. On a failure the rows not written
        go back to the front of the buffer and the error is raised."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            start, written = time.perf_counter(), 0
            by_model: dict[str, list] = {}
            for model, rows in batch:
                by_model.setdefault(model, []).append(rows)
            done: set[str] = set()
            try:
                for model, entries in by_model.items():
                    rows = _frame(entries)
                    self._ledger_for(model).append_online(rows, self._next_part())
                    done.add(model)
                    written += len(rows)
            except Exception as exc:
                with self._lock:  # keep what was not written, ahead of anything appended meanwhile
                    self._pending = [(m, r) for m, r in batch if m not in done] + self._pending
                    self._pending_rows -= written
                    self._errors += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                raise
            with self._lock:
                self._pending_rows -= written
                self._flushed_rows += written
                self._parts += len(by_model)
            if self._on_flush is not None:
                self._on_flush(written, time.perf_counter() - start)
            return written

    def _next_part(self) -> str:
        self._counter += 1
        return f"{time.time_ns():020d}-{os.getpid()}-{self._counter:08d}"

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ledger-flusher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - retried on the next tick; counted and reported
                if self._on_error is not None:
                    self._on_error(exc)

    def close(self) -> None:
        """Stop the flusher and write what is left (a clean shutdown loses nothing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    def stats(self) -> dict:
        with self._lock:
            return {"pending_rows": self._pending_rows, "max_pending_rows": self._max_pending_rows,
                    "flushed_rows": self._flushed_rows, "parts": self._parts, "flush_errors": self._errors,
                    "last_error": self._last_error, "flush_seconds": self.flush_seconds, "max_rows": self.max_rows}


def _frame(entries: list) -> pd.DataFrame:
    """One ledger frame of a model's buffered entries, in order (scored parts become rows here)."""
    if all(not isinstance(e, pd.DataFrame) for e in entries):
        return ledger_frame([part for parts in entries for part in parts], with_row=False)
    frames = [e if isinstance(e, pd.DataFrame) else ledger_frame(e, with_row=False) for e in entries]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
