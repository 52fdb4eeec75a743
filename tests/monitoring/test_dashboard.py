"""The dashboard and the alert rules against a real bidder's `/metrics`: every metric and
label value they name is exposed, so neither drifts from the code, and the dashboard shows
what an operator needs."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bidder.modelserver import ModelServerApp
from bidder.scoring import EmbeddedScorer
from bidder.settings import Settings
from tests.conftest import LiveServer, free_port
from tests.monitoring.conftest import ALERT_RULES, DASHBOARD
from tests.server.test_bid_endpoint import banner_request, seed_settings

# What each family type is exposed as (prometheus_client names counters without `_total`).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
# Series Prometheus itself adds to every target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
METRIC = re.compile(r"\b(?:bidder|process)_[a-zA-Z0-9_]+\b|\bup\b")
SELECTOR = re.compile(r"\b((?:bidder|process)_[a-zA-Z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
# Matchers on these come from the dashboard's variables or from the scrape, not the bidder.
TARGET_LABELS = {"job", "instance"}


class Exposition:
    """The metric names a bidder exposes, and the label values of the samples it has."""

    def __init__(self, text: str) -> None:
        self.names: set[str] = set()
        self.labels: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for family in text_string_to_metric_families(text):
            self.names.update(family.name + suffix for suffix in SUFFIXES[family.type])
            for sample in family.samples:
                for label, value in sample.labels.items():
                    self.labels[sample.name][label].add(value)


pytestmark = pytest.mark.usefixtures("aws_credentials")


@pytest.fixture
def exposition(
    seed_model: Path, live_server: Callable[[Settings], LiveServer]
) -> Iterator[Exposition]:
    """A bidder scoring through a SageMaker stand-in, as in production, after a few bids,
    so that the model-call series have samples too."""
    endpoint = ModelServerApp(EmbeddedScorer.from_path(seed_model), max_payload_bytes=65536)
    with LiveServer(endpoint, free_port()) as model_server:
        bidder = live_server(
            seed_settings(
                scorer="sagemaker",
                sagemaker_endpoint_name="seed",
                sagemaker_endpoint_url=model_server.url,
            )
        )
        with httpx.Client(base_url=bidder.url, timeout=5) as client:
            for _ in range(3):
                assert client.post("/openrtb2/bid", json=banner_request()).status_code == 200
            yield Exposition(client.get("/metrics").text)


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every query of the dashboard (panels and variables) and the rules."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    found += [
        (f"variable {variable['name']}", variable["definition"])
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    ]
    rules = yaml.safe_load(ALERT_RULES.read_text())
    found += [
        (f"alert {rule['alert']}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]
    return found


def without_strings(promql: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)


def test_every_metric_queried_is_exposed(exposition: Exposition) -> None:
    for where, promql in queries():
        names = set(METRIC.findall(without_strings(promql)))
        assert names, f"{where}: no metric found in {promql}"
        missing = names - exposition.names - SCRAPE_SERIES
        assert not missing, f"{where} queries {missing}, which the bidder does not expose"


def test_every_label_value_queried_is_exposed(exposition: Exposition) -> None:
    """A label value the bidder never uses (a renamed reason, say) would match nothing."""
    checked = 0
    for where, promql in queries():
        for name, matchers in SELECTOR.findall(promql):
            for label, operator, value in MATCHER.findall(matchers):
                if label in TARGET_LABELS or operator not in {"=", "=~"}:
                    continue
                series = {
                    sample: labels
                    for sample, labels in exposition.labels.items()
                    if sample.startswith(name)
                }
                exposed = {value for labels in series.values() for value in labels[label]}
                wanted = set(value.split("|")) if operator == "=~" else {value}
                assert wanted <= exposed, f"{where}: {name}{{{label}}} has only {exposed}"
                checked += 1
    assert checked, "no label matcher was checked"


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"{panel['title']} queries nothing"
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        layout = panel["gridPos"]
        # Grafana's grid is 24 columns wide.
        assert layout["x"] + layout["w"] <= 24, panel["title"]


@pytest.mark.parametrize(
    "needed",
    [
        "bidder_requests_total",  # request rate by outcome
        "bidder_request_duration_seconds_bucket",  # p50/p90/p99 overall
        "bidder_stage_duration_seconds_bucket",  # and per stage
        "bidder_model_call_duration_seconds_bucket",
        "bidder_model_call_failures_total",
        "bidder_batch_rows_bucket",
        'reason="overload"',  # shed
        "deadline|deadline_skip",  # timeouts
        "bidder_circuit_breaker_state",
    ],
)
def test_dashboard_shows(needed: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs: list[Any] = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert any(needed in expr for expr in exprs), f"no panel shows {needed}"
    if needed == "bidder_request_duration_seconds_bucket":
        quantiles = {
            float(match)
            for expr in exprs
            if needed in expr
            for match in re.findall(r"histogram_quantile\(([\d.]+)", expr)
        }
        assert {0.5, 0.9, 0.99} <= quantiles
