"""Compiled trees: the same scores as GTIL whichever way the library is called, compiled
once per model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bidder.scoring import EmbeddedScorer, compiled
from bidder.scoring.compiled import BATCH_PREDICTOR_MIN_ROWS, row_predictor
from bidder.settings import DEFAULT_MODEL_PATH

_NATIVE = pytest.mark.skipif(compiled._rowwise is None, reason="_rowwise is not built")


@pytest.fixture(scope="module")
def scorers(tmp_path_factory: pytest.TempPathFactory) -> tuple[EmbeddedScorer, EmbeddedScorer]:
    cache = tmp_path_factory.mktemp("compiled")
    return (
        EmbeddedScorer.from_path(DEFAULT_MODEL_PATH),
        EmbeddedScorer.from_path(DEFAULT_MODEL_PATH, compile_cache=cache),
    )


def test_the_backends_say_how_they_score(scorers: tuple[EmbeddedScorer, EmbeddedScorer]) -> None:
    assert (scorers[0].backend, scorers[1].backend) == ("gtil", "compiled")


@pytest.mark.parametrize(
    "count", [1, 2, BATCH_PREDICTOR_MIN_ROWS - 1, BATCH_PREDICTOR_MIN_ROWS, 300]
)
def test_compiled_scores_equal_gtil_row_by_row_and_in_batches(
    scorers: tuple[EmbeddedScorer, EmbeddedScorer], count: int
) -> None:
    plain, compiled = scorers
    rng = np.random.default_rng(count)
    rows = rng.normal(scale=50, size=(count, compiled.num_features)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.3] = np.nan
    given = rows.copy()
    np.testing.assert_allclose(compiled.predict(rows), plain.predict(rows), atol=1e-6)
    np.testing.assert_array_equal(rows, given, "the caller's rows are left as they were")


def test_a_row_of_missing_values_takes_the_missing_branches(
    scorers: tuple[EmbeddedScorer, EmbeddedScorer],
) -> None:
    # NaN compares false against every threshold; only marked as missing does it follow
    # each split's default direction, as GTIL does.
    plain, compiled = scorers
    for count in (1, BATCH_PREDICTOR_MIN_ROWS):
        rows = np.full((count, compiled.num_features), np.nan, dtype=np.float32)
        np.testing.assert_allclose(compiled.predict(rows), plain.predict(rows), atol=1e-6)


def test_the_library_is_compiled_once_then_reused(tmp_path: Path) -> None:
    EmbeddedScorer.from_path(DEFAULT_MODEL_PATH, compile_cache=tmp_path)
    [library] = tmp_path.glob("*.so")
    built = library.stat().st_mtime_ns
    again = EmbeddedScorer.from_path(DEFAULT_MODEL_PATH, compile_cache=tmp_path)
    assert again.backend == "compiled"
    assert library.stat().st_mtime_ns == built, "compiled once, then loaded from the cache"


def test_seed_model_compiles_to_the_same_scores(seed_model: Path, tmp_path: Path) -> None:
    compiled = EmbeddedScorer.from_path(seed_model, compile_cache=tmp_path)
    expected = 0.000847571762278676
    for count in (1, BATCH_PREDICTOR_MIN_ROWS):
        rows = np.array([[2, 0, 0.0, 7.0, 3.0, 20.0, 2]] * count, dtype=np.float32)
        np.testing.assert_allclose(compiled.predict(rows), expected, atol=1e-6)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("library")
    EmbeddedScorer.from_path(DEFAULT_MODEL_PATH, compile_cache=cache)
    [path] = cache.glob("*.so")
    return path


@_NATIVE
@pytest.mark.parametrize("count", [1, 3, 40])
def test_rows_scored_from_c_score_as_through_ctypes(library: Path, count: int) -> None:
    native = row_predictor(library)
    through_ctypes = row_predictor(library, from_c=False)
    assert native is not None
    assert through_ctypes is not None
    width = EmbeddedScorer.from_path(DEFAULT_MODEL_PATH).num_features
    rng = np.random.default_rng(count)
    rows = rng.normal(scale=50, size=(count, width)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.3] = np.nan
    np.testing.assert_array_equal(native(rows), through_ctypes(rows))
    # Rows in another layout or type are made float32 and C-ordered first, as ctypes' are.
    wide = np.asfortranarray(rows.astype(np.float64))
    np.testing.assert_array_equal(native(wide), through_ctypes(rows))


@_NATIVE
@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (np.zeros((2, 3), dtype=np.float32), "in 4 columns"),
        (np.zeros((2, 4), dtype=np.float64), "must be float32"),
        (np.zeros(4, dtype=np.float32), "in 4 columns"),
        (b"abcd", "must be float32"),
    ],
)
def test_rows_c_cannot_score_are_refused_with_what_is_wrong(rows: object, message: str) -> None:
    rowwise = compiled._rowwise
    assert rowwise is not None
    # Address 1 is never called: the rows are refused first.
    with pytest.raises(ValueError, match=message):
        rowwise.predict_rows(1, 4, rows)  # type: ignore[arg-type]
