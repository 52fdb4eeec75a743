"""Scoring in the bidder's own process with treelite's tree inference library (GTIL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import treelite.gtil

from bidder.errors import ModelLoadError, ScoringError
from bidder.scoring.artifacts import ModelArtifact, load_model_artifact
from bidder.scoring.base import Scores


class EmbeddedScorer:
    """Scores with a tree model held in memory.

    Prediction runs on the event loop's thread: a batch costs tens of microseconds, far less
    than a hand-off to a thread pool would.
    """

    kind = "embedded"

    def __init__(self, artifact: ModelArtifact) -> None:
        self.artifact = artifact
        self._model = artifact.model
        self._check_single_output()

    @classmethod
    def from_path(cls, path: str | Path) -> EmbeddedScorer:
        return cls(load_model_artifact(path))

    @property
    def model_version(self) -> str:
        return self.artifact.version

    @property
    def num_features(self) -> int:
        return self.artifact.num_features

    def predict(self, rows: npt.NDArray[np.float32]) -> Scores:
        """Synchronous scoring, for the CLI, the model server and warm-up."""
        if rows.ndim != 2 or rows.shape[1] != self.num_features:
            raise ScoringError(
                f"rows have shape {rows.shape}, the model expects (n, {self.num_features})",
                reason="bad_input",
            )
        if rows.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        # nthread=1: the bidder scales by processes; a thread pool per call costs more than
        # it saves on batches this small and would fight the event loop for the core.
        output = treelite.gtil.predict(self._model, rows, nthread=1)
        return np.asarray(output, dtype=np.float64).reshape(rows.shape[0])

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
