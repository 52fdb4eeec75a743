"""Failure kinds of an invocation, decided the same way whichever client made the call.

An error answer's code is read as botocore's `rest-json` parser reads it (the
`x-amzn-errortype` header, else the body's `code`, `Code` or `__type`, else the status),
and a transport error is classified from the aiohttp exception underneath, which
aiobotocore wraps and the lean invoker sees directly.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import orjson

# Every failure kind a call can end in; each is a label value of the model-call metrics.
FAILURE_KINDS: Final = (
    "model_error",
    "validation_error",
    "throttled",
    "service_unavailable",
    "internal_failure",
    "client_error",
    "connect_timeout",
    "read_timeout",
    "timeout",
    "connection_reset",
    "connection_refused",
    "dns_failure",
    "bad_response",
    "circuit_open",
)

_ERROR_CODES: Final = {
    "ModelError": "model_error",
    "ValidationError": "validation_error",
    "ThrottlingException": "throttled",
    "Throttling": "throttled",
    "ModelNotReadyException": "throttled",
    "ServiceUnavailable": "service_unavailable",
    "InternalFailure": "internal_failure",
}
_STATUS_KINDS: Final = {
    424: "model_error",
    400: "validation_error",
    429: "throttled",
    503: "service_unavailable",
    500: "internal_failure",
}
# botocore treats every status from 301 up as an error answer.
FIRST_ERROR_STATUS: Final = 301


def error_kind(status: int, code: str) -> str:
    """The failure kind of an error answer with this status and error code."""
    return _ERROR_CODES.get(code) or _STATUS_KINDS.get(status, "client_error")


def error_code(status: int, headers: Mapping[str, str], body: bytes) -> str:
    """The error code botocore's `rest-json` parser finds in an error answer.

    `headers` must be case-insensitive (aiohttp's are)."""
    stripped = body.strip()
    if status >= 500 and (not stripped or stripped.startswith(b"<html>")):
        return str(status)  # a proxy's or load balancer's page, not the service's answer
    document = _json_object(body)
    code: Any = headers.get("x-amzn-errortype")
    if code is None:
        code = document.get("code", document.get("Code"))
    if code is None:
        code = document.get("__type", str(status))
    if not isinstance(code, str):
        return ""
    return code.split(":", 1)[0].rsplit("#", 1)[-1]


def _json_object(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def transport_failure(error: BaseException | None) -> str:
    """The failure kind of a connection-level aiohttp error."""
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return "connect_timeout"
    if isinstance(error, aiohttp.ServerTimeoutError):
        return "read_timeout"
    if isinstance(error, socket.gaierror | aiohttp.ClientConnectorDNSError):
        return "dns_failure"
    if isinstance(error, aiohttp.ClientConnectorError):
        if isinstance(error.os_error, socket.gaierror):
            return "dns_failure"
        return "connection_refused"
    # A reset, a server that closed the connection, a truncated answer.
    return "connection_reset"
