"""Settings: environment over config file over defaults, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from bidder.errors import ConfigurationError
from bidder.settings import DEFAULT_MODEL_PATH, load_settings


def test_defaults_serve_the_packaged_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BIDDER_CONFIG_FILE", raising=False)
    settings = load_settings()
    assert settings.model_path == DEFAULT_MODEL_PATH
    assert (settings.host, settings.port, settings.max_body_bytes) == ("127.0.0.1", 8000, 262144)


def test_environment_overrides_the_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "bidder.toml"
    config.write_text('port = 9000\nbid_threshold = 0.3\nseat = "s1"\n')
    monkeypatch.setenv("BIDDER_CONFIG_FILE", str(config))
    monkeypatch.setenv("BIDDER_PORT", "9100")
    settings = load_settings()
    assert (settings.port, settings.bid_threshold, settings.seat) == (9100, 0.3, "s1")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BIDDER_PORT", "70000", "BIDDER_PORT: Input should be less than or equal to 65535"),
        ("BIDDER_CURRENCY", "dollars", "BIDDER_CURRENCY: String should match pattern"),
        ("BIDDER_SCORER", "magic", "BIDDER_SCORER: Input should be 'embedded'"),
        ("BIDDER_MAX_DECOMPRESSED_BYTES", "2048", "at least max_body_bytes"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=message):
        load_settings()


def test_unknown_config_file_keys_and_bad_toml_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "bidder.toml"
    config.write_text("prot = 9000\n")
    monkeypatch.setenv("BIDDER_CONFIG_FILE", str(config))
    with pytest.raises(ConfigurationError, match="BIDDER_PROT: Extra inputs are not permitted"):
        load_settings()
    config.write_text("port = \n")
    with pytest.raises(ConfigurationError, match="BIDDER_CONFIG_FILE"):
        load_settings()
