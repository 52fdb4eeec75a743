"""Serving: the ASGI app, its bid path and control plane, and what they share."""

from bidder.server.app import BidderApp, create_app
from bidder.server.bid import BID_PATH, BidEndpoint
from bidder.server.runtime import Runtime
from bidder.server.state import AppState

__all__ = ["BID_PATH", "AppState", "BidEndpoint", "BidderApp", "Runtime", "create_app"]
