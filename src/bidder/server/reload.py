"""Swapping in a new model while bids keep flowing.

The new model is loaded, checked against its feature spec and warmed up beside the one
serving, and only then switched in, by replacing the runtime the bid path reads at the start
of each request: a request that has started finishes with the model it started with, and no
request waits for the load. A model that fails to load, to fit its spec or to score the
warm-up request is refused with a log line naming why, and the old one keeps serving. The
old runtime is closed once every request that may hold it has passed its deadline.

Reloads are triggered by SIGHUP (re-reading the configured model path, e.g. after a deploy
replaced the files, or a new version of the S3 object was uploaded) and by
`POST /admin/reload` (optionally naming another path, S3 object or version). With several
workers, each is its own process: the admin endpoint asks uvicorn's supervisor to replace
the workers one at a time (its SIGHUP), each loading its model before it serves. A model
named in the request is first loaded and warmed up by the worker that took it (so a model
that would be refused is refused there, with the reason), then written to the file named by
`MODEL_CHOICE_FILE_VARIABLE`, which every worker started afterwards reads.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bidder.errors import ReloadRefused
from bidder.server.runtime import Runtime
from bidder.server.state import AppState
from bidder.settings import Settings
from bidder.telemetry import Metrics

logger = logging.getLogger("bidder.reload")

# Beyond the longest budget a request can have, so that nothing still holds a retired model.
RETIRE_AFTER_BUDGET_SECONDS = 1.0
# Set by `bidder serve` for its workers when there are several: the file that holds the
# model an admin reload chose for them (absent: the configured one).
MODEL_CHOICE_FILE_VARIABLE: Final = "BIDDER_SERVE_MODEL_CHOICE_FILE"


class ModelChoice(BaseModel):
    """Which model to switch to; all fields unset: the configured one, read again (for S3
    without a pinned version: its newest version)."""

    model_config = ConfigDict(extra="forbid")

    model_path: Path | None = Field(None, description="A model.tar.gz, directory or file.")
    model_s3_uri: str | None = Field(
        None, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$", description="An S3 model."
    )
    model_s3_version_id: str | None = Field(
        None, description="A version of model_s3_uri (or of the configured one)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelChoice:
        if self.model_path is not None and (self.model_s3_uri or self.model_s3_version_id):
            raise ValueError("name either model_path or an S3 model, not both")
        return self

    @property
    def given(self) -> bool:
        return bool(self.model_fields_set)

    def applied_to(self, settings: Settings) -> Settings:
        if self.model_path is not None:
            changes = {"model_path": self.model_path, "model_s3_uri": None}
            return settings.model_copy(update={**changes, "model_s3_version_id": None})
        uri = self.model_s3_uri or settings.model_s3_uri
        if self.model_s3_version_id is not None and uri is None:
            raise ReloadRefused("model_s3_version_id names a version, but of no S3 model")
        if self.model_s3_uri is None and self.model_s3_version_id is None:
            return settings
        return settings.model_copy(
            update={"model_s3_uri": uri, "model_s3_version_id": self.model_s3_version_id}
        )


def with_chosen_model(settings: Settings) -> Settings:
    """`settings` with the model an admin reload chose for this server's workers, if any."""
    path = os.environ.get(MODEL_CHOICE_FILE_VARIABLE)
    if not path:
        return settings
    try:
        chosen = Path(path).read_bytes()
    except FileNotFoundError:
        return settings
    return ModelChoice.model_validate_json(chosen).applied_to(settings)


def remember_model_choice(settings: Settings) -> None:
    """Writes the model of `settings` where the workers started from now on read it."""
    path = Path(os.environ[MODEL_CHOICE_FILE_VARIABLE])
    choice = ModelChoice(
        model_path=settings.model_path if settings.model_s3_uri is None else None,
        model_s3_uri=settings.model_s3_uri,
        model_s3_version_id=settings.model_s3_version_id,
    )
    written = path.with_name(f"{path.name}.{os.getpid()}")
    written.write_text(choice.model_dump_json(exclude_none=True))
    written.replace(path)  # a worker starting meanwhile reads the old choice or the new


class ModelReloader:
    def __init__(self, settings: Settings, metrics: Metrics, state: AppState) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = state
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def reload(self, choice: ModelChoice | None = None) -> Runtime:
        """Switch to the chosen model (default: the configured one, read again), or raise
        `ReloadRefused` saying why it was refused."""
        async with self._lock:  # one reload at a time; a second waits, then loads afresh
            settings = choice.applied_to(self.settings) if choice else self.settings
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
                    "model_source": _source(settings),
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
                extra={"model_source": _source(settings), "reason": reason},
            )
            raise ReloadRefused(f"model {_source(settings)} refused: {reason}") from exc
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


def _source(settings: Settings) -> str:
    if settings.model_s3_uri is None:
        return str(settings.model_path)
    return f"{settings.model_s3_uri} (version {settings.model_s3_version_id or 'newest'})"
