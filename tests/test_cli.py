"""The `bidder` command, run as a real process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bidder import __version__
from tests.conftest import free_port


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


def test_serve_listens_on_its_sockets_with_the_backlog_it_is_given() -> None:
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) reads a listening socket's backlog")
    port = free_port()
    env = {**os.environ, "BIDDER_LISTEN_BACKLOG": "123", "BIDDER_LISTEN_SOCKETS": "3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bidder", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        listening: list[list[str]] = []
        deadline = time.monotonic() + 60
        while not listening and time.monotonic() < deadline:
            shown = subprocess.run(
                [ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
            )
            listening = [line.split() for line in shown.stdout.splitlines()]
            time.sleep(0.1)
        # State, Recv-Q (connections waiting), Send-Q (for a listening socket, its backlog).
        assert [line[:3] for line in listening] == [["LISTEN", "0", "123"]] * 3
    finally:
        process.terminate()
        process.wait(timeout=30)
