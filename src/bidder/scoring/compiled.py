"""Trees compiled to native code with tl2cgen.

treelite's GTIL walks the trees in a generic interpreter, about 3 µs per row for the
default model and 11-16 µs per call; tl2cgen turns the same treelite model into C,
compiled once, about 0.2 µs per row. The library is called two ways:

- row by row: the generated `predict` function itself, once per row, from C
  (`_rowwise.c`) where that module is built, through ctypes otherwise. One row (what an
  idle or lightly loaded bidder scores: most of its batches hold one) takes 0.9 µs from
  C, 5.3 through ctypes (numpy's and ctypes' set-up per call and per row), 16 with GTIL.
  From C, this way is the faster at every batch size;
- tl2cgen's batch predictor, which loops in C but costs about 20 µs per call to set up (a
  `DMatrix`, a dispatch to its thread pool): through ctypes, the two cost the same between
  40 and 64 rows (`python -m loadtests.scoring_bench`), where each row's own 2 µs on
  distinct rows outweighs either's overhead, so without `_rowwise` the batch predictor
  takes batches from `BATCH_PREDICTOR_MIN_ROWS` up.

Compiling needs tl2cgen and a C compiler at start-up; the shared library is kept in a cache
directory keyed by the model's hash, so a container image can compile it at build time and
ship without a compiler. Without either, the bidder falls back to GTIL.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from bidder.native import optional_module
from bidder.scoring.base import Scores

logger = logging.getLogger("bidder.scoring")

Predict = Callable[[npt.NDArray[np.float32]], Scores]

# Through ctypes, from this many rows up, tl2cgen's batch predictor: measured on the default
# model, 32 rows cost it 94-111 µs against 90-97 row by row, 64 rows 129-134 against 134 (a
# busy machine).
BATCH_PREDICTOR_MIN_ROWS = 48

# How the generated code's `union Entry` marks a missing value: the int -1 in place of the
# float (NaN is not missing to it: it would compare false and take the wrong branch).
_MISSING = -1


def compiled_predictor(model: Any, model_sha256: str, cache_dir: Path) -> Predict | None:
    """A native predictor for `model`, or None when it cannot be had here: the generated
    function row by row (from C, whatever the batch size; through ctypes, for fewer than
    `BATCH_PREDICTOR_MIN_ROWS` rows), tl2cgen's batch predictor otherwise."""
    library = compiled_library(model, model_sha256, cache_dir)
    if library is None:
        return None
    predict_rows = row_predictor(library)
    if predict_rows is None:  # pragma: no cover - a tl2cgen with another generated API
        return batch_predictor(library)
    if _rowwise is not None:
        # From C, row by row beats the batch predictor at every size: 96 µs against 172
        # for 64 rows, 1,282 against 1,459 for 1,024 (`python -m loadtests.scoring_bench`).
        return predict_rows
    predict_batch = batch_predictor(library)

    def predict(rows: npt.NDArray[np.float32]) -> Scores:
        if rows.shape[0] < BATCH_PREDICTOR_MIN_ROWS:
            return predict_rows(rows)
        return predict_batch(rows)

    return predict


def compiled_library(model: Any, model_sha256: str, cache_dir: Path) -> Path | None:
    """The shared library of `model`'s trees, compiled now unless the cache has it; None
    without tl2cgen or a C compiler."""
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
    return library


def batch_predictor(library: Path) -> Predict:
    """tl2cgen's batch predictor over `library`."""
    import tl2cgen

    predictor = tl2cgen.Predictor(str(library), nthread=1)
    matrix = tl2cgen.DMatrix

    def predict(rows: npt.NDArray[np.float32]) -> Scores:
        output = predictor.predict(matrix(rows))
        return np.asarray(output, dtype=np.float64).reshape(rows.shape[0])

    return predict


def row_predictor(library_path: Path, *, from_c: bool = True) -> Predict | None:
    """The generated `void predict(union Entry* row, int pred_margin, float* result)`, called
    once per row, from C where `_rowwise` is built (unless `from_c` is false), through
    ctypes otherwise; None unless the library has the single-output, float32 form it
    expects."""
    library = ctypes.CDLL(str(library_path))
    try:
        function = library.predict
        threshold_type = library.get_threshold_type
        leaf_type = library.get_leaf_output_type
        num_target = library.get_num_target
        num_class = library.get_num_class
    except AttributeError:  # pragma: no cover - another generated API
        return None
    threshold_type.restype = leaf_type.restype = ctypes.c_char_p
    num_target.restype = ctypes.c_int32
    classes = ctypes.c_int32(0)
    if num_target() != 1:
        return None
    num_class(ctypes.byref(classes))
    if (threshold_type(), leaf_type(), classes.value) != (b"float32", b"float32", 1):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    function.restype = None
    if from_c and _rowwise is not None:
        return _native_row_predictor(function, library.get_num_feature(), _rowwise)
    score_size = np.dtype(np.float32).itemsize

    def predict(rows: npt.NDArray[np.float32]) -> Scores:
        # A copy, C-ordered, in which the missing values can be marked.
        entries = np.array(rows, dtype=np.float32, order="C")
        entries.view(np.int32)[np.isnan(entries)] = _MISSING
        # `predict` adds the trees' outputs to what it is given.
        scores = np.zeros(entries.shape[0], dtype=np.float32)
        row_address = entries.ctypes.data
        row_size = entries.strides[0]
        score_address = scores.ctypes.data
        for _ in range(entries.shape[0]):
            function(row_address, 0, score_address)
            row_address += row_size
            score_address += score_size
        return scores.astype(np.float64)

    return predict


class _RowWise(Protocol):
    def predict_rows(
        self, address: int, width: int, rows: npt.NDArray[np.float32]
    ) -> list[float]: ...


_rowwise: Final[_RowWise | None] = optional_module("bidder.scoring._rowwise")


def _native_row_predictor(function: Any, width: int, rowwise: _RowWise) -> Predict:
    """The generated `predict` called row by row from C (`_rowwise.c`). A closure rather
    than an object, whose attribute lookups add about 0.2 µs to a 1 µs call."""
    # ctypes never unloads a library, so the address holds for the process's life.
    address = ctypes.cast(function, ctypes.c_void_p).value
    assert address is not None  # a symbol the library was found to have

    def predict(rows: npt.NDArray[np.float32]) -> Scores:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        return np.array(rowwise.predict_rows(address, width, rows))

    return predict
