"""The micro-batcher: coalescing, exact routing, cancellation and partial failure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import CollectorRegistry

from bidder.errors import ScoringError
from bidder.scoring import EmbeddedScorer
from bidder.scoring.base import Scorer, Scores
from bidder.scoring.batcher import DeadlineExceeded, MicroBatcher
from bidder.telemetry import Metrics


class GatedScorer:
    """The seed model behind a gate: calls stay in flight until the test opens it, like a
    remote endpoint's round trip. Rows whose first value is -1 make the call fail."""

    kind = "gated"
    model_version = "test"

    def __init__(self, model: EmbeddedScorer) -> None:
        self.model = model
        self.num_features = model.num_features
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls: list[int] = []

    async def score(self, rows: npt.NDArray[np.float32]) -> Scores:
        self.calls.append(len(rows))
        await self.gate.wait()
        if (rows[:, 0] == -1).any():
            raise ScoringError("poisoned batch", reason="model_error")
        return self.model.predict(rows)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
def model(seed_model: Path) -> EmbeddedScorer:
    return EmbeddedScorer.from_path(seed_model)


def batcher(scorer: Scorer, **options: float) -> MicroBatcher:
    return MicroBatcher(
        scorer,
        max_batch_rows=int(options.get("max_batch_rows", 64)),
        max_wait=options.get("max_wait", 3600.0),
        max_in_flight=int(options.get("max_in_flight", 1)),
        metrics=Metrics(CollectorRegistry()),
    )


def rows_for(index: int, count: int = 1) -> npt.NDArray[np.float32]:
    row = [index % 7, index % 24, 0, index, index % 5, index % 11, 1 + index % 4]
    return np.array([row] * count, dtype=np.float32) + np.arange(count, dtype=np.float32)[:, None]


async def test_an_idle_batcher_does_not_wait_for_company(model: EmbeddedScorer) -> None:
    scorer = GatedScorer(model)
    scores = await asyncio.wait_for(batcher(scorer).score(rows_for(1)), timeout=5)
    np.testing.assert_array_equal(scores, model.predict(rows_for(1)))
    assert scorer.calls == [1]


async def test_concurrent_requests_get_exactly_their_own_scores(model: EmbeddedScorer) -> None:
    scorer = GatedScorer(model)
    subject = batcher(scorer)
    inputs = [rows_for(i, count=1 + i % 3) for i in range(200)]
    results = await asyncio.gather(*(subject.score(rows) for rows in inputs))
    for rows, scores in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(scores, model.predict(rows))
    assert sum(scorer.calls) == sum(len(rows) for rows in inputs)
    assert len(scorer.calls) < 20, "concurrent requests were coalesced"
    assert max(scorer.calls) <= 64


async def test_rows_queue_while_a_batch_is_in_flight(model: EmbeddedScorer) -> None:
    scorer = GatedScorer(model)
    subject = batcher(scorer, max_batch_rows=8)
    scorer.gate.clear()
    first = asyncio.ensure_future(subject.score(rows_for(0)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(subject.score(rows_for(i))) for i in range(1, 20)]
    await asyncio.sleep(0.01)
    assert scorer.calls == [1], "the rest wait for the batch in flight"
    scorer.gate.set()
    await asyncio.gather(first, *waiting)
    assert scorer.calls[1:] == [8, 8, 3]


async def test_a_busy_batcher_waits_at_most_max_wait_below_its_cap(model: EmbeddedScorer) -> None:
    scorer = GatedScorer(model)
    subject = batcher(scorer, max_in_flight=2, max_wait=0.01)
    scorer.gate.clear()
    first = asyncio.ensure_future(subject.score(rows_for(0)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second = asyncio.ensure_future(subject.score(rows_for(1)))
    third = asyncio.ensure_future(subject.score(rows_for(2)))
    await asyncio.sleep(0)
    assert scorer.calls == [1], "busy: the new rows gather instead of going at once"
    await asyncio.sleep(0.1)
    assert scorer.calls == [1, 2], "after max_wait they go together as a second call"
    fourth = asyncio.ensure_future(subject.score(rows_for(3)))
    await asyncio.sleep(0.1)
    assert scorer.calls == [1, 2], "at the cap of two calls, rows wait for one to return"
    scorer.gate.set()
    await asyncio.gather(first, second, third, fourth)
    assert scorer.calls == [1, 2, 1]


async def test_cancelled_callers_are_dropped_before_the_call(model: EmbeddedScorer) -> None:
    scorer = GatedScorer(model)
    subject = batcher(scorer)
    scorer.gate.clear()
    first = asyncio.ensure_future(subject.score(rows_for(0)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    doomed = asyncio.ensure_future(subject.score(rows_for(1, count=5)))
    kept = asyncio.ensure_future(subject.score(rows_for(2)))
    await asyncio.sleep(0)
    doomed.cancel()
    scorer.gate.set()
    await first
    np.testing.assert_array_equal(await kept, model.predict(rows_for(2)))
    assert scorer.calls == [1, 1], "the cancelled caller's five rows were not scored"


async def test_submitted_rows_get_a_future_of_their_scores(model: EmbeddedScorer) -> None:
    # What the bid path's direct answers use: the future itself, with a done callback.
    scorer = GatedScorer(model)
    subject = batcher(scorer)
    scorer.gate.clear()
    first = subject.submit(rows_for(0))
    await asyncio.sleep(0)  # the first call is out; the next rows queue behind it
    doomed = subject.submit(rows_for(1, count=5))
    kept = subject.submit(rows_for(2))
    empty = subject.submit(rows_for(3, count=0))
    assert empty.done()
    assert empty.result() == []
    doomed.cancel()  # gives up its place, as a cancelled `score` does
    scorer.gate.set()
    assert await first == pytest.approx(model.predict(rows_for(0)).tolist())
    assert await kept == pytest.approx(model.predict(rows_for(2)).tolist())
    assert scorer.calls == [1, 1], "the cancelled future's five rows were not scored"


async def test_a_failed_batch_fails_only_its_callers(model: EmbeddedScorer) -> None:
    scorer = GatedScorer(model)
    subject = batcher(scorer, max_batch_rows=2)
    poisoned = rows_for(0)
    poisoned[0, 0] = -1
    inputs = [poisoned, rows_for(1), rows_for(2), rows_for(3)]
    results = await asyncio.gather(*(subject.score(r) for r in inputs), return_exceptions=True)
    assert isinstance(results[0], ScoringError)
    assert isinstance(results[1], ScoringError), "same batch as the poisoned rows"
    np.testing.assert_array_equal(results[2], model.predict(rows_for(2)))
    np.testing.assert_array_equal(results[3], model.predict(rows_for(3)))


async def test_metrics_record_batch_sizes_and_waits(model: EmbeddedScorer) -> None:
    subject = batcher(GatedScorer(model))
    await asyncio.gather(*(subject.score(rows_for(i)) for i in range(10)))
    subject.metrics.flush()
    registry = subject.metrics.registry
    assert registry.get_sample_value("bidder_batch_rows_sum") == 10
    assert registry.get_sample_value("bidder_batch_queue_wait_seconds_count") == 10


async def test_callers_get_deadline_exceeded_at_their_own_deadlines(
    model: EmbeddedScorer,
) -> None:
    scorer = GatedScorer(model)
    subject = batcher(scorer)
    scorer.gate.clear()
    loop = asyncio.get_running_loop()
    start = loop.time()
    late = asyncio.ensure_future(subject.score(rows_for(0), start + 0.4))
    # Arrives later with an earlier deadline, and expires first.
    early = asyncio.ensure_future(subject.score(rows_for(1), start + 0.05))
    patient = asyncio.ensure_future(subject.score(rows_for(2)))
    with pytest.raises(DeadlineExceeded):
        await early
    assert loop.time() - start < 0.4
    assert not late.done()
    with pytest.raises(DeadlineExceeded):
        await late
    assert loop.time() - start >= 0.4
    assert not patient.done(), "a caller without a deadline waits for its call"
    scorer.gate.set()
    np.testing.assert_array_equal(await patient, model.predict(rows_for(2)))


async def test_a_call_whose_callers_all_gave_up_is_cancelled(model: EmbeddedScorer) -> None:
    scorer = GatedScorer(model)
    subject = batcher(scorer)
    scorer.gate.clear()
    deadline = asyncio.get_running_loop().time() + 0.05
    results = await asyncio.gather(
        *(subject.score(rows_for(i), deadline) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, DeadlineExceeded) for result in results)
    assert scorer.calls == [3]
    await asyncio.sleep(0)
    assert not subject._tasks, "the abandoned call was cancelled"


async def test_answered_callers_do_not_expire_and_are_let_go(model: EmbeddedScorer) -> None:
    subject = batcher(GatedScorer(model))
    loop = asyncio.get_running_loop()
    first = await subject.score(rows_for(0), loop.time() + 0.02)
    await subject.score(rows_for(1), loop.time() + 0.03)
    await asyncio.sleep(0.05)
    np.testing.assert_array_equal(first, model.predict(rows_for(0)))
    assert not subject._deadlines._slots, "each slot let its callers go when it fired"


async def test_a_call_abandoned_before_it_started_frees_its_place(model: EmbeddedScorer) -> None:
    scorer = GatedScorer(model)
    subject = batcher(scorer)
    # Already past: the deadline fires in the same turn as the flush that launches the call,
    # so the call is cancelled before its task first runs.
    with pytest.raises(DeadlineExceeded):
        await subject.score(rows_for(0), asyncio.get_running_loop().time() - 1)
    await asyncio.sleep(0)
    assert subject._in_flight == 0
    scores = await asyncio.wait_for(subject.score(rows_for(1)), timeout=5)
    np.testing.assert_array_equal(scores, model.predict(rows_for(1)))


class InlineModel:
    """The seed model scored on the calling thread, as the embedded scorer does, counting
    its calls; rows whose first value is -1 make the call fail."""

    kind = "inline"
    model_version = "test"

    def __init__(self, model: EmbeddedScorer) -> None:
        self.model = model
        self.num_features = model.num_features
        self.calls: list[int] = []

    def predict(self, rows: npt.NDArray[np.float32]) -> Scores:
        self.calls.append(len(rows))
        if (rows[:, 0] == -1).any():
            raise ScoringError("poisoned batch", reason="model_error")
        return self.model.predict(rows)

    async def score(self, rows: npt.NDArray[np.float32]) -> Scores:
        raise AssertionError("an inline scorer is called through predict")

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_an_inline_scorer_is_called_from_the_flush_without_a_task_or_timer(
    model: EmbeddedScorer,
) -> None:
    scorer = InlineModel(model)
    subject = batcher(scorer, max_batch_rows=16)
    deadline = asyncio.get_running_loop().time() + 60
    inputs = [rows_for(i, count=1 + i % 3) for i in range(40)]
    results = await asyncio.gather(*(subject.score(rows, deadline) for rows in inputs))
    for rows, scores in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(scores, model.predict(rows))
    assert sum(scorer.calls) == sum(len(rows) for rows in inputs)
    assert max(scorer.calls) <= 16, "within the cap"
    assert len(scorer.calls) < 10, "coalesced"
    assert not subject._tasks
    assert subject._in_flight == 0
    assert not subject._deadlines._slots, "no caller is held until its deadline"


async def test_an_inline_scorer_keeps_deadlines_and_fails_only_its_batch(
    model: EmbeddedScorer,
) -> None:
    scorer = InlineModel(model)
    # Full at the third caller: the expired one takes no place in the batch.
    subject = batcher(scorer, max_batch_rows=3)
    now = asyncio.get_running_loop().time()
    poisoned = rows_for(0)
    poisoned[0, 0] = -1
    results = await asyncio.gather(
        subject.score(rows_for(9), now - 0.001),  # already past when the flush comes
        subject.score(poisoned, now + 60),
        subject.score(rows_for(1), now + 60),
        subject.score(rows_for(2)),
        return_exceptions=True,
    )
    assert isinstance(results[0], DeadlineExceeded)
    assert isinstance(results[1], ScoringError)
    assert isinstance(results[2], ScoringError), "same batch as the poisoned rows"
    np.testing.assert_array_equal(results[3], model.predict(rows_for(2)))
    assert scorer.calls == [2, 1], "the expired caller's rows were not scored"


async def test_the_embedded_scorer_is_scored_inline(model: EmbeddedScorer) -> None:
    subject = MicroBatcher(
        model,
        max_batch_rows=64,
        max_wait=0.002,
        max_in_flight=1,
        metrics=Metrics(CollectorRegistry()),
    )
    assert subject._predict_inline is not None
    scores = await subject.score(rows_for(3), asyncio.get_running_loop().time() + 60)
    np.testing.assert_array_equal(scores, model.predict(rows_for(3)))


async def test_rows_as_lists_give_the_same_scores_as_floats(model: EmbeddedScorer) -> None:
    subject = batcher(InlineModel(model))
    inputs = [rows_for(i, count=1 + i % 3) for i in range(12)]
    results = await asyncio.gather(*(subject.score(rows.tolist()) for rows in inputs))
    for rows, scores in zip(inputs, results, strict=True):
        assert all(type(score) is float for score in scores)
        assert scores == model.predict(rows).tolist()
    assert await subject.score([]) == [], "no rows, no call"


class MiscountingScorer(InlineModel):
    def predict(self, rows: npt.NDArray[np.float32]) -> Scores:
        return super().predict(rows)[:-1]


async def test_a_model_giving_the_wrong_number_of_scores_fails_its_batch(
    model: EmbeddedScorer,
) -> None:
    subject = batcher(MiscountingScorer(model))
    results = await asyncio.gather(
        *(subject.score(rows_for(i)) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, ScoringError) for result in results)
    assert "2 scores for 3 rows" in str(results[0])
