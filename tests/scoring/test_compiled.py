"""Compiled trees: the same scores as GTIL whichever way the library is called, compiled
once per model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bidder.scoring import EmbeddedScorer
from bidder.scoring.compiled import BATCH_PREDICTOR_MIN_ROWS
from bidder.settings import DEFAULT_MODEL_PATH


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
