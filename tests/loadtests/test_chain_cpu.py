"""CPU per request of a server chain: the bidder with the SageMaker scorer and its model
server, and a recording bidder's threads, briefly, as real processes under real load."""

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


@pytest.mark.slow
def test_the_event_loop_and_the_other_threads_are_measured_apart(tmp_path: Path) -> None:
    out = tmp_path / "threads.json"
    arguments = ["--servers", "bidder", "--duration", "0.5", "--repeats", "2"]
    variant = [
        "--variant",
        "recording=bidder:BIDDER_RECORD_SAMPLE_RATE=1,BIDDER_RECORD_DIR=" + str(tmp_path),
    ]
    assert chain_cpu.main([*arguments, *variant, "--out", str(out)]) == 0
    report = orjson.loads(out.read_bytes())
    results = report["results"]
    assert results.keys() == {"bidder", "recording"}
    for run in results["bidder"]["runs"]:
        assert run["loop_us"] > 0
        assert run["companion_us"] is None
        assert run["total_us"] == pytest.approx(run["loop_us"] + run["threads_us"])
    # The recorder's writer is a thread of its own, which the plain bidder does not have.
    assert all(run["threads_us"] > 0 for run in results["recording"]["runs"])
    assert any(tmp_path.glob("*.jsonl.gz*"))
    assert "recording/bidder" in report["ratios"]


def test_unknown_servers_are_refused() -> None:
    with pytest.raises(SystemExit) as exit_:
        chain_cpu.main(["--servers", "nginx"])
    assert exit_.value.code == 2


def test_a_malformed_variant_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        chain_cpu.main(["--servers", "bidder", "--variant", "copy=bidder:NOEQUALS"])
    assert exit_.value.code == 2
    assert "'NOEQUALS' is not KEY=VALUE" in capsys.readouterr().err
