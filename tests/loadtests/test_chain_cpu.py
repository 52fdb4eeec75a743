"""CPU per request of a server chain: the bidder with the SageMaker scorer and its model
server, briefly, as real processes under real load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from loadtests import chain_cpu


@pytest.mark.slow
def test_the_sagemaker_chain_costs_are_measured_per_process(tmp_path: Path) -> None:
    out = tmp_path / "chain.json"
    arguments = ["--servers", "bidder-sagemaker", "--duration", "0.5", "--repeats", "2"]
    # An idle child of this process (as a test runner may have) is not the model server.
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        assert chain_cpu.main([*arguments, "--out", str(out)]) == 0
    finally:
        idle.kill()
        idle.wait()
    result = orjson.loads(out.read_bytes())["results"]["bidder-sagemaker"]
    assert result["achieved_rps"] > 0
    assert len(result["runs"]) == 2
    for run in result["runs"]:
        # Both the bidder and the model server it calls did work for the requests.
        assert run["server_us"] > 0
        assert run["companion_us"] > 0
        assert run["total_us"] == pytest.approx(run["server_us"] + run["companion_us"])


def test_unknown_servers_are_refused() -> None:
    with pytest.raises(SystemExit) as exit_:
        chain_cpu.main(["--servers", "nginx"])
    assert exit_.value.code == 2
