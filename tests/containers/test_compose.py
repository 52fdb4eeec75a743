"""`docker/compose.yaml`, the local stack, read without a Docker engine: it names files that
exist, its ports agree with the images and with Prometheus, and the bidder's settings load."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from bidder.settings import Settings, load_settings
from tests.conftest import PROJECT_ROOT
from tests.containers.images import DOCKERFILES, read_image

COMPOSE_FILE = PROJECT_ROOT / "docker" / "compose.yaml"
COMPOSE_DIR = COMPOSE_FILE.parent
MONITORING = PROJECT_ROOT / "monitoring"
# What the README's "Local stack" section tells people to open.
PUBLISHED = {
    "bidder": {8000, 9100},
    "model-server": {8080},
    "prometheus": {9090},
    "grafana": {3000},
}


def load_yaml(path: Path) -> Any:
    with path.open() as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = load_yaml(COMPOSE_FILE)
    assert isinstance(compose, dict)
    assert isinstance(compose["services"], dict)
    return compose["services"]


def host_path(volume: str) -> tuple[Path, str]:
    """A bind mount `host:container[:mode]`: the host side resolved from the compose file's
    directory, as Compose resolves it."""
    source, target = volume.split(":")[:2]
    return (COMPOSE_DIR / source).resolve(), target


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """host port → container port, each bound to the host's loopback only."""
    ports = {}
    for mapping in service.get("ports", []):
        address, host, container = str(mapping).split(":")
        assert address == "127.0.0.1", f"{mapping} is published beyond this machine"
        ports[int(host)] = int(container)
    return ports


def test_the_stack_has_its_four_services(services: dict[str, Any]) -> None:
    assert set(services) == set(PUBLISHED)


def test_built_images_use_the_projects_dockerfiles(services: dict[str, Any]) -> None:
    for name, dockerfile in DOCKERFILES.items():
        build = services[name]["build"]
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == PROJECT_ROOT, "the build context is the project root (.dockerignore)"
        assert (context / build["dockerfile"]).resolve() == dockerfile


def test_every_mounted_path_exists(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, _ = host_path(volume)
            assert source.exists(), f"{name} mounts {source}, which does not exist"
            assert volume.endswith(":ro"), f"{name} mounts {volume} writable"


def test_published_ports_are_the_ones_the_services_listen_on(services: dict[str, Any]) -> None:
    bidder_env = {**read_image(DOCKERFILES["bidder"]).env, **services["bidder"]["environment"]}
    listening = {
        "bidder": {int(bidder_env["BIDDER_PORT"]), int(bidder_env["BIDDER_METRICS_PORT"])},
        "model-server": {8080},
        "prometheus": {9090},
        "grafana": {3000},
    }
    for name, ports in PUBLISHED.items():
        mapping = published_ports(services[name])
        assert set(mapping) == ports, name
        assert set(mapping.values()) == listening[name], name
    for name in DOCKERFILES:
        exposed = " ".join(read_image(DOCKERFILES[name]).final.values("EXPOSE")).split()
        assert set(published_ports(services[name]).values()) <= {int(port) for port in exposed}


def test_the_bidders_settings_load_and_point_at_the_model_server(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = {
        **read_image(DOCKERFILES["bidder"]).env,
        **{name: str(value) for name, value in services["bidder"]["environment"].items()},
    }
    for name in os.environ:
        if name.startswith("BIDDER_"):
            monkeypatch.delenv(name)
    fields = set()
    for name, value in environment.items():
        if name.startswith("BIDDER_"):
            monkeypatch.setenv(name, value)
            fields.add(name.removeprefix("BIDDER_").lower())
    # pydantic-settings ignores a variable that names no field, so the names are checked here;
    # a bad value raises, naming its variable.
    assert fields <= set(Settings.model_fields), fields - set(Settings.model_fields)
    settings = load_settings()
    assert settings.scorer == "sagemaker"
    assert settings.sagemaker_endpoint_url == "http://model-server:8080"
    assert "model-server" in services["bidder"]["depends_on"]
    # Static keys for the stand-in, which checks no signature; never real ones.
    assert not environment["AWS_ACCESS_KEY_ID"].startswith(("AKIA", "ASIA"))
    assert "AWS_SESSION_TOKEN" not in environment


def test_prometheus_scrapes_the_bidders_metrics_port_with_the_rules_loaded(
    services: dict[str, Any],
) -> None:
    prometheus = services["prometheus"]
    mounts = dict(host_path(volume) for volume in prometheus["volumes"])
    assert mounts.get(MONITORING / "prometheus") == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = load_yaml(MONITORING / "prometheus" / "prometheus.yml")
    (bidder_job,) = [job for job in config["scrape_configs"] if job["job_name"] == "bidder"]
    targets = [target for group in bidder_job["static_configs"] for target in group["targets"]]
    metrics_port = read_image(DOCKERFILES["bidder"]).env["BIDDER_METRICS_PORT"]
    assert targets == [f"bidder:{metrics_port}"]
    rules = [
        path
        for pattern in config["rule_files"]
        for path in (MONITORING / "prometheus").glob(pattern)
    ]
    assert rules, "the alert rules are loaded"


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard(
    services: dict[str, Any],
) -> None:
    grafana = services["grafana"]
    mounts = dict(host_path(volume) for volume in grafana["volumes"])
    provisioning = MONITORING / "grafana" / "provisioning"
    assert mounts[provisioning] == "/etc/grafana/provisioning"
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(provisioning / "dashboards" / "bidder.yaml")["providers"]
    dashboards = MONITORING / "grafana" / "dashboards"
    assert mounts[dashboards] == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (dashboards / Path(home).name).is_file()
    dashboard = json.loads((dashboards / "bidder.json").read_text())
    used = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    assert used == {datasource["uid"]}, "every panel queries the provisioned datasource"


def test_the_readme_lists_every_published_port(services: dict[str, Any]) -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Local stack", 1)[1].split("\n## ", 1)[0]
    assert "docker compose -f docker/compose.yaml up" in section
    for name in PUBLISHED:
        for port in published_ports(services[name]):
            assert f"http://127.0.0.1:{port}" in section, f"{name}'s port {port}"
