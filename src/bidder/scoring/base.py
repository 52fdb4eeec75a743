"""The `Scorer` protocol: what every way of scoring rows offers the bid path.

Scorers take a batch of rows and return one score per row, asynchronously, so that an
in-process model, a remote SageMaker endpoint and a micro-batcher in front of either are
interchangeable.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float64]


class Scorer(Protocol):
    """Scores batches of feature rows; raises `ScoringError` when it cannot."""

    @property
    def kind(self) -> str:
        """The scorer's name in metrics and logs (`embedded`, `sagemaker`, ...)."""
        ...

    @property
    def model_version(self) -> str: ...

    @property
    def num_features(self) -> int: ...

    async def score(self, rows: npt.NDArray[np.float32]) -> Scores:
        """One score per row, in row order."""
        ...

    async def start(self) -> None:
        """Open whatever the scorer holds for its lifetime (connections, clients)."""
        ...

    async def close(self) -> None: ...
