"""Request budgets from tmax, and skipping a model call the budget cannot cover."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from bidder.server.deadline import DeadlinePolicy, ModelTimeEstimate
from bidder.settings import Settings
from tests.conftest import LiveServer
from tests.server.test_bid_endpoint import banner_request, seed_settings

POLICY = DeadlinePolicy(network_allowance=0.02, ceiling=0.1, default=0.08)


@pytest.mark.parametrize(
    ("tmax", "budget"),
    [(None, 0.08), (120, 0.1), (1000, 0.1), (70, 0.05), (20, 0.0), (5, 0.0), (0, 0.0)],
)
def test_budget_is_tmax_less_allowance_capped(tmax: int | None, budget: float) -> None:
    assert POLICY.budget(tmax) == pytest.approx(budget)


def test_model_time_estimate_follows_recent_calls_above_its_floor() -> None:
    estimate = ModelTimeEstimate(floor=0.001, smoothing=0.5)
    assert estimate.expected == 0.001
    for _ in range(20):
        estimate.observe(0.01)
    assert estimate.expected == pytest.approx(0.01, rel=1e-3)


@pytest.mark.parametrize("tmax", [0, 10, 20])
def test_no_budget_left_skips_the_model(
    live_server: Callable[[Settings], LiveServer], tmax: int
) -> None:
    server = live_server(seed_settings())
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/openrtb2/bid", json=banner_request(tmax=tmax)).status_code == 204
        assert client.post("/openrtb2/bid", json=banner_request(tmax=500)).status_code == 200
        text = client.get("/metrics").text
    assert 'bidder_no_bids_total{reason="deadline_skip"} 1.0' in text
    assert 'bidder_stage_duration_seconds_count{stage="score"} 1.0' in text
