"""The state shared by the bid path and the control plane."""

from __future__ import annotations

from dataclasses import dataclass

from bidder.recording import Recorder
from bidder.server.runtime import Runtime


@dataclass
class AppState:
    """`runtime` is None until the model is loaded and warmed up; the bid path answers
    no-bid and `/readyz` 503 while it is."""

    runtime: Runtime | None = None
    # Set on SIGTERM: in-flight and arriving requests are still served, `/readyz` says 503.
    draining: bool = False
    # Set while the traffic recorder runs (`BIDDER_RECORD_DIR`).
    recorder: Recorder | None = None

    @property
    def ready(self) -> bool:
        return self.runtime is not None
