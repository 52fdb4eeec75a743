"""The control plane: health, readiness and metrics, served by FastAPI.

FastAPI owns everything but the bid route: these endpoints are called a few times a
second at most, and FastAPI gives them OpenAPI documentation and validation for free.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from bidder import __version__
from bidder.errors import ScoringError
from bidder.server.runtime import Runtime
from bidder.server.state import AppState
from bidder.settings import Settings
from bidder.telemetry import Metrics

logger = logging.getLogger("bidder.server")


def create_control_app(settings: Settings, metrics: Metrics, state: AppState) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings, metrics)
        metrics.set_model(runtime.scorer.kind, runtime.scorer.model_version, runtime.spec.id)
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
        _announce_draining_on_signals(state)
        flushing = asyncio.create_task(metrics.flush_periodically())
        try:
            yield
        finally:
            flushing.cancel()
            if warming is not None:
                warming.cancel()
            state.runtime = None
            metrics.ready.set(0)
            await runtime.scorer.close()
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

    @app.get("/metrics", summary="Prometheus metrics, text exposition format.")
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app
