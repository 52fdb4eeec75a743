"""`bidder model-server`: SageMaker's inference container contract, for the bidder's models.

SageMaker sends `GET /ping` and `POST /invocations` to port 8080 (or
`SAGEMAKER_BIND_TO_PORT`). The server also answers the SageMaker Runtime API's path,
`POST /endpoints/{EndpointName}/invocations`, ignoring the SigV4 headers, so that an
unmodified aiobotocore `sagemaker-runtime` client whose `endpoint_url` points here works:
that is how the whole chain runs on one machine with no AWS account.

Like the bid path, this is a plain ASGI handler: the contract is four routes and a payload
format, and a framework's routing would cost more than the model does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Final

import orjson

from bidder.asgi import BodyTooLarge, Receive, Scope, Send, read_body, respond, serve_lifespan
from bidder.errors import ScoringError
from bidder.scoring import EmbeddedScorer
from bidder.scoring.payloads import (
    CONTENT_TYPES,
    JSON,
    PayloadError,
    decode_rows,
    encode_scores,
    media_type,
)
from bidder.settings import DEFAULT_MODEL_PATH, load_settings
from bidder.telemetry import configure_logging

# SageMaker's own limit on an invocation's payload.
MAX_PAYLOAD_BYTES: Final = 6 * 1024 * 1024
DEFAULT_VARIANT: Final = "AllTraffic"
SAGEMAKER_MODEL_DIR: Final = Path("/opt/ml/model")
MODEL_DIR_VARIABLE: Final = "BIDDER_MODEL_SERVER_MODEL_DIR"

logger = logging.getLogger("bidder.modelserver")


class ModelServerApp:
    def __init__(
        self,
        scorer: EmbeddedScorer,
        *,
        variant: str = DEFAULT_VARIANT,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self.scorer = scorer
        self.variant = variant.encode()
        self.max_payload_bytes = max_payload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/ping" and method in ("GET", "HEAD"):
            await _send(send, 200, b"", b"text/plain")
        elif path == "/invocations" or _is_runtime_api_path(path):
            if method != "POST":
                await _error(send, 405, "ValidationError", "use POST")
            else:
                await self._invoke(scope, receive, send, runtime_api=path != "/invocations")
        else:
            await _error(send, 404, "ValidationError", f"no route {path}")

    async def _invoke(self, scope: Scope, receive: Receive, send: Send, runtime_api: bool) -> None:
        content_type = accept = ""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = media_type(value)
            elif name == b"accept":
                accept = media_type(value.split(b",", 1)[0])
        if content_type not in CONTENT_TYPES:
            await _error(
                send,
                415,
                "ValidationError",
                f"content type {content_type!r} is not supported (text/csv, application/json)",
            )
            return
        if accept in ("", "*/*"):
            accept = content_type
        if accept not in CONTENT_TYPES:
            await _error(
                send,
                406,
                "ValidationError",
                f"accept {accept!r} is not supported (text/csv, application/json)",
            )
            return
        try:
            body = await read_body(receive, self.max_payload_bytes)
        except BodyTooLarge:
            await _error(
                send, 413, "ValidationError", f"payload larger than {self.max_payload_bytes} bytes"
            )
            return
        if body is None:  # the client went away
            return
        try:
            rows = decode_rows(body, content_type, self.scorer.num_features)
            scores = self.scorer.predict(rows)
        except PayloadError as exc:
            status, kind = (424, "ModelError") if runtime_api else (400, "ValidationError")
            await _error(send, status, kind, str(exc))
            return
        except ScoringError as exc:
            await _error(send, 424 if runtime_api else 500, "ModelError", str(exc))
            return
        await _send(
            send, 200, encode_scores(scores.tolist(), accept), accept.encode(), self.variant
        )


def _is_runtime_api_path(path: str) -> bool:
    parts = path.split("/")
    return (
        len(parts) == 4 and parts[1] == "endpoints" and bool(parts[2]) and parts[3] == "invocations"
    )


async def _error(send: Send, status: int, kind: str, message: str) -> None:
    # The shape of a SageMaker Runtime error, so that botocore raises the matching exception.
    body = orjson.dumps({"message": message, "ErrorCode": kind})
    await _send(send, status, body, JSON.encode(), error_type=kind.encode())


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    variant: bytes | None = None,
    error_type: bytes | None = None,
) -> None:
    headers = [(b"content-type", content_type)]
    if variant is not None:
        headers.append((b"x-amzn-invoked-production-variant", variant))
    if error_type is not None:
        headers.append((b"x-amzn-errortype", error_type))
    await respond(send, status, body, headers)


def create_model_server_app() -> ModelServerApp:
    """uvicorn's factory in each worker: the model from `BIDDER_MODEL_SERVER_MODEL_DIR`,
    its trees compiled for batches as the bidder's settings say (`BIDDER_COMPILE_MODEL`,
    `BIDDER_COMPILE_CACHE_DIR`)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    model_dir = Path(os.environ.get(MODEL_DIR_VARIABLE) or default_model_dir())
    scorer = EmbeddedScorer.from_path(model_dir, compile_cache=settings.compiled_trees_dir)
    logger.info(
        "model server ready",
        extra={
            "model_dir": str(model_dir),
            "model_version": scorer.model_version,
            "backend": scorer.backend,
        },
    )
    return ModelServerApp(scorer, variant=os.environ.get("SAGEMAKER_VARIANT_NAME", DEFAULT_VARIANT))


def default_model_dir() -> Path:
    """Where SageMaker puts the model, else the bidder's own default model."""
    return SAGEMAKER_MODEL_DIR if SAGEMAKER_MODEL_DIR.is_dir() else DEFAULT_MODEL_PATH
