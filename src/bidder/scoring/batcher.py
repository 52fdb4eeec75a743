"""Micro-batching: concurrent bid requests' rows scored in one model call.

A model call has a fixed cost (Python call overhead in-process, a whole HTTP round trip
and SigV4 signature for SageMaker) that dwarfs the cost of one more row, so under load the
bidder scores many requests' rows together. The rules:

- An idle batcher (no call out) flushes on the next turn of the event loop: a request never
  waits for company, yet requests made ready in the same turn join it.
- A busy batcher (calls out, a remote endpoint's round trip) lets rows gather for at most
  `max_wait`, or until `max_batch_rows` are waiting or a call comes back, before it makes
  another concurrent call; never more than `max_in_flight` calls are out, and at that cap
  rows wait for a call to come back.
- Callers hand over their rows as sequences of floats (the vectorizer's lists); a batch's
  rows become one array at once, rather than an array per request and a concatenation,
  and its scores become Python floats at once (what the decisions read), each caller
  getting its own slice of them.
- Each caller gets exactly its own scores back, by position; a caller that gives up
  (cancelled, or past its deadline) is dropped from a batch not yet sent; a failed batch
  fails each of its callers with the same error, and only them.
- A caller's deadline is kept by the batcher, not by a timeout around its await: at the
  deadline the caller gets `DeadlineExceeded` at once, and a call whose callers have all
  given up is cancelled. Deadlines falling in the same millisecond share one timer: a
  timer handle per request (armed and cancelled, about 1.4 µs on uvloop) would cost more
  than the rest of the batcher, and `asyncio.timeout` more still.
- A scorer that computes on the event loop's thread (an `InlineScorer`, the embedded
  model) is called straight from the flush, with no task and no deadline timer: its
  callers wait one turn of the loop at most, and no timer could fire while it computes,
  so a caller whose deadline has passed by the flush gets `DeadlineExceeded` there. This
  saves a task per batch and, per request, a slot in the deadline timers that would hold
  it (and its scores) until its deadline: about 2 µs of CPU and the garbage collector's
  work on objects that would otherwise live a whole budget.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

from bidder.errors import ScoringError
from bidder.scoring.base import Scorer, Scores
from bidder.telemetry.metrics import Metrics

# One request's feature rows: lists of floats from the vectorizer, or a 2-D array.
Rows: TypeAlias = Sequence[Sequence[float]] | npt.NDArray[np.float32]


class DeadlineExceeded(TimeoutError):
    """The caller's deadline passed before its scores came back."""


@runtime_checkable
class InlineScorer(Protocol):
    """A scorer whose scores are computed synchronously, on the calling thread."""

    def predict(self, rows: npt.NDArray[np.float32]) -> Scores: ...


class _Entry:
    __slots__ = ("call", "deadline", "enqueued", "future", "rows")

    def __init__(self, rows: Rows, future: asyncio.Future[list[float]], deadline: float) -> None:
        self.rows = rows
        self.future = future
        self.deadline = deadline
        self.enqueued = time.perf_counter()
        # The model call this entry went out with, once it has: cancelled when every entry
        # in it has given up, since nobody would read its result.
        self.call: _Call | None = None

    def expire(self) -> None:
        if self.future.done():
            return
        self.future.set_exception(DeadlineExceeded())
        if self.call is not None:
            self.call.abandon_if_unwanted()


class _Call:
    __slots__ = ("entries", "task")

    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries
        self.task: asyncio.Task[None] | None = None

    def abandon_if_unwanted(self) -> None:
        if self.task is not None and all(entry.future.done() for entry in self.entries):
            self.task.cancel()


class _Deadlines:
    """Callers' deadlines (in the event loop's clock), grouped into slots of `resolution`
    seconds with one timer per slot: at the end of its slot, every caller in it still
    waiting gets `DeadlineExceeded`.

    The event loop's timers are as coarse (libuv's are whole milliseconds), so a deadline
    is kept as precisely as a timer of its own would keep it, at a timer per slot instead
    of one per request. A slot holds its callers until it fires, answered or not: at most
    about one budget's worth of requests.
    """

    __slots__ = ("_loop", "_slots", "resolution")

    def __init__(self, resolution: float = 0.001) -> None:
        self.resolution = resolution
        self._slots: dict[int, tuple[asyncio.TimerHandle, list[_Entry]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, entry: _Entry, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            self.close()  # another loop's timers would never fire in this one
            self._loop = loop
        slot = math.ceil(entry.deadline / self.resolution)
        held = self._slots.get(slot)
        if held is None:
            timer = loop.call_at(slot * self.resolution, self._expire, slot)
            self._slots[slot] = (timer, [entry])
        else:
            held[1].append(entry)

    def _expire(self, slot: int) -> None:
        _, entries = self._slots.pop(slot)
        for entry in entries:
            entry.expire()

    def close(self) -> None:
        for timer, _ in self._slots.values():
            timer.cancel()
        self._slots.clear()


class MicroBatcher:
    """Coalesces concurrent calls into batches for the `Scorer` it wraps."""

    def __init__(
        self,
        scorer: Scorer,
        *,
        max_batch_rows: int,
        max_wait: float,
        max_in_flight: int,
        metrics: Metrics,
    ) -> None:
        self.scorer = scorer
        self.max_batch_rows = max_batch_rows
        self.max_wait = max_wait
        self.max_in_flight = max_in_flight
        self.metrics = metrics
        self._queue: list[_Entry] = []
        self._queued_rows = 0
        self._in_flight = 0
        self._flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._deadlines = _Deadlines()
        self._predict_inline = scorer.predict if isinstance(scorer, InlineScorer) else None

    @property
    def kind(self) -> str:
        return self.scorer.kind

    @property
    def model_version(self) -> str:
        return self.scorer.model_version

    @property
    def num_features(self) -> int:
        return self.scorer.num_features

    async def start(self) -> None:
        await self.scorer.start()

    async def close(self) -> None:
        self._deadlines.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.scorer.close()

    async def score(self, rows: Rows, deadline: float | None = None) -> list[float]:
        """The rows' scores, or `DeadlineExceeded` at `deadline` (in the event loop's clock,
        `loop.time()`) if they are not back by then."""
        return await self.submit(rows, deadline)

    def submit(self, rows: Rows, deadline: float | None = None) -> asyncio.Future[list[float]]:
        """`score` without the coroutine: the future of the rows' scores. Cancelling it gives
        up the caller's place, as cancelling an awaiting `score` does."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[float]] = loop.create_future()
        if len(rows) == 0:
            future.set_result([])  # nothing to wait for, nor to add to another's batch
            return future
        entry = _Entry(rows, future, math.inf if deadline is None else deadline)
        if deadline is not None and self._predict_inline is None:
            self._deadlines.add(entry, loop)
        self._queue.append(entry)
        self._queued_rows += len(rows)
        if self._queued_rows >= self.max_batch_rows and self._in_flight < self.max_in_flight:
            self._flush()
        elif self._flush_handle is None:
            if self._in_flight == 0:
                self._flush_handle = loop.call_soon(self._flush)
            elif self._in_flight < self.max_in_flight:
                self._flush_handle = loop.call_later(self.max_wait, self._flush)
            # At the cap, the next call to come back flushes.
        return future

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._predict_inline is not None:
            self._score_inline(self._predict_inline)
            return
        while self._queue and self._in_flight < self.max_in_flight:
            batch = self._take_batch()
            if batch:
                self._launch(batch)

    def _take_batch(self) -> list[_Entry]:
        """The queue's first callers still waiting, up to `max_batch_rows` rows; a caller
        whose deadline has passed gets `DeadlineExceeded` instead of a place."""
        batch: list[_Entry] = []
        queue = self._queue
        now = asyncio.get_running_loop().time()
        rows = 0
        taken = 0
        for entry in queue:
            count = len(entry.rows)
            if batch and rows + count > self.max_batch_rows:
                break
            taken += 1
            self._queued_rows -= count
            if entry.future.done():  # its caller gave up before the batch went out
                continue
            if entry.deadline <= now:  # its timer, if any, has not fired yet
                entry.future.set_exception(DeadlineExceeded())
                continue
            batch.append(entry)
            rows += count
        del queue[:taken]
        return batch

    def _score_inline(self, predict: Callable[[npt.NDArray[np.float32]], Scores]) -> None:
        """Every queued caller's scores, batch by batch, computed here and now."""
        while self._queue:
            batch = self._take_batch()
            if not batch:
                continue
            try:
                rows = self._rows_of(batch)
                scores = _floats(predict(rows), len(rows))
            except Exception as exc:
                _fail(batch, exc)
            else:
                _deliver(batch, scores)

    def _rows_of(self, batch: list[_Entry]) -> npt.NDArray[np.float32]:
        """The batch's rows in one array, its wait and size recorded."""
        now = time.perf_counter()
        observe_wait = self.metrics.batch_wait.observe
        if len(batch) == 1:
            observe_wait(now - batch[0].enqueued)
            combined = batch[0].rows
        else:
            combined = []
            for entry in batch:
                observe_wait(now - entry.enqueued)
                combined.extend(entry.rows)
        rows = np.array(combined, dtype=np.float32)  # raises on rows of unequal widths
        self.metrics.batch_size.observe(len(rows))
        return rows

    def _launch(self, batch: list[_Entry]) -> None:
        self._in_flight += 1
        call = _Call(batch)
        for entry in batch:
            entry.call = call
        task = asyncio.get_running_loop().create_task(self._run(batch))
        call.task = task
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._call_done, batch))

    async def _run(self, batch: list[_Entry]) -> None:
        try:
            rows = self._rows_of(batch)
            scores = _floats(await self.scorer.score(rows), len(rows))
        except Exception as exc:
            _fail(batch, exc)
        else:
            _deliver(batch, scores)

    def _call_done(self, batch: list[_Entry], task: asyncio.Task[None]) -> None:
        """The call's bookkeeping, in a done callback rather than in `_run`: a call
        abandoned before its task first ran never enters `_run`'s body, and would otherwise
        hold its place under `max_in_flight` for good."""
        self._tasks.discard(task)
        self._in_flight -= 1
        # Cancelled (abandoned at its callers' deadlines, or shut down): a caller still
        # waiting is cancelled with it. Unlinked from their call, the entries and the call
        # are freed by reference counting, not left to the garbage collector as a cycle.
        for entry in batch:
            entry.call = None
            if not entry.future.done():
                entry.future.cancel()
        if self._queue:
            self._flush()


def _floats(scores: Scores, rows: int) -> list[float]:
    """The scores of a batch as Python floats, checked to be one per row.

    One conversion per batch: a slice of a list costs a third of a slice of an array,
    and the decisions would turn each caller's array into floats anyway.
    """
    values: list[float] = np.asarray(scores, dtype=np.float64).reshape(-1).tolist()
    if len(values) != rows:
        raise ScoringError(f"the model gave {len(values)} scores for {rows} rows")
    return values


def _deliver(batch: list[_Entry], scores: list[float]) -> None:
    """Each caller still waiting gets its own rows' scores, by position."""
    offset = 0
    for entry in batch:
        count = len(entry.rows)
        if not entry.future.done():
            entry.future.set_result(scores[offset : offset + count])
        offset += count


def _fail(batch: list[_Entry], error: Exception) -> None:
    for entry in batch:
        if not entry.future.done():
            entry.future.set_exception(error)
