"""The reference invoker: aiobotocore's `sagemaker-runtime` client.

One client per process, opened at start-up. Its retries are off: a retry cannot fit in an
RTB deadline. Its connect and read timeouts are botocore's; the overall limit of a call is
the scorer's.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from bidder.scoring.invoke.base import (
    Invocation,
    InvocationFailed,
    SageMakerEndpoint,
    runtime_client,
)
from bidder.scoring.invoke.failures import error_kind, transport_failure


class AiobotocoreInvoker:
    def __init__(
        self, endpoint: SageMakerEndpoint, connector_args: dict[str, Any] | None = None
    ) -> None:
        self.endpoint = endpoint
        self._arguments = endpoint.invoke_arguments()
        # Extra aiohttp connector options (a custom DNS resolver, for instance).
        self._connector_args = connector_args or {}
        self._client: Any = None
        self._stack = AsyncExitStack()

    async def start(self) -> None:
        config = AioConfig(
            connect_timeout=self.endpoint.connect_timeout,
            read_timeout=self.endpoint.read_timeout,
            max_pool_connections=self.endpoint.max_pool_connections,
            retries={"total_max_attempts": 1, "mode": "standard"},
            connector_args=self._connector_args,
        )
        self._client = await self._stack.enter_async_context(
            runtime_client(get_session(), self.endpoint, config)
        )

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    async def invoke(self, body: bytes, inference_id: str | None) -> Invocation:
        arguments = self._arguments
        if inference_id is not None:
            arguments = {**arguments, "InferenceId": inference_id}
        try:
            response = await self._client.invoke_endpoint(Body=body, **arguments)
            payload = await response["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            raise InvocationFailed(error_kind(status, code), str(exc)) from exc
        except ConnectTimeoutError as exc:
            raise InvocationFailed("connect_timeout") from exc
        except ReadTimeoutError as exc:
            raise InvocationFailed("read_timeout") from exc
        except (EndpointConnectionError, ConnectionClosedError, ResponseStreamingError) as exc:
            cause = exc.kwargs.get("error")
            raise InvocationFailed(transport_failure(cause), str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise InvocationFailed(transport_failure(exc), str(exc)) from exc
        return Invocation(
            payload, response.get("ContentType"), response.get("InvokedProductionVariant")
        )
