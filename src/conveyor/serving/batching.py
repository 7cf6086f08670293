"""Adaptive micro-batching: concurrent requests for one model version answered by one call.

The endpoints hand every parsed request to ``await batcher.submit(key, columns, rows)`` with
its ``(model, version, verb)`` key. :class:`MicroBatcher` keeps one *lane* per key and column
layout (names, dtypes and trailing shapes, so only requests whose columns concatenate without
a cast share a call):

- a request that finds its lane idle schedules the lane's next batch with ``call_soon``: the
  requests the event loop already has in hand (ready to run in the same loop iteration) join
  it, and nothing waits for a timer: a lone request is answered at once;
- requests that arrive while the lane's batch is predicting queue up; when it finishes, every
  queued request (up to ``max_batch_rows`` rows, whole requests only) forms the next batch.
  The batch size follows the load: 1 when requests come one at a time, about the number of
  concurrent clients under load;
- each request of a batch is first checked on its own (``check``: validation against the
  model's signature), so a bad input fails only its own request; then the columns of the
  others are concatenated, predicted in one call of ``predict`` and the outputs are split
  back by row offsets;
- when a batch of several requests fails in ``predict``, each request is predicted again on
  its own, so an input that makes the model itself fail fails only its own request.

**Where a batch runs.** On a worker thread by default (the event loop keeps parsing requests
meanwhile), or on the event loop itself when the lane's batches have been cheap (a moving
average under ``inline_below_s``, 1 ms by default) and ``inline_ok(key)`` allows it (the
model is loaded: a load never blocks the loop). A cheap model then costs no thread hand-off
at all, while a slow one never holds up the loop. The first batch of a key always runs on a
thread, where its cost is measured.

The lanes live on the event loop (only the loop touches them: no locks); ``check`` and
``predict`` run on a worker thread or on the loop as said. A request cancelled while queued
(its client went away) is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conveyor.modeling.bundle_errors import BundleError

__all__ = [
    "DEFAULT_INLINE_BELOW_S",
    "DEFAULT_MAX_BATCH_ROWS",
    "BatchStats",
    "Check",
    "MicroBatcher",
    "Predict",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_ROWS = 256
"""Most rows predicted in one call (a single bigger request still goes through, alone)."""

DEFAULT_INLINE_BELOW_S = 0.001
"""Batches of a key that cost less than this (moving average) run on the event loop."""

Columns = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]
Outcome = Outputs | BaseException
Predict = Callable[[Hashable, Columns, int], Mapping[str, np.ndarray]]
"""``predict(key, columns, rows)``: named outputs whose first dimension is ``rows``."""
Check = Callable[[Hashable, Columns, int], Columns]
"""``check(key, columns, rows)``: one request's columns made ready to concatenate, or raise."""

_Layout = tuple[tuple[str, np.dtype[Any], tuple[int, ...]], ...]
_LaneKey = tuple[Hashable, _Layout]
_SMOOTHING = 0.2  # weight of the newest batch in a key's moving average cost


@dataclass(slots=True)
class _Pending:
    columns: Columns
    rows: int
    future: asyncio.Future[Outputs]


@dataclass(slots=True)
class _Lane:
    key: Hashable
    queue: deque[_Pending] = field(default_factory=deque)
    busy: bool = False  # a batch is predicting on a worker thread
    scheduled: bool = False  # a flush is queued on the loop


@dataclass(slots=True)
class BatchStats:
    """What the batcher did so far: model calls (``batches``, of which ``inline`` ran on the
    event loop), requests and rows answered, the largest batch (in requests) and requests
    predicted again on their own after their batch failed."""

    batches: int = 0
    inline: int = 0
    requests: int = 0
    rows: int = 0
    largest: int = 0
    retried: int = 0


def _layout(columns: Columns) -> _Layout:
    return tuple((name, a.dtype, a.shape[1:]) for name, a in columns.items())


class MicroBatcher:
    """Batch concurrent :meth:`submit` calls per key and column layout.

    Args:
        predict: Called with the key, the concatenated checked columns and the row count;
            returns named outputs, each with that many rows.
        check: Called for each request of a batch before concatenating (validation): returns
            the columns to concatenate; what it raises fails that request alone. Default: the
            columns as submitted.
        max_batch_rows: Most rows in one call (whole requests only; a request with more rows
            than this is predicted alone).
        threads: Worker threads; lanes of different keys predict in parallel up to this.
        inline_below_s: Run a key's batches on the event loop while their moving average cost
            is below this many seconds (0 never does).
        inline_ok: ``inline_ok(key)`` must also be true to run on the loop (default: always).

    Example:
        >>> batcher = MicroBatcher(lambda key, cols, rows: {"y": cols["x"] * 2})
        >>> await batcher.submit(("m", 1), {"x": np.array([1.0, 2.0])}, 2)
        {'y': array([2., 4.])}
    """

    def __init__(
        self,
        predict: Predict,
        *,
        check: Check | None = None,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        threads: int = 2,
        inline_below_s: float = DEFAULT_INLINE_BELOW_S,
        inline_ok: Callable[[Hashable], bool] | None = None,
    ) -> None:
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, got {max_batch_rows!r}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        if not inline_below_s >= 0:
            raise ValueError(f"inline_below_s must be >= 0, got {inline_below_s!r}")
        self._predict = predict
        self._check = check
        self.max_batch_rows = max_batch_rows
        self.inline_below_s = inline_below_s
        self._inline_ok = inline_ok
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="conveyor-predict")
        self._lanes: dict[_LaneKey, _Lane] = {}
        self._costs: dict[Hashable, float] = {}  # moving average seconds per batch, per key
        self._closed = False
        self.stats = BatchStats()

    async def submit(self, key: Hashable, columns: Columns, rows: int) -> Outputs:
        """Predict ``rows`` rows of ``columns`` for ``key``; this request's outputs.

        Raises:
            ValueError: ``rows`` is less than 1.
            RuntimeError: The batcher was closed.
            BundleError: An output does not have one entry per row.
            Exception: Whatever ``check`` or ``predict`` raised for this request's own rows.
        """
        if rows < 1:
            raise ValueError(f"a request needs at least one row, got {rows}")
        if self._closed:
            raise RuntimeError("the micro-batcher is shut down: no new predictions")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        lane_key = (key, _layout(columns))
        lane = self._lanes.get(lane_key)
        if lane is None:
            lane = self._lanes[lane_key] = _Lane(key)
        lane.queue.append(_Pending(columns, rows, future))
        if not lane.busy and not lane.scheduled:
            lane.scheduled = True
            loop.call_soon(self._flush, lane_key, lane, loop)
        return await future

    def cost(self, key: Hashable) -> float | None:
        """The moving average seconds per batch of ``key`` (None before its first batch)."""
        return self._costs.get(key)

    def close(self) -> None:
        """Refuse new requests, wait for the batches in flight, stop the worker threads."""
        self._closed = True
        self._executor.shutdown(wait=True)

    # -- on the event loop ------------------------------------------------------------------

    def _take(self, lane: _Lane) -> list[_Pending]:
        batch: list[_Pending] = []
        total = 0
        queue = lane.queue
        while queue:
            item = queue[0]
            if item.future.done():  # cancelled while queued
                queue.popleft()
                continue
            if batch and total + item.rows > self.max_batch_rows:
                break
            batch.append(queue.popleft())
            total += item.rows
        return batch

    def _inline(self, key: Hashable) -> bool:
        cost = self._costs.get(key)
        if cost is None or cost >= self.inline_below_s:
            return False
        return self._inline_ok is None or self._inline_ok(key)

    def _flush(self, lane_key: _LaneKey, lane: _Lane, loop: asyncio.AbstractEventLoop) -> None:
        lane.scheduled = False
        batch = self._take(lane)
        if not batch:
            del self._lanes[lane_key]
            return
        if self._inline(lane.key):
            outcomes, seconds = self._run(lane.key, batch)
            self.stats.inline += 1
            self._settle(lane, batch, outcomes, seconds)
            if lane.queue:  # arrived meanwhile: gather with what the loop has in hand
                lane.scheduled = True
                loop.call_soon(self._flush, lane_key, lane, loop)
            else:
                del self._lanes[lane_key]
            return
        lane.busy = True
        try:
            done = self._executor.submit(self._run, lane.key, batch)
        except RuntimeError as exc:  # shut down meanwhile: answer instead of hanging
            self._deliver(batch, [exc] * len(batch))
            lane.busy = False
            self._flush(lane_key, lane, loop)
            return

        def finished(result: Future[tuple[list[Outcome], float]]) -> None:
            loop.call_soon_threadsafe(self._finish, lane_key, lane, batch, result, loop)

        done.add_done_callback(finished)

    def _finish(
        self,
        lane_key: _LaneKey,
        lane: _Lane,
        batch: list[_Pending],
        result: Future[tuple[list[Outcome], float]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        lane.busy = False
        error = result.exception()
        if error is not None:
            self._deliver(batch, [error] * len(batch))
        else:
            outcomes, seconds = result.result()
            self._settle(lane, batch, outcomes, seconds)
        self._flush(lane_key, lane, loop)

    def _settle(
        self, lane: _Lane, batch: list[_Pending], outcomes: list[Outcome], seconds: float
    ) -> None:
        previous = self._costs.get(lane.key)
        self._costs[lane.key] = (
            seconds if previous is None else previous + _SMOOTHING * (seconds - previous)
        )
        self._deliver(batch, outcomes)

    @staticmethod
    def _deliver(batch: list[_Pending], outcomes: list[Outcome]) -> None:
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future.done():
                continue
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)

    # -- on a worker thread or the loop -----------------------------------------------------

    def _run(self, key: Hashable, batch: list[_Pending]) -> tuple[list[Outcome], float]:
        began = time.perf_counter()
        outcomes: list[Outcome | None] = [None] * len(batch)
        ready: list[tuple[int, Columns, int]] = []
        for index, item in enumerate(batch):
            try:
                columns = self._check(key, item.columns, item.rows) if self._check else item.columns
            except Exception as exc:  # this request's input: its own answer, not the batch's
                outcomes[index] = exc
            else:
                ready.append((index, columns, item.rows))
        if ready:
            self._count(ready)
            answers = self._predict_ready(key, ready)
            for (index, _, _), answer in zip(ready, answers, strict=True):
                outcomes[index] = answer
        answered = [outcome for outcome in outcomes if outcome is not None]
        assert len(answered) == len(batch), "every request of a batch gets an outcome"
        return answered, time.perf_counter() - began

    def _count(self, ready: list[tuple[int, Columns, int]]) -> None:
        stats = self.stats  # one writer per lane at a time: the figures are indicative
        stats.batches += 1
        stats.requests += len(ready)
        stats.rows += sum(rows for _, _, rows in ready)
        stats.largest = max(stats.largest, len(ready))

    def _predict_ready(self, key: Hashable, ready: list[tuple[int, Columns, int]]) -> list[Outcome]:
        if len(ready) == 1:
            _, columns, rows = ready[0]
            return [self._one(key, columns, rows)]
        names = list(ready[0][1])
        total = sum(rows for _, _, rows in ready)
        joined = {n: np.concatenate([columns[n] for _, columns, _ in ready]) for n in names}
        try:
            outputs = self._call(key, joined, total)
        except Exception as exc:
            logger.debug(
                "a batch of %d requests failed (%s): answering each alone", len(ready), exc
            )
            self.stats.retried += len(ready)
            return [self._one(key, columns, rows) for _, columns, rows in ready]
        answers: list[Outcome] = []
        start = 0
        for _, _, rows in ready:
            answers.append({name: array[start : start + rows] for name, array in outputs.items()})
            start += rows
        return answers

    def _one(self, key: Hashable, columns: Columns, rows: int) -> Outcome:
        try:
            return self._call(key, columns, rows)
        except Exception as exc:
            return exc

    def _call(self, key: Hashable, columns: Columns, rows: int) -> Outputs:
        outputs = {name: np.asarray(a) for name, a in self._predict(key, columns, rows).items()}
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != rows:
                raise BundleError(
                    f"the model returned output '{name}' with shape {list(array.shape)} for "
                    f"{rows} input rows; outputs need one entry per row"
                )
        return outputs
