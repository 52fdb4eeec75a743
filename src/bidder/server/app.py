"""The ASGI application: the lean bid path in front of the FastAPI control plane."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from bidder.asgi import Receive, Scope, Send
from bidder.server.bid import BID_PATH, BidEndpoint
from bidder.server.control import create_control_app
from bidder.server.reload import with_chosen_model
from bidder.server.state import AppState
from bidder.settings import Settings, load_settings
from bidder.telemetry import Metrics, configure_logging


class BidderApp:
    """Sends `/openrtb2/bid` straight to the bid handler and everything else, lifespan
    included, to FastAPI."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.state = AppState()
        self.metrics = Metrics(registry or CollectorRegistry())
        self.bid = BidEndpoint(settings, self.metrics, self.state)
        self.control: FastAPI = create_control_app(settings, self.metrics, self.state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == BID_PATH:
            await self.bid(scope, receive, send)
        else:
            await self.control(scope, receive, send)


def create_app(settings: Settings | None = None) -> BidderApp:
    """The app for `settings`, or for the environment's settings (uvicorn's factory)."""
    return BidderApp(settings or load_settings())


def create_app_for_worker() -> BidderApp:
    """uvicorn's factory in each worker process: settings from the environment, JSON logs."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return BidderApp(with_chosen_model(settings))
