"""EMF sinks: a real TCP listener on loopback standing for the CloudWatch agent, and stdout.

Whatever the agent does (down, back, never reading), `offer` returns at once and every
document is either written or dropped and counted.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, Counter

from bidder.errors import ConfigurationError
from bidder.telemetry.emf import StdoutSink, TcpSink
from bidder.telemetry.emf.sinks import parse_tcp_address
from tests.conftest import free_port
from tests.telemetry.agent import Agent

ROUNDS = 50  # polls of 0.1 s: every wait below is bounded at 5 s


class Outcomes:
    def __init__(self) -> None:
        counter = Counter("documents", "d", ["outcome"], registry=CollectorRegistry())
        self.written = counter.labels("written")
        self.dropped = counter.labels("dropped")

    def counts(self) -> tuple[float, float]:
        return self.written._value.get(), self.dropped._value.get()


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(ROUNDS):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def tcp_sink(
    port: int, outcomes: Outcomes, *, max_queued: int = 10, timeout: float = 1.0
) -> TcpSink:
    return TcpSink(
        "127.0.0.1",
        port,
        timeout=timeout,
        written=outcomes.written,
        dropped=outcomes.dropped,
        max_queued=max_queued,
    )


async def test_documents_reach_the_agent_in_order() -> None:
    agent, outcomes = Agent(free_port()), Outcomes()
    await agent.start()
    sink = tcp_sink(agent.port, outcomes)
    sink.start()
    documents = [b'{"n": %d}' % number for number in range(5)]
    for document in documents:
        sink.offer(document)
    await until(lambda: len(agent.lines) == 5, "five documents")
    await sink.close(grace=1)
    await agent.stop()
    assert agent.lines == documents
    assert outcomes.counts() == (5, 0)


async def test_an_agent_that_is_down_costs_dropped_documents_until_it_is_back() -> None:
    port = free_port()
    agent, outcomes = Agent(port), Outcomes()
    sink = tcp_sink(port, outcomes)
    sink.start()
    sink.offer(b'{"lost": 1}')
    await until(lambda: outcomes.counts() == (0, 1), "the drop while the agent is down")
    await agent.start()
    sink.offer(b'{"kept": 1}')
    await until(lambda: agent.lines == [b'{"kept": 1}'], "delivery once the agent is up")
    # The agent restarts: the sink notices the closed connection and opens a new one.
    await agent.stop()
    agent = Agent(port)
    await agent.start()
    sink.offer(b'{"kept": 2}')
    await until(lambda: agent.lines == [b'{"kept": 2}'], "delivery after the agent restarted")
    await sink.close(grace=1)
    await agent.stop()
    assert outcomes.counts() == (2, 1)


async def test_a_stuck_agent_never_blocks_offer_and_every_document_is_counted() -> None:
    agent, outcomes = Agent(free_port(), reads=False), Outcomes()
    await agent.start()
    sink = tcp_sink(agent.port, outcomes, max_queued=4, timeout=0.2)
    sink.start()
    # Far more than the socket buffers hold, so that writes stall.
    document = b'{"padding": "' + b"x" * (1024 * 1024) + b'"}'
    offered = 40
    for _ in range(offered):
        sink.offer(document)  # returns at once; the queue holds 4, the rest are dropped
    assert outcomes.counts()[1] >= offered - 4 - 1  # one may be off the queue, being written
    await sink.close(grace=0.5)
    await agent.stop()
    written, dropped = outcomes.counts()
    assert written + dropped == offered
    assert dropped > 0


async def test_stdout_sink_writes_one_line_per_document() -> None:
    stream, outcomes = io.BytesIO(), Outcomes()
    sink = StdoutSink(stream, written=outcomes.written, dropped=outcomes.dropped, max_queued=10)
    sink.start()
    sink.offer(b'{"a": 1}')
    sink.offer(b'{"b": 2}')
    await sink.close(grace=1)
    assert stream.getvalue() == b'{"a": 1}\n{"b": 2}\n'
    assert outcomes.counts() == (2, 0)


async def test_a_closed_stdout_counts_drops() -> None:
    stream, outcomes = io.BytesIO(), Outcomes()
    stream.close()
    sink = StdoutSink(stream, written=outcomes.written, dropped=outcomes.dropped, max_queued=10)
    sink.start()
    sink.offer(b"{}")
    await sink.close(grace=1)
    assert outcomes.counts() == (0, 1)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("tcp://127.0.0.1:25888", ("127.0.0.1", 25888)),
        ("tcp://[::1]:25888", ("::1", 25888)),
        ("tcp://cloudwatch-agent:25888", ("cloudwatch-agent", 25888)),
    ],
)
def test_tcp_addresses_are_parsed(spec: str, expected: tuple[str, int]) -> None:
    assert parse_tcp_address(spec) == expected


@pytest.mark.parametrize("spec", ["udp://127.0.0.1:25888", "tcp://127.0.0.1", "tcp://h:70000"])
def test_bad_tcp_addresses_are_refused_with_the_setting_named(spec: str) -> None:
    with pytest.raises(ConfigurationError, match="BIDDER_EMF_SINK"):
        parse_tcp_address(spec)
