"""The decision diff: a replay's answers against the decisions recorded for the same requests.

Each answer is classified on the wire, as an exchange sees it: 200 is `bid`, 204 `no_bid`,
4xx `invalid`, anything else `error`. A recorded `error` was answered with a 204 too, so it
compares as `no_bid`. Per impression of the recorded decision, the answer's bid for that
impression id (if any) is compared with the recorded one: the same (both no-bid, or both a
bid at the same price), a bid that became a no-bid, a no-bid that became a bid, or a bid at
another price (the price delta, replayed minus recorded, in CPM). A request is the same
when its outcome and every impression are.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from bidder.traffic.recordings import RecordedDecision, RecordedImp

# Prices differing by less than this (CPM) are the same price: the bidder rounds to 1e-4.
PRICE_TOLERANCE = 1e-6
DELTA_PERCENTILES = (("p1", 1.0), ("p10", 10.0), ("p50", 50.0), ("p90", 90.0), ("p99", 99.0))
IMP_CHANGES = ("bid_to_no_bid", "no_bid_to_bid", "price_changed")


def answered_outcome(status: int) -> str:
    if status == 200:
        return "bid"
    if status == 204:
        return "no_bid"
    if 400 <= status < 500:
        return "invalid"
    return "error"


def wire_outcome(decision: RecordedDecision) -> str:
    """The outcome as the exchange saw it: an internal error was answered as a no-bid."""
    return "no_bid" if decision.outcome == "error" else decision.outcome


def bid_prices(body: bytes) -> dict[str, float]:
    """Impression id to price of every bid in a bid response; ValueError if it is not one."""
    response = orjson.loads(body)
    prices: dict[str, float] = {}
    for seatbid in response["seatbid"]:
        for bid in seatbid["bid"]:
            price = float(bid["price"])
            impid = str(bid["impid"])
            prices[impid] = max(price, prices.get(impid, -math.inf))
    return prices


class DecisionDiff:
    """Counts how the answers to replayed requests differ from the recorded decisions.

    `observe` is the load generator's answer callback: it gets each answer with the
    position of its request in `requests`.
    """

    def __init__(
        self,
        ids: Sequence[str | None],
        decisions: Sequence[RecordedDecision | None],
        *,
        max_examples: int = 5,
    ) -> None:
        self.ids = ids
        self.decisions = decisions
        self.max_examples = max_examples
        self.compared = 0
        self.same = 0
        self.unrecorded = 0
        self.unparsable = 0
        self.recorded_bids = 0
        self.outcomes: Counter[str] = Counter()
        self.imps_compared = 0
        self.imps_same = 0
        self.imps_recorded_bid = 0
        self.imps_replayed_bid = 0
        self.imp_changes: Counter[str] = Counter()
        self.price_deltas: list[float] = []
        self.examples: dict[str, list[dict[str, Any]]] = {}

    def observe(self, position: int, status: int, body: bytes) -> None:
        decision = self.decisions[position]
        if decision is None:
            self.unrecorded += 1
            return
        outcome = answered_outcome(status)
        prices: dict[str, float] = {}
        if outcome == "bid":
            try:
                prices = bid_prices(body)
            except (ValueError, KeyError, TypeError):
                self.unparsable += 1
                return
        self.compared += 1
        recorded = wire_outcome(decision)
        self.recorded_bids += recorded == "bid"
        self.outcomes[f"{recorded}->{outcome}"] += 1
        same = recorded == outcome
        if not same:
            self._example("outcome_changed", position, None, recorded, outcome)
        for imp in decision.imps:
            same = self._compare_imp(position, imp, prices.get(imp.id)) and same
        self.same += same

    def _compare_imp(self, position: int, imp: RecordedImp, price: float | None) -> bool:
        self.imps_compared += 1
        self.imps_recorded_bid += imp.bid
        self.imps_replayed_bid += price is not None
        if imp.bid and price is not None and imp.price is not None:
            delta = price - imp.price
            self.price_deltas.append(delta)
            change = "price_changed" if abs(delta) > PRICE_TOLERANCE else None
        elif imp.bid and price is None:
            change = "bid_to_no_bid"
        elif not imp.bid and price is not None:
            change = "no_bid_to_bid"
        else:
            change = None
        if change is None:
            self.imps_same += 1
            return True
        self.imp_changes[change] += 1
        replayed = _side(price is not None, price)
        self._example(change, position, imp.id, _side(imp.bid, imp.price), replayed)
        return False

    def _example(
        self, change: str, position: int, imp_id: str | None, recorded: Any, replayed: Any
    ) -> None:
        kept = self.examples.setdefault(change, [])
        if len(kept) < self.max_examples:
            kept.append(
                {
                    "id": self.ids[position],
                    "imp": imp_id,
                    "recorded": recorded,
                    "replayed": replayed,
                }
            )

    def to_dict(self) -> dict[str, Any]:
        changed_prices = [d for d in self.price_deltas if abs(d) > PRICE_TOLERANCE]
        return {
            "compared": self.compared,
            "same": self.same,
            "changed": self.compared - self.same,
            "unrecorded": self.unrecorded,
            "unparsable": self.unparsable,
            "bid_rate": {
                "recorded": _ratio(self.recorded_bids, self.compared),
                "replayed": _ratio(self.outcomes_total("bid"), self.compared),
            },
            "outcomes": dict(sorted(self.outcomes.items())),
            "imps": {
                "compared": self.imps_compared,
                "same": self.imps_same,
                **{change: self.imp_changes[change] for change in IMP_CHANGES},
                "bid_rate": {
                    "recorded": _ratio(self.imps_recorded_bid, self.imps_compared),
                    "replayed": _ratio(self.imps_replayed_bid, self.imps_compared),
                },
            },
            "price_delta": {
                "compared": len(self.price_deltas),
                "changed": len(changed_prices),
                "increased": sum(d > PRICE_TOLERANCE for d in changed_prices),
                "decreased": sum(d < -PRICE_TOLERANCE for d in changed_prices),
                **_distribution(self.price_deltas),
            },
            "examples": self.examples,
        }

    def outcomes_total(self, replayed: str) -> int:
        return sum(n for key, n in self.outcomes.items() if key.endswith(f"->{replayed}"))


def _side(bid: bool, price: float | None) -> dict[str, Any]:
    return {"bid": bid, "price": price}


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _distribution(values: list[float]) -> dict[str, float | None]:
    """Mean, min, nearest-rank percentiles and max of `values` (None when empty)."""
    names = ("mean", "min", *(name for name, _ in DELTA_PERCENTILES), "max")
    if not values:
        return dict.fromkeys(names)
    ordered = sorted(values)
    summary: dict[str, float | None] = {
        "mean": round(math.fsum(ordered) / len(ordered), 6),
        "min": round(ordered[0], 6),
    }
    for name, percent in DELTA_PERCENTILES:
        rank = max(1, math.ceil(percent / 100 * len(ordered)))
        summary[name] = round(ordered[rank - 1], 6)
    summary["max"] = round(ordered[-1], 6)
    return summary
