"""The bid path's own CPU cost per request, in process: no HTTP server, no load generator.

    python -m loadtests.hotpath [--requests 20000] [--concurrency 64] [--repeats 5]
                                [--profile 25]

`BidderApp` is called directly, as uvicorn would call it, with scopes, `receive` and
`send` prepared beforehand from the benchmark's synthetic bid requests, by `--concurrency`
tasks on uvloop. What is reported is process time (`time.process_time`) per request, the
median of the repeats: the bidder's own work, with uvicorn's HTTP handling left out, and
far steadier than a throughput figure on a machine shared with other work. `--profile N`
also runs the requests once under cProfile and prints the N most expensive functions by
own time.

The ceiling app (`loadtests/baselines/ceiling.py`: `orjson.loads` and a fixed answer) is
driven the same way first: what the bidder costs beyond it is its own work, the driver's
and the event loop's share being the same in both.

Over HTTP the two are not served alike: the ceiling app pays for uvicorn's ASGI round per
request, which the bidder's protocol skips for plainly framed bid requests
(`bidder.server.direct`), so how the bidder compares with the ceiling server is for
`loadtests.bench` to say; this measures the bid path's own work, to compare code.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvloop

from bidder.asgi import Message, Receive, Scope, Send
from bidder.server.app import BidderApp
from bidder.server.runtime import Runtime
from bidder.settings import Settings
from loadtests.baselines import ceiling
from loadtests.harness import bid_requests

WARM_UP_REQUESTS = 2000

App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class PreparedRequest:
    """One bid request as uvicorn hands it to the app: its scope and its one body message."""

    scope: dict[str, Any]
    body: dict[str, Any]


def prepare(count: int) -> list[PreparedRequest]:
    prepared = []
    for request in bid_requests(count):
        headers = [(name.encode(), value.encode()) for name, value in request.headers.items()]
        headers.append((b"content-length", str(len(request.body)).encode()))
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": request.method,
            "path": request.path,
            "raw_path": request.path.encode(),
            "query_string": b"",
            "headers": headers,
        }
        prepared.append(
            PreparedRequest(
                scope, {"type": "http.request", "body": request.body, "more_body": False}
            )
        )
    return prepared


class Driver:
    """Sends prepared requests through the app from concurrent tasks, counting statuses."""

    def __init__(self, app: App, requests: list[PreparedRequest]) -> None:
        self.app = app
        self.requests = requests
        self.statuses: Counter[int] = Counter()
        self._next = 0

    async def run(self, total: int, concurrency: int) -> None:
        """`total` requests, cycling through the prepared ones, `concurrency` at a time."""
        per_task, extra = divmod(total, concurrency)
        await asyncio.gather(
            *(self._worker(per_task + (index < extra)) for index in range(concurrency))
        )

    async def _worker(self, count: int) -> None:
        app, requests, statuses = self.app, self.requests, self.statuses
        for _ in range(count):
            request = requests[self._next % len(requests)]
            self._next += 1
            body = request.body

            async def receive(body: Message = body) -> Message:
                return body

            async def send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    statuses[message["status"]] += 1

            await app(request.scope, receive, send)


async def build_app(settings: Settings) -> BidderApp:
    """The app with its runtime started and warmed up, as its lifespan would leave it."""
    app = BidderApp(settings)
    runtime = await Runtime.start(settings, app.metrics)
    await runtime.warm_up()
    app.state.runtime = runtime
    return app


async def measure(
    driver: Driver, total: int, concurrency: int, repeats: int, between: Callable[[], None]
) -> list[float]:
    """Microseconds of process time per request, one figure per repeat."""
    await driver.run(WARM_UP_REQUESTS, concurrency)
    costs = []
    for _ in range(repeats):
        driver.statuses.clear()
        started = time.process_time()
        await driver.run(total, concurrency)
        between()
        costs.append((time.process_time() - started) / total * 1e6)
    return costs


def _summary(name: str, costs: list[float], driver: Driver) -> str:
    runs = " / ".join(f"{cost:.1f}" for cost in costs)
    statuses = dict(sorted(driver.statuses.items()))
    return f"{name:8s} {statistics.median(costs):5.1f} us per request ({runs}); {statuses}"


async def profile(driver: Driver, total: int, concurrency: int, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    await driver.run(total, concurrency)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def no_bid_reasons(app: BidderApp) -> dict[str, int]:
    """The no-bid reasons counted so far: a run of `deadline_skip` measured nothing."""
    app.metrics.flush()
    return {
        sample.labels["reason"]: int(sample.value)
        for metric in app.metrics.registry.collect()
        if metric.name == "bidder_no_bids"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.value
    }


async def _compare(args: argparse.Namespace) -> None:
    """Everything on one event loop, as a server runs: the batcher's timers belong to it."""
    requests = prepare(args.distinct)
    run = (args.requests, args.concurrency, args.repeats)
    reference = Driver(ceiling.app, requests)
    reference_costs = await measure(reference, *run, between=lambda: None)
    app = await build_app(Settings(log_level="warning"))
    driver = Driver(app, requests)
    # After each run, the metrics are folded in as the background flush would, within the
    # measured time: the batched metrics move work from the requests to the flush.
    costs = await measure(driver, *run, between=app.metrics.flush)
    print(
        f"CPU time, median of {args.repeats} runs of {args.requests} requests, "
        f"{args.concurrency} at a time:"
    )
    print(_summary("ceiling", reference_costs, reference))
    print(_summary("bidder", costs, driver))
    own = statistics.median(costs) - statistics.median(reference_costs)
    print(f"bidder's own work beyond the ceiling's: {own:.1f} us per request")
    print(f"no-bid reasons over all runs: {no_bid_reasons(app)}")
    if args.profile:
        print(await profile(driver, args.requests, args.concurrency, args.profile))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.hotpath",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=20_000, help="requests per repeat")
    parser.add_argument("--distinct", type=int, default=2000, help="distinct bid requests")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent requests")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print top N")
    uvloop.run(_compare(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
