"""promtool, which `make promtool` provides: on the PATH or in the project's `.tools/bin`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

MONITORING = PROJECT_ROOT / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus" / "prometheus.yml"
ALERT_RULES = MONITORING / "prometheus" / "rules" / "bidder-alerts.yml"
ALERT_TESTS = MONITORING / "prometheus" / "tests" / "bidder-alerts.test.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "bidder.json"
RUNBOOK = MONITORING / "README.md"


@pytest.fixture(scope="session")
def promtool() -> Path:
    """A missing promtool fails the tests rather than skipping them: `make test` installs it
    first, so its absence means the checks of the rules would silently not run."""
    found = shutil.which("promtool") or shutil.which(
        "promtool", path=str(PROJECT_ROOT / ".tools" / "bin")
    )
    assert found, "promtool is neither on the PATH nor in .tools/bin: run `make promtool`"
    return Path(found)
