"""The control plane: health, readiness and metrics, served by FastAPI.

FastAPI owns everything but the bid route: these endpoints are called a few times a
second at most, and FastAPI gives them OpenAPI documentation and validation for free.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST

from bidder import __version__
from bidder.errors import ReloadRefused, ScoringError
from bidder.recording import create_recorder
from bidder.server.reload import ModelChoice, ModelReloader, remember_model_choice
from bidder.server.runtime import Runtime
from bidder.server.state import AppState
from bidder.settings import Settings
from bidder.telemetry import Metrics
from bidder.telemetry.emf import create_reporter
from bidder.telemetry.metrics import multiprocess_dir
from bidder.telemetry.scrape import MetricsServer

logger = logging.getLogger("bidder.server")


def create_control_app(settings: Settings, metrics: Metrics, state: AppState) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings, metrics)
        metrics.set_model(runtime.scorer.kind, runtime.scorer.model_version, runtime.spec.id)
        emf = create_reporter(settings, metrics)
        if emf is not None:
            emf.start()
        scrapes = None
        if settings.metrics_port is not None and multiprocess_dir() is None:
            # One worker: its own thread answers; several: the supervisor does (cli.py).
            scrapes = MetricsServer(settings.host, settings.metrics_port, metrics.registry)
        warming: asyncio.Task[None] | None = None
        try:
            await runtime.warm_up()
            _become_ready(runtime)
        except ScoringError as exc:
            if runtime.scorer.kind == "embedded":
                raise
            # A remote endpoint may be briefly unavailable: stay up, not ready, and retry.
            logger.warning("warm-up failed; retrying", extra={"reason": exc.reason})
            warming = asyncio.create_task(_keep_warming(runtime))
        recorder = create_recorder(settings, metrics)
        if recorder is not None:
            await recorder.start()
            state.recorder = recorder
        _announce_draining_on_signals(state)
        reloading_on_hangup = _reload_on_hangup()
        # What start-up built (modules, the app, the model's Python side, settings) lives
        # as long as the process: frozen out of the collector's reach, a full collection
        # walks only what requests leave behind, instead of the whole heap each time.
        gc.collect()
        gc.freeze()
        flushing = asyncio.create_task(metrics.flush_periodically())
        try:
            yield
        finally:
            flushing.cancel()
            if warming is not None:
                warming.cancel()
            if reloading_on_hangup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            serving = state.runtime or runtime
            state.runtime = None
            metrics.ready.set(0)
            await reloader.close()
            await serving.scorer.close()
            if recorder is not None:
                # Every request has been answered: what is queued is written and uploaded.
                state.recorder = None
                await recorder.close(grace=settings.record_close_seconds)
            if emf is not None:
                # Within the shutdown grace: the last interval is reported, not lost.
                await emf.close(grace=settings.emf_tcp_timeout_ms / 1000)
            if scrapes is not None:
                scrapes.close()
            metrics.process_exited()

    def _become_ready(runtime: Runtime) -> None:
        state.runtime = runtime
        metrics.ready.set(1)
        logger.info(
            "bidder ready",
            extra={
                "model_path": str(settings.model_path),
                "model_version": runtime.scorer.model_version,
                "feature_spec": runtime.spec.id,
                "scorer": runtime.scorer.kind,
            },
        )

    async def _keep_warming(runtime: Runtime) -> None:
        while True:
            await asyncio.sleep(settings.breaker_probe_interval_ms / 1000)
            try:
                await runtime.warm_up()
            except ScoringError:
                continue
            _become_ready(runtime)
            return

    def _reload_on_hangup() -> bool:
        """SIGHUP reloads the model from the configured path (a process's main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return False

        def on_hangup() -> None:
            logger.info("reloading the model", extra={"signal": "SIGHUP"})
            task = asyncio.create_task(reloader.reload())
            # A refused reload has logged why; nothing else is to be done with it here.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())

        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hangup)
        return True

    def _announce_draining_on_signals(state: AppState) -> None:
        """Readiness turns false the moment SIGTERM or SIGINT arrives, while uvicorn drains the
        connections, so that a load balancer stops sending before the listener closes. The
        handler is chained in front of uvicorn's own."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread; embedded servers have no signals
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            if not callable(previous):
                continue

            def handler(number: int, frame: FrameType | None, chained: Any = previous) -> None:
                if not state.draining:
                    state.draining = True
                    metrics.ready.set(0)
                    logger.info("draining", extra={"signal": signal.Signals(number).name})
                chained(number, frame)

            signal.signal(signum, handler)

    reloader = ModelReloader(settings, metrics, state)
    app = FastAPI(
        title="bidder",
        version=__version__,
        summary="OpenRTB 2.5/2.6 bidder. The bid endpoint is POST /openrtb2/bid.",
        lifespan=lifespan,
    )

    @app.get("/healthz", summary="Liveness: the process answers.")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get(
        "/readyz",
        summary="Readiness: 200 once the model is loaded and a warm-up prediction passed.",
        responses={503: {"description": "Not ready to bid"}},
    )
    async def readyz() -> JSONResponse:
        runtime = state.runtime
        if runtime is None or state.draining:
            status = "draining" if state.draining else "not ready"
            return JSONResponse({"status": status}, status_code=503)
        return JSONResponse(
            {
                "status": "ready",
                "scorer": runtime.scorer.kind,
                "model_version": runtime.scorer.model_version,
                "feature_spec": runtime.spec.id,
                "pid": os.getpid(),
            }
        )

    if settings.metrics_port is None:
        # With a metrics port, /metrics is served there only (see `bidder.telemetry.scrape`).

        @app.get("/metrics", summary="Prometheus metrics, text exposition format.")
        async def prometheus_metrics() -> Response:
            return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    if settings.admin_token is not None:
        _add_admin_routes(
            app,
            settings.admin_token.get_secret_value(),
            reloader,
            several_workers=settings.workers > 1,
        )
    return app


# At module level: FastAPI resolves the (postponed) annotations of dependencies here.
BearerCredentials = Annotated[
    HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))
]


def _add_admin_routes(
    app: FastAPI, token: str, reloader: ModelReloader, *, several_workers: bool
) -> None:
    """Admin endpoints exist only when `BIDDER_ADMIN_TOKEN` is set, and want it as a bearer
    token."""

    def authorised(credentials: BearerCredentials) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                status_code=401,
                detail="a valid bearer token is required",
                headers={"www-authenticate": "Bearer"},
            )

    @app.post(
        "/admin/reload",
        summary="Load, check and warm up a model, then switch to it; the old one serves meanwhile.",
        dependencies=[Depends(authorised)],
        responses={401: {"description": "No valid token"}, 422: {"description": "Refused"}},
    )
    async def reload_model(choice: ModelChoice | None = None) -> JSONResponse:
        if several_workers:
            return await _restart_workers(reloader, choice)
        try:
            runtime = await reloader.reload(choice)
        except ReloadRefused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status_code)
        return JSONResponse(
            {
                "status": "reloaded",
                "model_version": runtime.scorer.model_version,
                "feature_spec": runtime.spec.id,
            }
        )


async def _restart_workers(reloader: ModelReloader, choice: ModelChoice | None) -> JSONResponse:
    """Several workers: this one cannot switch the others' models, so uvicorn's supervisor
    replaces every worker, one at a time, each loading its model before serving. A model
    named here is loaded and warmed up by this worker first: refused, nothing restarts."""
    if choice is not None and choice.given:
        try:
            await reloader.reload(choice)
        except ReloadRefused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status_code)
        remember_model_choice(reloader.settings)
    os.kill(os.getppid(), signal.SIGHUP)
    return JSONResponse({"status": "restarting workers"}, status_code=202)
