"""The Prometheus config and alert rules pass promtool, and every alert is unit-tested both
firing and staying quiet, with a runbook section to link to."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.conftest import ALERT_RULES, ALERT_TESTS, PROMETHEUS_CONFIG, RUNBOOK


def run_promtool(promtool: Path, *args: str) -> None:
    result = subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def alerts() -> list[dict[str, Any]]:
    rules = yaml.safe_load(ALERT_RULES.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces → -."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_prometheus_config_is_valid(promtool: Path) -> None:
    # Also checks the rule files the config loads.
    run_promtool(promtool, "check", "config", str(PROMETHEUS_CONFIG))


def test_alert_rules_are_valid(promtool: Path) -> None:
    run_promtool(promtool, "check", "rules", str(ALERT_RULES))


def test_alert_rules_pass_their_unit_tests(promtool: Path) -> None:
    run_promtool(promtool, "test", "rules", str(ALERT_TESTS))


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for rule in alerts():
        name = rule["alert"]
        expectations = [case["exp_alerts"] for case in cases if case["alertname"] == name]
        assert any(expectations), f"{name}: no test where it fires"
        assert any(not expected for expected in expectations), f"{name}: no test where it is quiet"


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_says_what_and_links_its_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule.get("for"), "an alert waits out a blip before it fires"
    annotations = rule["annotations"]
    assert annotations["summary"]
    assert annotations["description"]
    path, _, anchor = annotations["runbook"].partition("#")
    assert anchor == rule["alert"].lower()
    runbook = RUNBOOK.parents[1] / path
    assert runbook == RUNBOOK, annotations["runbook"]
    assert anchor in github_anchors(runbook.read_text()), f"no section {rule['alert']} in {path}"
