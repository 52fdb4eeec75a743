"""The benchmark harness end to end, briefly: real servers, real load, a result file."""

from __future__ import annotations

from pathlib import Path

import orjson
from loadtests import bench


def test_quick_benchmark_of_ceiling_and_bidder(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--servers", "ceiling,bidder", "--out", str(out)]) == 0
    report = orjson.loads(out.read_bytes())
    results = {r["server"]: r for r in report["results"]}
    assert results["ceiling"]["saturation_rps"] > 0
    assert results["bidder"]["saturation_rps"] > 0
    assert set(results["bidder"]["saturation_statuses"]) <= {"200", "204"}
    assert report["ratios"]["bidder/ceiling"] > 0
    assert {"p50", "p99"} <= results["bidder"]["half_load"]["latency_ms"].keys()
