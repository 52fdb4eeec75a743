"""The bid endpoint end to end, through a real uvicorn server on a loopback port."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import gzip
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from bidder.server.bid import Decided, Scoring
from bidder.settings import Settings
from tests.conftest import SEED_FEATURE_SPEC, SEED_MODEL, LiveServer
from tests.schemas import validator

BID = "/openrtb2/bid"
JSON_HEADERS = {"content-type": "application/json"}


def seed_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model_path": str(SEED_MODEL),
        "feature_spec_path": str(SEED_FEATURE_SPEC),
        # The seed model's scores are ~0.001; these make it bid around $1 CPM.
        "bid_threshold": 0.0001,
        "price_slope": 1000.0,
        "max_body_bytes": 16384,
        "max_decompressed_bytes": 32768,
        "max_imps": 5,
    }
    values.update(overrides)
    return Settings(**values)


def banner_request(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "id": "req-1",
        "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.1}],
        "site": {"domain": "news.example", "publisher": {"id": "pub-1"}},
        "device": {"devicetype": 2, "os": "android", "geo": {"country": "USA", "region": "3"}},
        "tmax": 120,
        "cur": ["USD"],
        "ext": {"prebid": {"deep": [{"nested": [1, 2, {"x": None}]}]}},
    }
    request.update(overrides)
    return request


@pytest.fixture
def client(live_server: Callable[[Settings], LiveServer]) -> Iterator[httpx.Client]:
    server = live_server(seed_settings())
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


def post(client: httpx.Client, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(BID, content=content, headers={**JSON_HEADERS, **headers})


def metric(client: httpx.Client, sample: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not exported")


def test_bid_response_is_valid_openrtb(client: httpx.Client) -> None:
    response = post(client, banner_request(), **{"x-openrtb-version": "2.5"})
    assert response.status_code == 200
    assert response.headers["x-openrtb-version"] == "2.5"
    body = response.json()
    validator("bid-response", "2.5").validate(body)
    validator("bid-response", "2.6").validate(body)
    assert body["id"] == "req-1"
    assert body["cur"] == "USD"
    [bid] = body["seatbid"][0]["bid"]
    assert bid["impid"] == "1"
    assert (bid["w"], bid["h"]) == (300, 250)
    assert 0.1 <= bid["price"] <= 20.0
    assert "${AUCTION_PRICE}" in bid["adm"]
    assert metric(client, 'bidder_requests_total{outcome="bid"}') == 1


def test_no_creative_fits_gives_204(client: httpx.Client) -> None:
    request = banner_request(imp=[{"id": "1", "banner": {"w": 123, "h": 45}}])
    response = post(client, request)
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["x-openrtb-version"] == "2.6"
    assert metric(client, 'bidder_no_bids_total{reason="no_creative"}') == 1


def test_no_bids_answer_in_the_version_asked_and_every_count_adds_up(
    client: httpx.Client,
) -> None:
    """No-bid answers are built once per version; the counts are batched: neither may
    mix up requests."""
    two_imps = banner_request(
        imp=[
            {"id": "1", "banner": {"w": 123, "h": 45}},
            {"id": "2", "banner": {"w": 300, "h": 250}, "bidfloor": 25.0},
        ]
    )
    asked = {"2.5": "2.5", "2.6": "2.6", "2.4": "2.5"}
    for sent, answered in asked.items():
        response = post(client, two_imps, **{"x-openrtb-version": sent})
        assert response.status_code == 204
        assert response.content == b""
        assert response.headers["x-openrtb-version"] == answered
    assert post(client, banner_request()).status_code == 200
    assert metric(client, 'bidder_requests_total{outcome="no_bid"}') == 3
    assert metric(client, 'bidder_requests_total{outcome="bid"}') == 1
    assert metric(client, 'bidder_no_bids_total{reason="no_creative"}') == 3
    assert metric(client, 'bidder_impressions_total{decision="no_creative"}') == 3
    assert metric(client, 'bidder_impressions_total{decision="below_floor"}') == 3
    assert metric(client, 'bidder_impressions_total{decision="bid"}') == 1
    assert metric(client, "bidder_model_score_count") == 7
    assert metric(client, "bidder_bid_price_count") == 1
    assert metric(client, "bidder_request_duration_seconds_count") == 4
    assert metric(client, 'bidder_stage_duration_seconds_count{stage="decide"}') == 4


def test_blocked_advertiser_and_floor_give_204(client: httpx.Client) -> None:
    assert post(client, banner_request(badv=["advertiser.example"])).status_code == 204
    floor = banner_request(imp=[{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 25.0}])
    assert post(client, floor).status_code == 204
    assert metric(client, 'bidder_no_bids_total{reason="below_floor"}') == 1


def test_gzip_body_is_accepted(client: httpx.Client) -> None:
    body = gzip.compress(orjson.dumps(banner_request()))
    response = post(client, body, **{"content-encoding": "gzip"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body: invalid JSON"),
        (b"\xff\xfe{}", "body: invalid JSON"),
        (b"[1, 2]", "request: expected an object, got an array"),
        (b"null", "request: expected an object, got null"),
        (b'{"imp": []}', "id: required field missing"),
        (b'{"id": "1", "imp": []}', "imp: must contain at least one impression"),
        (
            b'{"id": "1", "imp": [{"id": "1", "banner": {}, "bidfloor": "1"}]}',
            "imp[0].bidfloor: expected a number",
        ),
        (
            b'{"id": "1", "imp": [{"id": "1", "banner": {}, "bidfloor": -1}]}',
            "imp[0].bidfloor: expected a number >= 0",
        ),
        (b'{"id": "1", "imp": [{"id": "1"}]}', "imp[0]: must offer at least one of banner"),
        (
            b'{"id": "1", "imp": [{"id": "1", "banner": {}}, {"id": "1", "banner": {}}]}',
            "imp[1].id: duplicate impression id",
        ),
        (b'{"id": "1", "imp": [{"id": "1", "banner": {"w": 1e400}}]}', "imp[0].banner.w"),
        (b'{"id": "1", "imp": [{"id": "1", "banner": {"w": 99999999999999999999}}]}', "banner.w"),
        (b'{"id": "1", "tmax": -5, "imp": [{"id": "1", "banner": {}}]}', "tmax: expected"),
        (b'{"id": "1", "imp": [{"id": "1", "video": {}}]}', "imp[0].video.mimes: required"),
        (b'{"id": "1", "imp": [{"id": "1", "native": {}}]}', "imp[0].native.request: required"),
        (
            b'{"id": "1", "imp": [{"id": "1", "banner": {}}], "site": {}, "app": {}}',
            "app: at most one of site, app and dooh",
        ),
        (b'{"id": "1", "ext": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (
            b'{"id": "1", "imp": ['
            + b",".join(b'{"id": "%d", "banner": {}}' % i for i in range(6))
            + b"]}",
            "imp: too many impressions (6, limit 5)",
        ),
    ],
)
def test_invalid_requests_get_400_naming_the_problem(
    client: httpx.Client, body: bytes, message: str
) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_unsupported_version_header_is_refused(client: httpx.Client) -> None:
    response = post(client, banner_request(), **{"x-openrtb-version": "3.0"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("x-openrtb-version:")
    older = post(client, banner_request(), **{"x-openrtb-version": "2.3"})
    assert older.headers["x-openrtb-version"] == "2.5"


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "text/plain"}, {"content-type": "application/xml; charset=utf-8"}, {}],
)
def test_wrong_or_missing_content_type_gets_415(
    client: httpx.Client, headers: dict[str, str]
) -> None:
    response = client.post(BID, content=orjson.dumps(banner_request()), headers=headers)
    assert response.status_code == 415
    assert response.json()["error"].startswith("content-type:")


def test_content_type_with_charset_is_accepted(client: httpx.Client) -> None:
    response = post(client, banner_request(), **{"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200


def test_unsupported_content_encoding_gets_415(client: httpx.Client) -> None:
    response = post(client, orjson.dumps(banner_request()), **{"content-encoding": "br"})
    assert response.status_code == 415
    assert "content-encoding" in response.json()["error"]


def test_body_over_limit_gets_413(client: httpx.Client) -> None:
    big = banner_request(ext={"padding": "x" * 20000})
    response = post(client, big)
    assert response.status_code == 413
    assert "16384" in response.json()["error"]
    assert metric(client, 'bidder_rejected_requests_total{status="413"}') == 1


def test_streamed_body_over_limit_gets_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"id": "1", "ext": "'
        for _ in range(20):
            yield b"x" * 1000

    response = client.post(BID, content=chunks(), headers=JSON_HEADERS)
    assert response.status_code == 413


def test_gzip_bomb_gets_413(client: httpx.Client) -> None:
    bomb = gzip.compress(b'{"id": "' + b"a" * 1_000_000 + b'"}')
    assert len(bomb) < 16384
    response = post(client, bomb, **{"content-encoding": "gzip"})
    assert response.status_code == 413
    assert "decompressed" in response.json()["error"]


@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(b'{"id": "1"}')[:-12]])
def test_bad_gzip_gets_400(client: httpx.Client, body: bytes) -> None:
    response = post(client, body, **{"content-encoding": "gzip"})
    assert response.status_code == 400
    assert "gzip" in response.json()["error"]


def test_get_on_bid_path_gets_405(client: httpx.Client) -> None:
    response = client.get(BID)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_control_plane(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["feature_spec"] == "ipinyou-seed@1"
    post(client, banner_request())
    text = client.get("/metrics").text
    assert 'bidder_stage_duration_seconds_bucket{le="0.0001",stage="parse"}' in text
    assert "bidder_request_duration_seconds_count 1.0" in text
    assert "bidder_model_score_count 1.0" in text
    assert 'bidder_model_info{feature_spec="ipinyou-seed@1",scorer="embedded"' in text


@pytest.mark.parametrize(
    ("part", "method"), [("policy", "decide"), ("vectorizer", "rows")], ids=["after", "before"]
)
def test_an_internal_failure_is_a_no_bid_never_a_5xx(
    live_server: Callable[[Settings], LiveServer],
    monkeypatch: pytest.MonkeyPatch,
    part: str,
    method: str,
) -> None:
    # A bug after the model (in the decision) or before it (in the features).
    server = live_server(seed_settings())
    runtime = server.app.state.runtime
    assert runtime is not None

    def broken(*_: object) -> None:
        raise RuntimeError(f"a bug in {part}.{method}")

    monkeypatch.setattr(getattr(runtime, part), method, broken)
    with httpx.Client(base_url=server.url) as client:
        response = post(client, banner_request())
        assert response.status_code == 204
        assert response.headers["x-openrtb-version"] == "2.6"
        assert metric(client, 'bidder_requests_total{outcome="error"}') == 1
        assert metric(client, 'bidder_no_bids_total{reason="internal_error"}') == 1


def test_a_model_call_cancelled_under_a_request_is_answered_with_a_no_bid(
    live_server: Callable[[Settings], LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a shutdown past its grace period cancels what is left: the request is answered.
    server = live_server(seed_settings())
    runtime = server.app.state.runtime
    assert runtime is not None

    def cancelled(*_: object) -> asyncio.Future[list[float]]:
        future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        future.get_loop().call_soon(future.cancel)
        return future

    monkeypatch.setattr(runtime.scorer, "submit", cancelled)
    with httpx.Client(base_url=server.url) as client:
        response = post(client, banner_request())
        assert response.status_code == 204
        assert metric(client, 'bidder_no_bids_total{reason="model_error"}') == 1


def test_a_reload_while_the_scores_are_out_leaves_the_decision_to_the_old_runtime(
    live_server: Callable[[Settings], LiveServer],
) -> None:
    server = live_server(seed_settings())
    endpoint, state = server.app.bid, server.app.state
    old = state.runtime
    assert old is not None

    class Refusing:
        def decide(self, *_: object) -> None:
            raise AssertionError("the new runtime's policy decided on the old one's scores")

    async def reload_between_begin_and_conclude() -> Decided:
        started = time.perf_counter()
        step = endpoint.begin(orjson.dumps(banner_request()), False, b"2.6", time.time(), started)
        assert isinstance(step, Scoring)
        state.runtime = dataclasses.replace(old, policy=Refusing())  # type: ignore[arg-type]
        try:
            await step.future
            return endpoint.conclude(step)
        finally:
            state.runtime = old

    verdict, answer, _ = asyncio.run(reload_between_begin_and_conclude())
    assert verdict[0] == 200
    assert orjson.loads(answer)["id"] == "req-1"


def test_what_start_up_built_is_frozen_out_of_the_collectors_reach(
    live_server: Callable[[Settings], LiveServer],
) -> None:
    gc.unfreeze()
    live_server(seed_settings())
    assert gc.get_freeze_count() > 0
