"""Microbenchmark: the embedded model's ways of scoring, per call, by batch size.

    python -m loadtests.scoring_bench [--repeats 5] [--sizes 1,2,4,8,16,24,32,64]
                                      [--model PATH]

Each way scores the same distinct random rows (a fifth of the values missing) in batches
of each size, alternating ways within a repeat; the median of the repeats is reported in
µs per call. The ways: treelite's public `gtil.predict`, GTIL with its set-up done once
(the fallback without compiled trees), tl2cgen's batch predictor, and the generated
`predict` function called row by row (`bidder.scoring.compiled`), through ctypes and from
C (`_rowwise.c`). From C, the embedded scorer goes row by row whatever the batch size;
through ctypes, it switches to the batch predictor at `BATCH_PREDICTOR_MIN_ROWS`: this is
where both choices come from.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import treelite.gtil

from bidder.scoring.artifacts import load_model_artifact
from bidder.scoring.compiled import (
    BATCH_PREDICTOR_MIN_ROWS,
    batch_predictor,
    compiled_library,
    row_predictor,
)
from bidder.scoring.embedded import EmbeddedScorer
from bidder.settings import DEFAULT_MODEL_PATH

DISTINCT_ROWS = 2048

Way = Callable[[npt.NDArray[np.float32]], object]


def ways(model_path: Path, cache: Path) -> dict[str, Way]:
    artifact = load_model_artifact(model_path)
    library = compiled_library(artifact.model, artifact.sha256, cache)
    if library is None:
        raise SystemExit("tl2cgen and a C compiler are needed to compile the trees")
    from_c = row_predictor(library)
    through_ctypes = row_predictor(library, from_c=False)
    if from_c is None or through_ctypes is None:
        raise SystemExit("the compiled library has no single-output float32 `predict`")
    return {
        "gtil.predict": lambda rows: treelite.gtil.predict(artifact.model, rows, nthread=1),
        "GTIL, prepared": EmbeddedScorer(artifact).predict,
        "tl2cgen batch": batch_predictor(library),
        "rows, ctypes": through_ctypes,
        "rows, C": from_c,
    }


def per_call(way: Way, batches: list[npt.NDArray[np.float32]]) -> float:
    """µs per call over `batches`, process time."""
    started = time.process_time()
    for batch in batches:
        way(batch)
    return (time.process_time() - started) / len(batches) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="1,2,4,8,16,24,32,64")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as cache:
        table = ways(args.model, Path(cache))
        width = EmbeddedScorer.from_path(args.model).num_features
        rng = np.random.default_rng(0)
        rows = rng.normal(scale=100.0, size=(DISTINCT_ROWS, width)).astype(np.float32)
        rows[rng.random(rows.shape) < 0.2] = np.nan
        switch = BATCH_PREDICTOR_MIN_ROWS
        print(f"µs per call, median of {args.repeats} (ctypes switch at {switch} rows)")
        print("rows  " + "".join(f"{name:>16}" for name in table))
        for size in sizes:
            batches = [rows[i : i + size] for i in range(0, DISTINCT_ROWS - size + 1, size)]
            times: dict[str, list[float]] = {name: [] for name in table}
            for _ in range(args.repeats):
                for name, way in table.items():
                    times[name].append(per_call(way, batches))
            print(f"{size:>4}  " + "".join(f"{statistics.median(times[n]):>16.1f}" for n in table))


if __name__ == "__main__":
    main()
