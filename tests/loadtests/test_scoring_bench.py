"""The scoring microbenchmark runs every way it compares, on the default model."""

from __future__ import annotations

import pytest

from loadtests import scoring_bench


def test_every_way_is_timed_at_every_size(capsys: pytest.CaptureFixture[str]) -> None:
    scoring_bench.main(["--repeats", "1", "--sizes", "1,3"])
    lines = capsys.readouterr().out.splitlines()
    table = lines[[line.split()[:1] for line in lines].index(["rows"]) :]
    header, *rows = table
    assert header.split()[1:] == [
        "gtil.predict",
        "GTIL,",
        "prepared",
        "tl2cgen",
        "batch",
        "rows,",
        "ctypes",
        "rows,",
        "C",
    ]
    assert [row.split()[0] for row in rows] == ["1", "3"]
    for row in rows:
        assert all(float(cell) > 0 for cell in row.split()[1:])
