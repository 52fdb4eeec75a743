"""Trees compiled to native code with tl2cgen, for batches.

treelite's GTIL walks the trees in a generic interpreter, about 3 µs per row for the
default model; tl2cgen turns the same treelite model into C, compiled once, about 0.2 µs
per row. Its per-call overhead is higher than GTIL's, so the embedded scorer uses it for
batches only. Compiling needs tl2cgen and a C compiler at start-up; the shared library is
kept in a cache directory keyed by the model's hash, so a container image can compile it
at build time and ship without a compiler. Without either, the bidder falls back to GTIL.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bidder.scoring.base import Scores

logger = logging.getLogger("bidder.scoring")

Predict = Callable[[npt.NDArray[np.float32]], Scores]


def compiled_predictor(model: Any, model_sha256: str, cache_dir: Path) -> Predict | None:
    """A native predictor for `model`, or None when it cannot be had here."""
    try:
        import tl2cgen
    except ImportError:
        return None
    library = cache_dir / f"model-{model_sha256[:16]}-{platform.machine()}.so"
    if not library.exists():
        if shutil.which("gcc") is None:
            logger.info("no C compiler: scoring with treelite GTIL only")
            return None
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
            partial = Path(scratch) / library.name
            tl2cgen.export_lib(model, toolchain="gcc", libpath=str(partial), nthread=1)
            # Atomic: a concurrent worker sees the whole library or none.
            os.replace(partial, library)
    predictor = tl2cgen.Predictor(str(library), nthread=1)
    matrix = tl2cgen.DMatrix

    def predict(rows: npt.NDArray[np.float32]) -> Scores:
        output = predictor.predict(matrix(rows))
        return np.asarray(output, dtype=np.float64).reshape(rows.shape[0])

    return predict
