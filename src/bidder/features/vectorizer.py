"""Turning bid requests into model input rows: one row per impression.

The spec is compiled once into a function (`bidder.features.compiler`), so building a row
is a run of attribute reads and dictionary look-ups with no per-feature calls. Training
(`bidder.training`) and serving call the same `Vectorizer`, which is what keeps the two
from drifting apart.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from bidder.features.compiler import compile_rows_function
from bidder.features.spec import FeatureSpec
from bidder.openrtb.model import BidRequest

Rows = npt.NDArray[np.float32]


class Vectorizer:
    """Builds the model's input rows for a request, one per impression, in `imp` order."""

    def __init__(self, spec: FeatureSpec) -> None:
        spec.check()
        self.spec = spec
        self._rows, self.source = compile_rows_function(spec)

    @property
    def width(self) -> int:
        return self.spec.width

    def rows(self, request: BidRequest, now: float) -> list[list[float]]:
        """The rows of one request, `now` being its arrival time in seconds since the epoch."""
        return self._rows(request, now)

    def matrix(self, request: BidRequest, now: float) -> Rows:
        return np.array(self._rows(request, now), dtype=np.float32).reshape(-1, self.width)
