"""The fuzz run, short: 5,000 hostile bodies and connections against a real `bidder serve`."""

from __future__ import annotations

from pathlib import Path

import orjson

from loadtests import fuzz

HOSTILE_KINDS = {
    "longer_than_declared",
    "shorter_than_declared",
    "chunked_without_end",
    "slow_drip",
    "oversize_headers",
    "many_headers",
    "endless_header",
    "no_length",
    "not_http",
    "bad_content_length",
}
MUTATIONS = {
    "wrong_type",
    "missing_key",
    "duplicate_key",
    "deep_nesting",
    "huge_array",
    "huge_number",
    "nan_infinity",
    "invalid_utf8",
    "bad_escape",
    "truncated",
    "byte_flips",
    "spliced",
    "garbage",
    "degenerate",
    "gzip_bomb",
    "unchanged",
}


def test_a_short_fuzz_run_gets_only_accepted_answers(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    code = fuzz.main(["--bodies", "5000", "--seed", "7", "--out", str(out)])
    report = orjson.loads(out.read_bytes())
    assert report["unexpected"] == {}, report["unexpected_examples"]
    assert report["checks"] == {
        "every_answer_accepted": True,
        "process_alive": True,
        "memory_bounded": True,
    }
    assert code == 0
    assert report["bodies"] == 5000
    assert {int(status) for status in report["statuses"]} <= fuzz.ACCEPTED
    # Every kind of hostility was really sent, and each got the answer it calls for.
    by_kind = report["by_kind"]
    assert set(by_kind) >= HOSTILE_KINDS | MUTATIONS
    for kind, status in [
        ("shorter_than_declared", "408"),
        ("chunked_without_end", "408"),
        ("slow_drip", "408"),
        ("oversize_headers", "431"),
        ("many_headers", "431"),
        ("endless_header", "431"),
        ("no_length", "411"),
        ("not_http", "400"),
    ]:
        assert set(by_kind[kind]) == {status}, (kind, by_kind[kind])
    assert by_kind["gzip_bomb"].get("413", 0) > 0
    # Valid requests still bid: the fuzz did not just collect refusals.
    assert by_kind["unchanged"].get("200", 0) > 0
    assert report["rss_growth_mib"] <= fuzz.MAX_RSS_GROWTH_MIB
