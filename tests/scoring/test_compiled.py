"""Compiled trees: the same scores as GTIL, compiled once per model, used for batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bidder.scoring import EmbeddedScorer
from bidder.scoring.embedded import COMPILED_MIN_ROWS
from bidder.settings import DEFAULT_MODEL_PATH


def test_compiled_scores_equal_gtil_and_the_library_is_reused(tmp_path: Path) -> None:
    plain = EmbeddedScorer.from_path(DEFAULT_MODEL_PATH)
    compiled = EmbeddedScorer.from_path(DEFAULT_MODEL_PATH, compile_cache=tmp_path)
    assert (plain.backend, compiled.backend) == ("gtil", "gtil+compiled")
    rng = np.random.default_rng(7)
    rows = rng.normal(scale=50, size=(300, compiled.num_features)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.3] = np.nan
    np.testing.assert_allclose(compiled.predict(rows), plain.predict(rows), atol=1e-6)
    small = rows[: COMPILED_MIN_ROWS - 1]
    np.testing.assert_allclose(compiled.predict(small), plain.predict(small), atol=1e-6)
    [library] = tmp_path.glob("*.so")
    built = library.stat().st_mtime_ns
    again = EmbeddedScorer.from_path(DEFAULT_MODEL_PATH, compile_cache=tmp_path)
    assert again.backend == "gtil+compiled"
    assert library.stat().st_mtime_ns == built, "compiled once, then loaded from the cache"


def test_seed_model_compiles_to_the_same_scores(seed_model: Path, tmp_path: Path) -> None:
    compiled = EmbeddedScorer.from_path(seed_model, compile_cache=tmp_path)
    rows = np.array([[2, 0, 0.0, 7.0, 3.0, 20.0, 2]] * 8, dtype=np.float32)
    assert (
        compiled.predict(rows)[0] == np.float64(np.float32(0.000847571762278676))
        or abs(compiled.predict(rows)[0] - 0.000847571762278676) < 1e-6
    )
