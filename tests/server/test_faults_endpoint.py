"""Model-endpoint faults the chain tests leave out: server errors, malformed answers, a name
that does not resolve, and the endpoint restarting in the middle of a load. Bid requests
get no-bids within their budget, never a 5xx, and bidding resumes once the endpoint heals."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from bidder.settings import Settings
from tests.conftest import LiveServer
from tests.faults import FaultServer
from tests.server.test_bid_endpoint import banner_request, metric
from tests.server.test_sagemaker_chain import sagemaker_settings

# The (unresolvable by definition, RFC 6761) name of an endpoint that does not exist.
UNRESOLVABLE_URL = "http://nonexistent.invalid:8080"
LOAD_CLIENTS = 4


pytestmark = pytest.mark.usefixtures("aws_credentials")


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        ("internal_failure", "internal_failure"),
        ("validation_error", "validation_error"),
        ("wrong_count", "bad_response"),
    ],
)
@pytest.mark.parametrize("client", ["aiohttp", "aiobotocore"])
def test_error_answers_give_counted_no_bids(
    live_server: Callable[[Settings], LiveServer],
    endpoint: FaultServer,
    mode: str,
    kind: str,
    client: str,
) -> None:
    server = live_server(
        sagemaker_settings(endpoint, breaker_failure_threshold=1000, sagemaker_client=client)
    )
    endpoint.mode = mode
    with httpx.Client(base_url=server.url, timeout=5) as http:
        for _ in range(3):
            assert http.post("/openrtb2/bid", json=banner_request()).status_code == 204
        failures = metric(
            http, f'bidder_model_call_failures_total{{kind="{kind}",scorer="sagemaker"}}'
        )
        no_bids = metric(http, 'bidder_no_bids_total{reason="model_error"}')
    assert (failures, no_bids) == (3, 3)


def test_an_endpoint_name_that_does_not_resolve_keeps_the_bidder_up_and_not_ready(
    live_server: Callable[[Settings], LiveServer], endpoint: FaultServer
) -> None:
    endpoint.stop()
    server = live_server(sagemaker_settings(endpoint, sagemaker_endpoint_url=UNRESOLVABLE_URL))
    with httpx.Client(base_url=server.url, timeout=5) as http:
        assert http.get("/readyz").status_code == 503
        for _ in range(3):
            assert http.post("/openrtb2/bid", json=banner_request()).status_code == 204
        # The warm-up is retried every probe interval, each try failing on the name.
        deadline = time.monotonic() + 5
        failures = 0.0
        sample = 'bidder_model_call_failures_total{kind="dns_failure",scorer="sagemaker"}'
        while failures < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            failures = _counter(http, sample)
        assert failures >= 2
        assert metric(http, 'bidder_no_bids_total{reason="not_ready"}') == 3
        assert http.get("/healthz").status_code == 200


@dataclass
class LoadRecord:
    """What each bid request of a load got: (sent, answered, status), times in monotonic
    seconds."""

    answers: list[tuple[float, float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def statuses(self, start: float, end: float) -> list[int]:
        """The answers to requests sent at `start` or later and answered before `end`."""
        return [
            status for sent, answered, status in self.answers if start <= sent and answered < end
        ]


def _counter(http: httpx.Client, sample: str) -> float:
    """A counter's value; 0 while nothing has counted it (labelled ones appear on first use)."""
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _load(url: str, stop: threading.Event, record: LoadRecord) -> None:
    with httpx.Client(base_url=url, timeout=5) as http:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status = http.post("/openrtb2/bid", json=banner_request()).status_code
                answered = time.monotonic()
            except httpx.HTTPError as exc:
                with record.lock:
                    record.errors.append(repr(exc))
                continue
            with record.lock:
                record.answers.append((sent, answered, status))


def test_an_endpoint_restarted_mid_load_costs_no_bids_then_bidding_resumes(
    live_server: Callable[[Settings], LiveServer], endpoint: FaultServer
) -> None:
    probe_interval = 0.2
    server = live_server(
        sagemaker_settings(endpoint, breaker_probe_interval_ms=int(probe_interval * 1000))
    )
    record = LoadRecord()
    stop = threading.Event()
    with ThreadPoolExecutor(LOAD_CLIENTS) as pool:
        loads = [pool.submit(_load, server.url, stop, record) for _ in range(LOAD_CLIENTS)]
        try:
            time.sleep(1.0)
            endpoint.stop()  # every connection to it is dropped, as when its process dies
            stopped = time.monotonic()
            time.sleep(1.0)
            # Taken before the start: a request in flight while it is under way may be scored.
            restarted = time.monotonic()
            endpoint.start()  # the same port, new connections needed
            time.sleep(1.5)
        finally:
            stop.set()
        for load in loads:
            load.result()
    ended = time.monotonic()
    assert record.errors == []
    statuses = {status for _, _, status in record.answers}
    assert statuses <= {200, 204}, "only bids and no-bids, never a 5xx"
    assert 200 in record.statuses(0, stopped), "bidding before the restart"
    during = record.statuses(stopped, restarted)
    assert during, "requests were answered while the endpoint was down"
    assert set(during) == {204}
    resumed = [sent for sent, _, status in record.answers if sent >= restarted and status == 200]
    assert resumed, "bidding resumed after the restart"
    # The breaker probes every interval: the first bid comes within a few of them.
    assert resumed[0] - restarted < probe_interval + 1.0
    assert record.statuses(resumed[0], ended).count(200) > 0
    with httpx.Client(base_url=server.url, timeout=5) as http:
        failures = sum(
            _counter(http, f'bidder_model_call_failures_total{{kind="{kind}",scorer="sagemaker"}}')
            for kind in ("connection_refused", "connection_reset")
        )
        short_circuited = _counter(http, 'bidder_no_bids_total{reason="circuit_open"}')
    # While the endpoint was down, the open breaker answered most requests without a call.
    assert failures >= 1
    assert short_circuited > failures
