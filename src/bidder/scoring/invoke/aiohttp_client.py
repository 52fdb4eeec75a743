"""The lean invoker: SigV4-signed `InvokeEndpoint` requests over one pooled aiohttp session.

Everything botocore decides is still decided by botocore, once, at start-up: a
`sagemaker-runtime` client resolves the region and the endpoint URL (the region's default or
`endpoint_url`), botocore's `rest-json` serializer turns the invocation's parameters into the
request's path (the endpoint name URL-encoded) and headers, and the credentials come from
botocore's standard chain (aiobotocore's session, so a refresh of temporary credentials
does not block the event loop). What is left per call is a signature (`SigV4Signer`), one
POST and the error parsing botocore would do (`failures.error_code`): a fraction of
aiobotocore's per-call cost, which goes to building, signing and parsing through its
generic machinery.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiobotocore.session import get_session
from botocore.awsrequest import prepare_request_dict
from botocore.httpsession import get_cert_path
from botocore.serialize import create_serializer
from yarl import URL

from bidder import __version__
from bidder.errors import ConfigurationError
from bidder.scoring.invoke.base import (
    OPERATION_NAME,
    Invocation,
    InvocationFailed,
    SageMakerEndpoint,
    runtime_client,
)
from bidder.scoring.invoke.failures import (
    FIRST_ERROR_STATUS,
    error_code,
    error_kind,
    transport_failure,
)
from bidder.scoring.invoke.sigv4 import SigV4Signer

_VARIANT_HEADER: Final = "x-amzn-invoked-production-variant"
# As aiobotocore asks: a compressed answer would cost a decompression per call.
_ACCEPT_ENCODING: Final = "identity"


@dataclass(frozen=True, slots=True)
class _Request:
    """What every invocation of this process shares, resolved at start-up."""

    url: URL
    signer: SigV4Signer
    credentials: Any
    # Signed as botocore signs them: the serializer's headers, the InferenceId's.
    signed_headers: dict[str, str]
    inference_id_header: str
    # Sent unsigned, as aiobotocore sends them (Host is signed by the signer itself).
    transport_headers: dict[str, str]


class AiohttpInvoker:
    def __init__(
        self, endpoint: SageMakerEndpoint, connector_args: dict[str, Any] | None = None
    ) -> None:
        self.endpoint = endpoint
        # Extra aiohttp connector options (a custom DNS resolver, for instance).
        self._connector_args = connector_args or {}
        self._session: aiohttp.ClientSession | None = None
        self._request: _Request | None = None

    async def start(self) -> None:
        session = get_session()
        async with runtime_client(session, self.endpoint) as client:
            meta = client.meta
            operation = meta.service_model.operation_model(OPERATION_NAME)
            serializer = create_serializer(meta.service_model.metadata["protocol"])
            request = serializer.serialize_to_request(
                {**self.endpoint.invoke_arguments(), "Body": b""}, operation
            )
            prepare_request_dict(request, endpoint_url=meta.endpoint_url)
            signer = SigV4Signer(
                method=request["method"],
                url=request["url"],
                region=meta.region_name,
                service=meta.service_model.signing_name,
            )
            inference_id = operation.input_shape.members["InferenceId"]
            credentials = await session.get_credentials()
            ssl_context = await self._ssl_context(session, request["url"])
        self._request = _Request(
            url=URL(request["url"], encoded=True),
            signer=signer,
            credentials=credentials,
            signed_headers=request["headers"],
            inference_id_header=inference_id.serialization["name"],
            transport_headers={
                "Host": signer.host,
                "Accept-Encoding": _ACCEPT_ENCODING,
                "User-Agent": f"bidder/{__version__} aiohttp/{aiohttp.__version__}",
            },
        )
        connector = aiohttp.TCPConnector(
            limit=self.endpoint.max_pool_connections, ssl=ssl_context, **self._connector_args
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                sock_connect=self.endpoint.connect_timeout, sock_read=self.endpoint.read_timeout
            ),
            auto_decompress=False,
        )

    @staticmethod
    async def _ssl_context(session: Any, url: str) -> ssl.SSLContext | bool:
        """botocore's trust store: `AWS_CA_BUNDLE` or the profile's `ca_bundle`, else
        certifi's; loaded in a thread, because reading it is blocking file I/O."""
        if not url.startswith("https:"):
            return True
        cafile = get_cert_path(session.get_config_variable("ca_bundle") or True)
        try:
            return await asyncio.to_thread(ssl.create_default_context, cafile=cafile)
        except OSError as exc:
            raise ConfigurationError(f"cannot load the CA bundle {cafile}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def invoke(self, body: bytes, inference_id: str | None) -> Invocation:
        session, request = self._session, self._request
        if session is None or request is None:
            raise InvocationFailed("client_error", "the invoker is not started")
        headers = request.signed_headers
        if inference_id is not None:
            headers = {**headers, request.inference_id_header: inference_id}
        credentials = await request.credentials.get_frozen_credentials()
        signature = request.signer.sign(headers, body, credentials, time.time())
        try:
            async with session.post(
                request.url,
                data=body,
                headers={**headers, **request.transport_headers, **signature},
            ) as response:
                payload = await response.read()
                status = response.status
                if status >= FIRST_ERROR_STATUS:
                    code = error_code(status, response.headers, payload)
                    raise InvocationFailed(error_kind(status, code), f"HTTP {status} {code}")
                return Invocation(
                    payload,
                    response.headers.get("Content-Type"),
                    response.headers.get(_VARIANT_HEADER),
                )
        except aiohttp.ClientError as exc:
            raise InvocationFailed(transport_failure(exc), str(exc)) from exc
