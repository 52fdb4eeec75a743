"""Scoring in the bidder's own process: compiled trees, or treelite's GTIL without them."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import treelite.gtil

from bidder.errors import ModelLoadError, ScoringError
from bidder.scoring.artifacts import ModelArtifact, load_model_artifact
from bidder.scoring.base import Scores
from bidder.scoring.compiled import Predict, compiled_predictor


class EmbeddedScorer:
    """Scores with a tree model held in memory.

    Prediction runs on the event loop's thread: a batch costs tens of microseconds, far less
    than a hand-off to a thread pool would.
    """

    kind = "embedded"

    def __init__(self, artifact: ModelArtifact, *, compile_cache: Path | None = None) -> None:
        self.artifact = artifact
        self._model = artifact.model
        # Read once: treelite answers through a ctypes call, and `predict` checks every batch.
        self._num_features = artifact.num_features
        self._check_single_output()
        self._predict = _prepared_predictor(self._model)
        self.backend = "gtil"
        if compile_cache is not None:
            compiled = compiled_predictor(self._model, artifact.sha256, compile_cache)
            if compiled is not None and _agrees(compiled, self._predict, self.num_features):
                self._predict = compiled
                self.backend = "compiled"

    @classmethod
    def from_path(cls, path: str | Path, *, compile_cache: Path | None = None) -> EmbeddedScorer:
        return cls(load_model_artifact(path), compile_cache=compile_cache)

    @property
    def model_version(self) -> str:
        return self.artifact.version

    @property
    def num_features(self) -> int:
        return self._num_features

    def predict(self, rows: npt.NDArray[np.float32]) -> Scores:
        """Synchronous scoring, for the CLI, the model server and warm-up."""
        if rows.ndim != 2 or rows.shape[1] != self.num_features:
            raise ScoringError(
                f"rows have shape {rows.shape}, the model expects (n, {self.num_features})",
                reason="bad_input",
            )
        if rows.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        return self._predict(rows)

    async def score(self, rows: npt.NDArray[np.float32]) -> Scores:
        return self.predict(rows)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _check_single_output(self) -> None:
        probe = np.full((1, self.num_features), np.nan, dtype=np.float32)
        output = np.asarray(treelite.gtil.predict(self._model, probe, nthread=1))
        if output.size != 1:
            raise ModelLoadError(
                f"{self.artifact.source}: the model gives {output.size} outputs per row; "
                "the bidder needs one score per row"
            )


def _prepared_predictor(model: Any) -> Callable[[npt.NDArray[np.float32]], Scores]:
    """GTIL's prediction with its per-call set-up done once.

    `treelite.gtil.predict` re-parses a JSON configuration and re-reads the model's types
    through ctypes on every call, which costs more than scoring one row. This calls the same
    C function with everything prepared at load time. It leans on treelite internals, so
    any mismatch falls back to the public function.
    """

    def public(rows: npt.NDArray[np.float32]) -> Scores:
        # nthread=1: the bidder scales by processes; a thread pool per call costs more than
        # it saves on batches this small and would fight the event loop for the core.
        output = treelite.gtil.predict(model, rows, nthread=1)
        return np.asarray(output, dtype=np.float64).reshape(rows.shape[0])

    try:
        from treelite.core import _LIB, _check_call
        from treelite.gtil.gtil import GTILConfig
        from treelite.util import typestr_to_ctypes_type, typestr_to_numpy_type

        config = GTILConfig(predict_type="default", nthread=1)
        input_type = model.input_type
        input_dtype = typestr_to_numpy_type(input_type)  # type: ignore[no-untyped-call]
        output_dtype = typestr_to_numpy_type(model.output_type)  # type: ignore[no-untyped-call]
        input_pointer = ctypes.POINTER(typestr_to_ctypes_type(input_type))  # type: ignore[no-untyped-call]
        output_pointer = ctypes.POINTER(typestr_to_ctypes_type(model.output_type))  # type: ignore[no-untyped-call]
        input_type_name = input_type.encode()
        handle = model.handle
        config_handle = config.handle
        predict_c = _LIB.TreeliteGTILPredict
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - other treelite
        return public

    def prepared(rows: npt.NDArray[np.float32]) -> Scores:
        data = np.ascontiguousarray(rows, dtype=input_dtype)
        output = np.empty(data.shape[0], dtype=output_dtype)
        _check_call(
            predict_c(
                handle,
                data.ctypes.data_as(input_pointer),
                input_type_name,
                ctypes.c_uint64(data.shape[0]),
                output.ctypes.data_as(output_pointer),
                config_handle,
            )
        )
        return output.astype(np.float64)

    prepared.config = config  # type: ignore[attr-defined]  # keeps the C config alive
    probe = np.full((2, model.num_feature), np.nan, dtype=np.float32)
    if not np.array_equal(prepared(probe), public(probe)):  # pragma: no cover
        return public
    return prepared


def _agrees(candidate: Predict, reference: Predict, width: int) -> bool:
    """Whether two predictors give the same scores, on random rows with missing values, in
    one batch and a few rows at a time (a predictor may score those another way)."""
    rng = np.random.default_rng(0)
    rows = rng.normal(scale=100.0, size=(256, width)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.2] = np.nan
    expected = reference(rows)
    few_at_a_time = np.concatenate([candidate(rows[i : i + 3]) for i in range(0, len(rows), 3)])
    return bool(
        np.allclose(candidate(rows), expected, rtol=0, atol=1e-6)
        and np.allclose(few_at_a_time, expected, rtol=0, atol=1e-6)
    )
