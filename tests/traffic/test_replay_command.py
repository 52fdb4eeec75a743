"""`bidder replay` end to end against the replay test server, whose answers are known in
advance: the report, the decision diff, raw (`body_b64`) records, `--duration`, `--loop`,
damaged recordings, the progress bar and the plot."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bidder.cli import main
from bidder.traffic.loadgen import Target
from tests.traffic.recording_files import decision, gzip_members, record, write_recording
from tests.traffic.replay_server import arrivals, replay_server


@pytest.fixture(scope="module")
def server() -> Iterator[Target]:
    with replay_server() as target:
        yield target


def bid_request(request_id: str, imps: int = 1, reply: dict[str, Any] | None = None) -> Any:
    body: dict[str, Any] = {
        "id": request_id,
        "imp": [{"id": str(n), "banner": {"w": 300, "h": 250}} for n in range(1, imps + 1)],
    }
    if reply is not None:
        body["ext"] = {"reply": reply}
    return body


def known_answers() -> list[dict[str, Any]]:
    """Records whose replayed answers differ from the recorded decisions in known ways."""
    bid = {"status": 200, "price": 1.5}
    entries = [
        # Now bids 1.5 on both impressions: imp 1 the same, imp 2 a new bid.
        (bid_request("r0", 2, bid), 200, decision("bid", [("1", 1.5), ("2", None)])),
        # Now bids 2.0 where it bid 1.0: a price up by 1.
        (bid_request("r1", 1, {"status": 200, "price": 2.0}), 200, decision("bid", [("1", 1.0)])),
        # Now a no-bid where it bid.
        (bid_request("r2"), 200, decision("bid", [("1", 0.8)])),
        # A no-bid both times.
        (bid_request("r3"), 204, decision("no_bid", [("1", None)])),
        # Not JSON: a 400 both times, sent from base64.
        (b"\x00{not json", 400, decision("invalid", [])),
        # The same bid.
        (bid_request("r5", 1, {"status": 200, "price": 0.5}), 200, decision("bid", [("1", 0.5)])),
        # An internal error was answered as a no-bid: now a no-bid, the same on the wire.
        (bid_request("r6"), 204, decision("error", [("1", None)])),
    ]
    return [
        record(body, ts=1_700_000_000 + 0.01 * n, status=status, decision=recorded)
        for n, (body, status, recorded) in enumerate(entries)
    ]


def replay(target: Target, *arguments: str) -> int:
    return main(["replay", *arguments, "--target", f"http://{target.authority}", "--no-progress"])


def test_the_report_compares_answers_with_the_recorded_decisions(
    server: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_recording(tmp_path / "known.jsonl.gz", known_answers(), per_member=3)
    out = tmp_path / "report.json"
    assert replay(server, str(path), "--speed", "4", "--report", str(out)) == 0
    report = orjson.loads(out.read_bytes())
    assert report["kind"] == "replay"
    assert report["sent"] == report["completed"] == 7
    assert report["status_counts"] == {"200": 3, "204": 3, "400": 1}
    assert report["bid_rate"] == round(3 / 7, 6)
    assert report["latency_ms"]["count"] == 7
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max", "mean", "count"}
    assert report["recordings"] == {"files": 1, "records": 7, "truncated_files": []}
    diff = report["decisions"]
    assert (diff["compared"], diff["same"], diff["changed"]) == (7, 4, 3)
    assert diff["outcomes"] == {
        "bid->bid": 3,
        "bid->no_bid": 1,
        "invalid->invalid": 1,
        "no_bid->no_bid": 2,
    }
    assert diff["bid_rate"] == {"recorded": round(4 / 7, 6), "replayed": round(3 / 7, 6)}
    imps = diff["imps"]
    assert (imps["compared"], imps["same"]) == (7, 4)
    assert (imps["bid_to_no_bid"], imps["no_bid_to_bid"], imps["price_changed"]) == (1, 1, 1)
    delta = diff["price_delta"]
    assert (delta["compared"], delta["changed"], delta["increased"], delta["decreased"]) == (
        3,
        1,
        1,
        0,
    )
    assert (delta["min"], delta["p50"], delta["max"]) == (0.0, 0.0, 1.0)
    assert diff["examples"] == {
        "no_bid_to_bid": [
            {
                "id": "r0",
                "imp": "2",
                "recorded": {"bid": False, "price": None},
                "replayed": {"bid": True, "price": 1.5},
            }
        ],
        "price_changed": [
            {
                "id": "r1",
                "imp": "1",
                "recorded": {"bid": True, "price": 1.0},
                "replayed": {"bid": True, "price": 2.0},
            }
        ],
        "outcome_changed": [{"id": "r2", "imp": None, "recorded": "bid", "replayed": "no_bid"}],
        "bid_to_no_bid": [
            {
                "id": "r2",
                "imp": "1",
                "recorded": {"bid": True, "price": 0.8},
                "replayed": {"bid": False, "price": None},
            }
        ],
    }
    printed = capsys.readouterr().out
    assert "decisions against the recording: 4 of 7 requests the same" in printed
    assert "e.g. price_changed: request r1 imp 1: bid 1.0000 -> bid 2.0000" in printed
    assert "latency from the intended send time: p50" in printed


def test_raw_bodies_go_out_as_recorded_with_their_headers(server: Target, tmp_path: Path) -> None:
    raw = b"\x00{not json"
    path = write_recording(
        tmp_path / "raw.jsonl.gz",
        [
            record(raw, ts=1.0, status=400, decision=None, headers={"content-type": "text/x"}),
            record(bid_request("ok"), ts=1.1, status=204, decision=None),
        ],
    )
    arrivals(server)
    out = tmp_path / "report.json"
    assert replay(server, str(path), "--report", str(out)) == 0
    report = orjson.loads(out.read_bytes())
    assert report["status_counts"] == {"204": 1, "400": 1}
    # Records without a decision are sent but not compared.
    assert report["decisions"]["unrecorded"] == 2
    assert [request_id for _, request_id in arrivals(server)] == [None, "ok"]


def test_duration_cuts_and_loop_repeats(server: Target, tmp_path: Path) -> None:
    records = [
        record(bid_request(f"r{n}"), ts=100 + 0.01 * n, status=204, decision=None)
        for n in range(10)
    ]
    path = write_recording(tmp_path / "ten.jsonl.gz", records)
    out = tmp_path / "report.json"
    arrivals(server)
    # 10 ms apart: the first 0.045 s hold five records.
    assert replay(server, str(path), "--duration", "45ms", "--report", str(out)) == 0
    assert orjson.loads(out.read_bytes())["sent"] == 5
    # Which requests, not in what order: sends that a stall of the machine made late go out
    # together, on several connections, and the server reads them in any order.
    assert sorted(i for _, i in arrivals(server)) == [f"r{n}" for n in range(5)]
    # A loop at 500/s for 50 ms: 25 sends, going round the ten records.
    assert replay(server, str(path), "--rate", "500", "--duration", "50ms", "--loop") == 0
    assert sorted(i for _, i in arrivals(server)) == sorted(f"r{n % 10}" for n in range(25))


def test_a_damaged_recording_is_named_by_file_and_line(
    server: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = orjson.dumps(record(bid_request("r0"), ts=1.0, status=204, decision=None))
    path = tmp_path / "garbled.jsonl.gz"
    path.write_bytes(gzip.compress(good + b"\n" + good[:30] + b"\n"))
    arrivals(server)
    assert replay(server, str(path)) == 2
    error = capsys.readouterr().err
    assert f"{path}:2: Input data was truncated" in error
    # Nothing was sent.
    assert arrivals(server) == []


def test_a_truncated_recording_is_replayed_up_to_the_cut(
    server: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [
        record(bid_request(f"r{n}"), ts=100 + 0.001 * n, status=204, decision=None)
        for n in range(20)
    ]
    whole = gzip_members(records, per_member=10)
    path = tmp_path / "crashed.jsonl.gz.partial"
    path.write_bytes(whole[: len(whole) - 30])
    out = tmp_path / "report.json"
    assert replay(server, str(tmp_path), "--report", str(out)) == 0
    report = orjson.loads(out.read_bytes())
    assert report["recordings"]["truncated_files"] == [str(path)]
    assert 10 <= report["sent"] < 20
    assert "(1 truncated)" in capsys.readouterr().out


def test_records_at_one_instant_need_a_rate(
    server: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_recording(
        tmp_path / "one.jsonl.gz", [record(bid_request("r"), ts=1, status=204, decision=None)]
    )
    assert replay(server, str(path)) == 2
    assert "span no time" in capsys.readouterr().err
    assert replay(server, str(path), "--rate", "10") == 0


def test_progress_and_plot(
    server: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_recording(tmp_path / "known.jsonl.gz", known_answers())
    plot = tmp_path / "latency.png"
    arguments = [str(path), "--speed", "4", "--plot", str(plot), "--progress"]
    assert main(["replay", *arguments, "--target", f"http://{server.authority}"]) == 0
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    progress = capsys.readouterr().err
    assert "replay [########################] 100%" in progress
    assert "sent 7  answered 7" in progress


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--speed", "0"], "must be positive, got '0'"),
        (["--speed", "2", "--rate", "5"], "not allowed with argument"),
        (["--rate", "nan"], "must be positive"),
        (["--duration", "soon"], "not a duration: 'soon'"),
        (["--target", "http://10.0.0.1:8000"], "only targets loopback, not 10.0.0.1"),
    ],
)
def test_bad_flags_are_refused_with_the_reason(
    tmp_path: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = [] if "--target" in flags else ["--target", "http://127.0.0.1:9"]
    with pytest.raises(SystemExit) as exit_:
        main(["replay", str(tmp_path / "any.jsonl.gz"), *target, *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_loop_without_a_duration_is_refused(
    server: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_recording(tmp_path / "known.jsonl.gz", known_answers())
    assert replay(server, str(path), "--loop") == 2
    assert "a looped replay needs a duration" in capsys.readouterr().err
