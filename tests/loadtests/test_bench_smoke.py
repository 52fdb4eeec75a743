"""The benchmark harness end to end, briefly: a real server, real load, a result file."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from loadtests import bench


def test_quick_benchmark_of_the_ceiling(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    affinity = os.sched_getaffinity(0)
    assert bench.main(["--quick", "--servers", "ceiling", "--out", str(out)]) == 0
    # The harness pins itself to the load generator's CPU only while it runs.
    assert os.sched_getaffinity(0) == affinity
    report = orjson.loads(out.read_bytes())
    assert report.keys() == {"machine", "settings", "results", "ratios", "ratios_by_round"}
    assert report["settings"]["quick"] is True
    [result] = report["results"]
    assert result["server"] == "ceiling"
    assert result["saturation_rps"] > 0
    assert len(result["saturation_runs_rps"]) == 1
    assert result["saturation_statuses"].keys() == {"200"}
    assert result["saturation_errors"] == {}
    half = result["half_load"]
    assert half["mode"] == "open"
    assert half["offered_rate"] > 0
    assert half["statuses"] == {"200": half["completed"]}
    assert half["completed"] > 0
    assert {"p50", "p90", "p99", "p99.9", "max", "mean", "count"} <= half["latency_ms"].keys()
    assert half["latency_ms"]["p50"] > 0
    # One server: no ratio to report.
    assert report["ratios"] == report["ratios_by_round"] == {}


def test_unknown_servers_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--servers", "nginx", "--out", str(tmp_path / "x.json")])
    assert exit_.value.code == 2
    assert not (tmp_path / "x.json").exists()


def test_quick_benchmark_of_the_bidder_against_the_ceiling(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--servers", "ceiling,bidder", "--out", str(out)]) == 0
    report = orjson.loads(out.read_bytes())
    results = {r["server"]: r for r in report["results"]}
    assert results["bidder"]["saturation_rps"] > 0
    assert set(results["bidder"]["saturation_statuses"]) <= {"200", "204"}
    assert results["bidder"]["saturation_errors"] == {}
    assert report["ratios"]["bidder/ceiling"] > 0


def test_servers_measured_in_turns_compare_round_by_round(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    arguments = ["--interleave", "--duration", "0.5", "--repeats", "2", "--requests", "200"]
    assert bench.main([*arguments, "--servers", "ceiling,bidder", "--out", str(out)]) == 0
    report = orjson.loads(out.read_bytes())
    assert report["settings"]["interleave"] is True
    for result in report["results"]:
        assert len(result["saturation_runs_rps"]) == 2
        assert len(result["half_load_runs_p99_ms"]) == 2
        assert result["half_load"]["completed"] > 0
        assert result["saturation_errors"] == {}
    rates = {r["server"]: r["saturation_runs_rps"] for r in report["results"]}
    rounds = report["ratios_by_round"]["bidder/ceiling"]
    assert rounds == [
        pytest.approx(bidder / ceiling, abs=1e-3)
        for bidder, ceiling in zip(rates["bidder"], rates["ceiling"], strict=True)
    ]
    assert report["ratios"]["bidder/ceiling"] == pytest.approx(sum(rounds) / 2, abs=1e-3)


def test_copies_of_a_server_are_measured_in_turns_and_pooled(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    arguments = ["--interleave", "--instances", "2", "--duration", "0.3", "--repeats", "2"]
    assert (
        bench.main([*arguments, "--requests", "100", "--servers", "ceiling", "--out", str(out)])
        == 0
    )
    report = orjson.loads(out.read_bytes())
    assert report["settings"]["instances"] == 2
    [result] = report["results"]
    assert result["instances"] == 2
    # Two rounds of two copies.
    assert len(result["saturation_runs_rps"]) == 4
    assert all(rate > 0 for rate in result["saturation_runs_rps"])
    assert len(result["half_load_runs_p99_ms"]) == 4


@pytest.mark.parametrize("instances", ["0", "2"])
def test_copies_need_interleaving_and_a_count(tmp_path: Path, instances: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--instances", instances, "--servers", "ceiling", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2
    assert not (tmp_path / "x").exists()


def _result(server: str, rate: float, dropped: float) -> dict[str, object]:
    return {
        "server": server,
        "saturation_rps": rate,
        "saturation_runs_rps": [rate],
        "saturation_statuses": {"204": 100},
        "saturation_errors": {},
        "saturation_shed": 0.0,
        "saturation_records_dropped": dropped,
        "half_load": None,
    }


@pytest.mark.parametrize(
    ("dropped", "verdict", "row"),
    [
        (0.0, "(target ≥ 0.9×: met)", "{'204': 100} |"),
        (25.0, "(target ≥ 0.9×: not measured, 25 records dropped)", "records dropped 25"),
    ],
)
def test_a_recording_bidder_that_dropped_records_is_not_held_to_the_bar(
    dropped: float, verdict: str, row: str
) -> None:
    results = [_result("bidder", 10_000, 0.0), _result("bidder-recording", 9_500, dropped)]
    report = bench.markdown(results, bench.ratios(results))
    assert f"- bidder-recording/bidder: **0.950×** {verdict}" in report
    assert row in report.splitlines()[3]


def test_a_variant_is_its_base_with_more_environment_and_the_same_bars() -> None:
    lineup = bench.with_variant(
        bench.Lineup(bench.SERVERS, bench.RATIOS),
        "nice0=bidder-recording:BIDDER_RECORD_WRITER_NICE=0, BIDDER_RECORD_DRAIN_SECONDS=0.1",
    )
    base, variant = bench.SERVERS["bidder-recording"], lineup.servers["nice0"]
    assert variant.env == {
        **base.env,
        "BIDDER_RECORD_WRITER_NICE": "0",
        "BIDDER_RECORD_DRAIN_SECONDS": "0.1",
    }
    # Its own recording directory, as the base has.
    assert variant.scoped_env is base.scoped_env is not None
    assert lineup.ratios["nice0/bidder-recording"] == bench.Ratio("nice0", "bidder-recording")
    assert lineup.ratios["nice0/bidder"] == bench.Ratio("nice0", "bidder", 0.90)
    # The lineup it came from is left as it was.
    assert "nice0" not in bench.SERVERS
    assert "nice0/bidder" not in bench.RATIOS


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("=bidder:A=1", "give it a name"),
        ("a/b=bidder:A=1", "give it a name"),
        ("bidder=ceiling:A=1", "bidder is already a server"),
        ("x=nginx:A=1", "no server 'nginx'"),
        ("x=bidder:A", "'A' is not KEY=VALUE"),
        ("x=bidder:=1", "'=1' is not KEY=VALUE"),
        ("x=bidder", "no KEY=VALUE"),
    ],
)
def test_a_variant_that_cannot_be_made_is_refused_naming_why(
    tmp_path: Path, spec: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match=complaint):
        bench.with_variant(bench.Lineup(bench.SERVERS, bench.RATIOS), spec)
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--variant", spec, "--out", str(tmp_path / "x.json")])
    assert exit_.value.code == 2
    assert complaint in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_a_variant_is_measured_beside_its_base_and_compared_with_it(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    arguments = ["--interleave", "--duration", "0.3", "--repeats", "2", "--requests", "100"]
    variant = "ceiling-b=ceiling:PYTHONHASHSEED=1"
    assert (
        bench.main([*arguments, "--servers", "ceiling", "--variant", variant, "--out", str(out)])
        == 0
    )
    report = orjson.loads(out.read_bytes())
    assert report["settings"]["variants"] == [variant]
    assert [r["server"] for r in report["results"]] == ["ceiling", "ceiling-b"]
    assert all(rate > 0 for r in report["results"] for rate in r["saturation_runs_rps"])
    assert len(report["ratios_by_round"]["ceiling-b/ceiling"]) == 2
    assert report["ratios"]["ceiling-b/ceiling"] > 0
