"""Online scoring: concurrent requests for one model scored together in one model call (adaptive micro-batching).

A model call costs nearly the same for 1 row as for 100 (a fixed cost per call: the estimator's validation and
per-tree dispatch, and, where a pipeline does not compile, the ColumnTransformer's), so requests that arrive
while a call runs are worth scoring together. Each model has a queue and one batcher task: it takes
every request waiting (up to `max_rows` rows; a request is never split), scores them with one DataFrame and
one call per serving model, and resolves each request's future with its own rows. The call runs on the event
loop itself unless an executor is given: scoring is CPU-bound and holds the GIL for most of its time, so a
worker thread would only make the loop and the thread take turns, and the loop would parse fewer of the
waiting requests into each batch (measured: 2.6 requests per batch at 64 concurrent clients with a thread). When the
queue is empty a request is scored at once (no waiting for company), so a lone client pays one call; under
load the batch grows to what arrived during the previous call. `max_wait_seconds` (default 0) can hold a
non-full batch a little longer when the previous batch was shared, for throughput at a latency cost.

`OnlineScorer` is the scoring itself: the feature module (`engineer`), then `scoring.score_parts` (what
`scoring.score_rows` makes its DataFrame of), the same routing and scoring as `batch_scoring`, with the models the registry names right now (`LiveModels`). Every
ledger row (acted on and shadow) goes to the ledger buffer before the response is built. The model calls run
with at most `model_threads` OpenMP/BLAS threads (threadpoolctl, set around each batch and restored after).
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Executor
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.features.engineering import engineer
from mlops_assets.core.serving.ledger_buffer import LedgerBuffer
from mlops_assets.core.serving.live_models import LiveModels
from mlops_assets.core.serving.request_rows import CheckedRows
from mlops_assets.core.serving.scoring import score_parts


class ModelUnavailable(RuntimeError):
    """The model has no verified champion loaded."""


class OnlineScorer:
    def __init__(self, name: str, spec: DatasetSpec, live: LiveModels, buffer: LedgerBuffer,
                 model_threads: int | None = None):
        self.name, self.spec, self.live, self.buffer = name, spec, live, buffer
        self.columns = list(spec.batch_columns)
        self.model_threads = model_threads
        self._threads = None  # a ThreadpoolController, made at the first call (the models' libraries are loaded)

    def _thread_limit(self):
        if self.model_threads is None:
            return contextlib.nullcontext()
        if self._threads is None:
            from threadpoolctl import ThreadpoolController

            self._threads = ThreadpoolController()
        return self._threads.limit(limits=self.model_threads)  # ~30 us; threadpool_limits() rescans: ~1.4 ms

    def score(self, requests: list[CheckedRows]) -> list[list[dict]]:
        """Each request's rows (checked by RequestRows.check_columns) scored; one list of predictions per request."""
        serving = self.live.serving(self.name)  # one reference for the whole batch: a swap cannot split it
        if serving is None:
            raise ModelUnavailable(f"model {self.name!r} has no verified champion loaded")
        columns = CheckedRows.concat(requests)
        table = engineer(columns, self.spec)  # the same feature module as batch, straight from the checked columns
        plan = serving.plan
        with self._thread_limit():
            parts = score_parts(table, self.spec, serving.champion, serving.canary, serving.shadow,
                                plan.canary_share, plan.canary_salt)
        self.buffer.append(self.name, parts)  # its ledger frame is built at the flush
        acted = [p for p in parts if p.acted_on and len(p.score)]
        order = np.argsort(np.concatenate([p.row for p in acted]), kind="stable")  # request order
        entity = np.concatenate([p.entity for p in acted])[order].tolist()
        score = np.concatenate([p.score for p in acted])[order].tolist()
        decision = np.concatenate([p.decision for p in acted])[order].tolist()
        version = np.repeat([p.model_version for p in acted], [len(p.score) for p in acted])[order].tolist()
        route = np.repeat([p.route for p in acted], [len(p.score) for p in acted])[order].tolist()
        threshold = self.spec.deployment.decision_threshold if self.spec.is_classification else None
        stamps = columns[self.spec.timestamp]
        out, start = [], 0
        for rows_of_request in requests:
            predictions = []
            for i in range(len(rows_of_request)):
                j = start + i
                predictions.append({
                    "row": i, "entity": entity[j], "timestamp": stamps[j].isoformat(),
                    "score": score[j], "decision": decision[j], "threshold": threshold,
                    "model_version": version[j], "route": route[j],
                })
            out.append(predictions)
            start += len(rows_of_request)
        return out


class _Job(NamedTuple):
    rows: list
    future: asyncio.Future


class MicroBatcher:
    """One model's queue and batcher task; `submit(rows)` returns that request's results."""

    def __init__(self, score: Callable[[list[list]], list], executor: Executor | None = None, max_rows: int = 256,
                 max_wait_seconds: float = 0.0, on_batch: Callable[[int, int], None] | None = None):
        self._score, self._executor = score, executor
        self.max_rows, self.max_wait_seconds = max_rows, max_wait_seconds
        self._on_batch = on_batch
        self._queue: list[_Job] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closing = False

    async def submit(self, rows: list) -> list:
        if self._closing:
            raise ModelUnavailable("the service is shutting down")
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run())
        job = _Job(rows, loop.create_future())
        self._queue.append(job)
        self._wakeup.set()
        return await job.future

    def _take(self) -> list[_Job]:
        """Whole requests from the front of the queue, up to max_rows rows (at least one request)."""
        taken, rows = 0, 0
        while taken < len(self._queue) and (taken == 0 or rows + len(self._queue[taken].rows) <= self.max_rows):
            rows += len(self._queue[taken].rows)
            taken += 1
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        shared = False  # whether the last batch held more than one request (a sign of concurrent load)
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # let the loop read and parse the requests already on their sockets before taking the batch
            await asyncio.sleep(self.max_wait_seconds if shared and self.max_wait_seconds > 0 else 0)
            batch = [job for job in self._take() if not job.future.done()]  # a cancelled request is dropped
            if not batch:
                continue
            shared = len(batch) > 1
            if self._on_batch is not None:
                self._on_batch(len(batch), sum(len(j.rows) for j in batch))
            try:
                if self._executor is None:
                    results = self._score([j.rows for j in batch])
                else:
                    results = await loop.run_in_executor(self._executor, self._score, [j.rows for j in batch])
            except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, result in zip(batch, results):
                if not job.future.done():
                    job.future.set_result(result)

    async def close(self) -> None:
        """Score what is queued, then stop."""
        self._closing = True
        if self._task is not None:
            self._wakeup.set()
            await self._task
            self._task = None
