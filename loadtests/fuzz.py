"""Fuzz: hostile bodies and hostile connections against a real `bidder serve` on loopback.

    python -m loadtests.fuzz [--bodies 100000] [--seed 1] [--connections 8]
                             [--hostile-connections 16] [--out result.json]

`bidder serve` (one worker, default settings but one: the event loop's lag sheds nothing,
so that each hostile input gets its own answer rather than an overload no-bid whenever the
fuzzer keeps the loop busy; shedding is the overload scenario's) gets `--bodies` requests.
Most are bodies made by `loadtests.fuzz_bodies` (mutated corpus and synthetic requests,
gzip bombs), sent well framed on `--connections` keep-alive connections, some with a wrong
content type, encoding or OpenRTB version. One in `HOSTILE_EVERY` is instead a hostile
connection of its own: a body longer or shorter than declared, a chunked body that never
ends, a slow drip (a byte per 100 ms), oversized, endless or too many headers, no length
at all, bytes that are not HTTP. Checked, and reported with the status counts per kind:

- every answer is one of `ACCEPTED` (never a 5xx), no keep-alive connection breaks, and
  every hostile connection is answered and closed by the server;
- the process never dies, and still answers `/healthz` at the end;
- memory stays bounded: the server's RSS, sampled every half second, grows by at most
  `MAX_RSS_GROWTH_MIB` from before the run to its end.

Exits 1 when any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http.client
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import orjson

from loadtests.fuzz_bodies import Body, BodyGenerator, load_seeds
from loadtests.harness import BIDDER, HOST, free_port, started, write_report
from loadtests.memory import MIB, RssSampler, rss_bytes

# 200 bid, 204 no-bid, 400 invalid (or not HTTP), 408 not read in time, 411 no length,
# 413 over a size limit, 415 wrong content type or encoding, 431 headers over the limit.
ACCEPTED: Final = frozenset({200, 204, 400, 408, 411, 413, 415, 431})
HOSTILE_EVERY: Final = 50
MAX_RSS_GROWTH_MIB: Final = 64.0
# Far beyond any answer's time, the read timeout's included: reaching it is a failure.
ANSWER_TIMEOUT: Final = 15.0
DRIP_INTERVAL: Final = 0.1
MAX_EXAMPLES: Final = 20

Exchange = Callable[[asyncio.StreamWriter], Awaitable[None]]


def frame(body: bytes, rng: random.Random, *, gzipped: bool) -> bytes:
    """A POST of `body`, mostly with the right headers, sometimes with wrong ones."""
    roll = rng.random()
    content_type = b"application/json"
    if roll < 0.02:
        content_type = rng.choice([b"text/plain", b"application/xml", b"", b"application/json5"])
    elif roll < 0.04:
        content_type = b"application/json; charset=utf-8"
    headers = [b"POST /openrtb2/bid HTTP/1.1", b"host: " + HOST.encode()]
    if roll < 0.99:
        headers.append(b"content-type: " + content_type)
    encoding = b"gzip" if gzipped else None
    if 0.05 <= roll < 0.06:
        encoding = rng.choice([b"br", b"deflate", b"gzip, gzip", b"identity"])
    if encoding is not None:
        headers.append(b"content-encoding: " + encoding)
    if 0.06 <= roll < 0.09:
        version = rng.choice([b"2.5", b"2.6", b"2.3", b"3.0", b"x", b""])
        headers.append(b"x-openrtb-version: " + version)
    headers.append(b"content-length: %d" % len(body))
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool] | None:
    """The next response's status and whether the server closes after it; None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    status_line, *lines = head.rstrip(b"\r\n").split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return int(status_line.split()[1]), headers.get(b"connection") == b"close"


class Tally:
    """What every case got, by kind, and examples of whatever should not have happened."""

    def __init__(self) -> None:
        self.by_kind: dict[str, Counter[str]] = {}
        self.statuses: Counter[str] = Counter()
        self.cases = 0
        self.unexpected: Counter[str] = Counter()
        self.examples: list[dict[str, Any]] = []

    def record(self, kind: str, outcome: str, *, expected: bool) -> None:
        self.by_kind.setdefault(kind, Counter())[outcome] += 1
        self.statuses[outcome] += 1
        if not expected:
            self.unexpected[outcome] += 1
            if len(self.examples) < MAX_EXAMPLES:
                self.examples.append({"kind": kind, "outcome": outcome})


class Fuzzer:
    def __init__(self, port: int, bodies: int, seed: int) -> None:
        self.port = port
        self.rng = random.Random(seed)
        self.generator = BodyGenerator(self.rng, *load_seeds(seed))
        self.hostile_cases = bodies // HOSTILE_EVERY
        self.body_cases = bodies - self.hostile_cases
        self.tally = Tally()
        self._bodies_left = self.body_cases
        self._hostile = iter(range(self.hostile_cases))

    async def run(self, connections: int, hostile_connections: int) -> None:
        await asyncio.gather(
            *(self._send_bodies() for _ in range(connections)),
            *(self._open_hostile_connections() for _ in range(hostile_connections)),
        )

    # --- well-framed bodies on keep-alive connections ---

    async def _send_bodies(self) -> None:
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while self._bodies_left > 0:
            self._bodies_left -= 1
            self.tally.cases += 1
            body = self.generator.next()
            if connection is None:
                connection = await asyncio.open_connection(HOST, self.port)
            reader, writer = connection
            try:
                answer = await asyncio.wait_for(self._send(reader, writer, body), ANSWER_TIMEOUT)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                self.tally.record(body.mutation, type(exc).__name__, expected=False)
                writer.close()
                connection = None
                continue
            if answer is None:
                self.tally.record(body.mutation, "closed without an answer", expected=False)
            else:
                self.tally.record(body.mutation, str(answer[0]), expected=answer[0] in ACCEPTED)
            if answer is None or answer[1]:
                writer.close()
                connection = None
        if connection is not None:
            connection[1].close()

    async def _send(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: Body
    ) -> tuple[int, bool] | None:
        writer.write(frame(body.data, self.rng, gzipped=body.gzipped))
        await writer.drain()
        return await read_response(reader)

    # --- hostile connections, one case each ---

    async def _open_hostile_connections(self) -> None:
        exchanges = self._exchanges()
        for index in self._hostile:
            self.tally.cases += 1
            kind, exchange = exchanges[index % len(exchanges)]
            statuses, closed = await self._hostile_exchange(exchange)
            outcome = ",".join(map(str, statuses)) or "no answer"
            if not closed:
                outcome += " (left open)"
            expected = closed and bool(statuses) and set(statuses) <= ACCEPTED
            self.tally.record(kind, outcome, expected=expected)

    async def _hostile_exchange(self, exchange: Exchange) -> tuple[list[int], bool]:
        """The statuses the server answered, and whether it closed the connection."""
        reader, writer = await asyncio.open_connection(HOST, self.port)
        sending = asyncio.create_task(_until_refused(exchange(writer)))
        statuses: list[int] = []
        closed = True
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                while (answer := await read_response(reader)) is not None:
                    statuses.append(answer[0])
        except TimeoutError:
            closed = False
        except asyncio.IncompleteReadError:
            statuses.append(0)  # an answer cut short: never accepted
        except ConnectionError:
            pass  # a reset closes the connection as well
        finally:
            sending.cancel()
            writer.close()
        return statuses, closed

    def _exchanges(self) -> list[tuple[str, Exchange]]:
        def valid() -> bytes:
            documents = self.generator.documents
            return orjson.dumps(documents[self.rng.randrange(len(documents))])

        def head(body: bytes, *extra: bytes, length: int | None = None) -> bytes:
            lines = [
                b"POST /openrtb2/bid HTTP/1.1",
                b"host: " + HOST.encode(),
                b"content-type: application/json",
                *extra,
            ]
            if length is not None:
                lines.append(b"content-length: %d" % length)
            return b"\r\n".join(lines) + b"\r\n\r\n"

        async def send(writer: asyncio.StreamWriter, data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        async def longer_than_declared(writer: asyncio.StreamWriter) -> None:
            body = valid()
            await send(writer, head(body, length=len(body) // 2) + body)

        async def shorter_than_declared(writer: asyncio.StreamWriter) -> None:
            body = valid()
            await send(writer, head(body, length=len(body) + 100) + body)

        async def chunked_without_end(writer: asyncio.StreamWriter) -> None:
            body = valid()
            chunk = b"%x\r\n%s\r\n" % (len(body), body)
            await send(writer, head(body, b"transfer-encoding: chunked") + chunk)

        async def slow_drip(writer: asyncio.StreamWriter) -> None:
            body = valid()
            for byte in head(body, length=len(body)) + body:
                await send(writer, bytes([byte]))
                await asyncio.sleep(DRIP_INTERVAL)

        async def oversize_headers(writer: asyncio.StreamWriter) -> None:
            body = valid()
            padding = b"x-padding: " + b"a" * 32 * 1024
            await send(writer, head(body, padding, length=len(body)) + body)

        async def many_headers(writer: asyncio.StreamWriter) -> None:
            body = valid()
            many = [b"x-h%d: %d" % (index, index) for index in range(3000)]
            await send(writer, head(body, *many, length=len(body)) + body)

        async def endless_header(writer: asyncio.StreamWriter) -> None:
            await send(writer, b"POST /openrtb2/bid HTTP/1.1\r\nx-endless: ")
            for _ in range(256):
                await send(writer, b"a" * 4096)

        async def no_length(writer: asyncio.StreamWriter) -> None:
            await send(writer, head(b"", b"connection: close"))

        async def not_http(writer: asyncio.StreamWriter) -> None:
            await send(writer, self.rng.randbytes(self.rng.randrange(1, 512)) + b"\r\n\r\n")

        async def bad_length(writer: asyncio.StreamWriter) -> None:
            body = valid()
            length = self.rng.choice([b"abc", b"-1", b"1e3", b"99999999999999999999999"])
            await send(writer, head(body, b"content-length: " + length) + body)

        return [
            ("longer_than_declared", longer_than_declared),
            ("shorter_than_declared", shorter_than_declared),
            ("chunked_without_end", chunked_without_end),
            ("slow_drip", slow_drip),
            ("oversize_headers", oversize_headers),
            ("many_headers", many_headers),
            ("endless_header", endless_header),
            ("no_length", no_length),
            ("not_http", not_http),
            ("bad_content_length", bad_length),
        ]


async def _until_refused(sending: Awaitable[None]) -> None:
    """Send until done or until the server has closed the connection (its answer is read)."""
    with contextlib.suppress(ConnectionError):
        await sending


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


async def _fuzz_sampled(fuzzer: Fuzzer, pid: int, args: argparse.Namespace) -> RssSampler:
    sampler = RssSampler(pid, interval=0.5)
    sampling = asyncio.create_task(sampler.run())
    try:
        await fuzzer.run(args.connections, args.hostile_connections)
    finally:
        sampler.stop()
        await sampling
    return sampler


FUZZED_BIDDER = dataclasses.replace(
    BIDDER, env={**BIDDER.env, "BIDDER_ADMISSION_MAX_LOOP_LAG_MS": "10000"}
)


def fuzz(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    with started("bidder", FUZZED_BIDDER, port, pin=False) as process:
        fuzzer = Fuzzer(port, args.bodies, args.seed)
        rss_before = rss_bytes(process.pid)
        began = time.monotonic()
        sampler = asyncio.run(_fuzz_sampled(fuzzer, process.pid, args))
        duration = time.monotonic() - began
        alive = process.poll() is None
        healthy = alive and _healthy(port)
        rss_after = rss_bytes(process.pid) if alive else 0
    tally = fuzzer.tally
    growth = (rss_after - rss_before) / MIB
    checks = {
        "every_answer_accepted": not tally.unexpected,
        "process_alive": alive and healthy,
        "memory_bounded": alive and growth <= MAX_RSS_GROWTH_MIB,
    }
    return {
        "bodies": tally.cases,
        "hostile_connections": fuzzer.hostile_cases,
        "duration_s": round(duration, 1),
        "accepted_statuses": sorted(ACCEPTED),
        "statuses": dict(tally.statuses.most_common()),
        "by_kind": {
            kind: dict(counts.most_common()) for kind, counts in sorted(tally.by_kind.items())
        },
        "unexpected": dict(tally.unexpected),
        "unexpected_examples": tally.examples,
        "rss_before_mib": round(rss_before / MIB, 1),
        "rss_after_mib": round(rss_after / MIB, 1),
        "rss_max_mib": round(max((rss for _, rss in sampler.samples), default=0) / MIB, 1),
        "rss_growth_mib": round(growth, 1),
        "max_rss_growth_mib": MAX_RSS_GROWTH_MIB,
        "checks": checks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bodies", type=int, default=100_000, help="requests to send in all")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections")
    parser.add_argument(
        "--hostile-connections", type=int, default=16, help="hostile connections open at once"
    )
    parser.add_argument("--out", type=Path, default=None, help="the JSON report's path")
    args = parser.parse_args(argv)
    if args.bodies < HOSTILE_EVERY:
        parser.error(f"--bodies must be at least {HOSTILE_EVERY}")
    report = fuzz(args)
    path = write_report(report, args.out, "fuzz")
    print(
        f"{report['bodies']} bodies in {report['duration_s']} s; statuses {report['statuses']}; "
        f"RSS {report['rss_before_mib']} -> {report['rss_after_mib']} MiB "
        f"(max {report['rss_max_mib']}); checks {report['checks']}; report {path}"
    )
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
