"""Swapping in a new model while bids keep flowing.

The new model is loaded, checked against its feature spec and warmed up beside the one
serving, and only then switched in, by replacing the runtime the bid path reads at the start
of each request: a request that has started finishes with the model it started with, and no
request waits for the load. A model that fails to load, to fit its spec or to score the
warm-up request is refused with a log line naming why, and the old one keeps serving. The
old runtime is closed once every request that may hold it has passed its deadline.

Reloads are triggered by SIGHUP (re-reading the configured model path, e.g. after a deploy
replaced the files) and by `POST /admin/reload` (optionally naming another path).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bidder.errors import ReloadRefused
from bidder.server.runtime import Runtime
from bidder.server.state import AppState
from bidder.settings import Settings
from bidder.telemetry import Metrics

logger = logging.getLogger("bidder.reload")

# Beyond the longest budget a request can have, so that nothing still holds a retired model.
RETIRE_AFTER_BUDGET_SECONDS = 1.0


class ModelReloader:
    def __init__(self, settings: Settings, metrics: Metrics, state: AppState) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = state
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def reload(self, model_path: Path | None = None) -> Runtime:
        """Switch to the model at `model_path` (default: the current path, read again), or
        raise `ReloadRefused` saying why it was refused."""
        async with self._lock:  # one reload at a time; a second waits, then loads afresh
            settings = self.settings
            if model_path is not None:
                settings = settings.model_copy(update={"model_path": model_path})
            runtime = await self._load(settings)
            old = self.state.runtime
            self.state.runtime = runtime
            self.settings = settings
            self.metrics.set_model(
                runtime.scorer.kind, runtime.scorer.model_version, runtime.spec.id
            )
            self.metrics.model_reloaded("ok")
            logger.info(
                "model reloaded",
                extra={
                    "model_path": str(settings.model_path),
                    "model_version": runtime.scorer.model_version,
                    "feature_spec": runtime.spec.id,
                    "previous_model_version": old.scorer.model_version if old else None,
                },
            )
            if old is not None:
                self._retire(old)
            return runtime

    async def _load(self, settings: Settings) -> Runtime:
        runtime: Runtime | None = None
        try:
            runtime = await Runtime.start(settings, self.metrics)
            await runtime.warm_up()
        except Exception as exc:
            # Whatever went wrong, the serving model must survive it: refuse, never raise on.
            if runtime is not None:
                await runtime.scorer.close()
            self.metrics.model_reloaded("refused")
            reason = f"{type(exc).__name__}: {exc}"
            logger.error(
                "model reload refused; the previous model keeps serving",
                extra={"model_path": str(settings.model_path), "reason": reason},
            )
            raise ReloadRefused(f"model at {settings.model_path} refused: {reason}") from exc
        return runtime

    def _retire(self, runtime: Runtime) -> None:
        task = asyncio.get_running_loop().create_task(self._close_later(runtime))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close_later(self, runtime: Runtime) -> None:
        try:
            await asyncio.sleep(
                self.settings.deadline_ceiling_ms / 1000 + RETIRE_AFTER_BUDGET_SECONDS
            )
        finally:
            await runtime.scorer.close()

    async def close(self) -> None:
        """At shutdown: close retired runtimes now rather than after their grace."""
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
