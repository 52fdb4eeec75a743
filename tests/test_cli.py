"""The `bidder` command, run as a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bidder import __version__


def bidder(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bidder", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version() -> None:
    result = bidder("version")
    assert result.returncode == 0
    assert result.stdout.strip() == __version__


def test_score_matches_the_sagemaker_container(seed_model: Path) -> None:
    result = bidder("score", "--model", str(seed_model), stdin="2,0,0.0,7.0,3.0,20.0,2\n1,,,,,,\n")
    assert result.returncode == 0, result.stderr
    first, second = (float(line) for line in result.stdout.splitlines())
    assert abs(first - 0.000847571762278676) < 1e-6
    assert 0 < second < 1


def test_score_names_the_bad_line(seed_model: Path) -> None:
    result = bidder("score", "--model", str(seed_model), stdin="2,0,0,7,3,20,2\n1,2,3\n")
    assert result.returncode == 2
    assert "line 2: 3 values, the model takes 7" in result.stderr


def test_serve_refuses_bad_settings_before_starting() -> None:
    result = bidder("serve", "--port", "0")
    assert result.returncode == 2
    assert "BIDDER_PORT" in result.stderr
