"""What an invoker is: one `InvokeEndpoint` call, whatever HTTP client makes it.

`SageMakerScorer` owns the behaviour of a call (breaker, metrics, the overall timeout, the
payload format); an `Invoker` only puts bytes on the wire and brings the answer back, or
raises `InvocationFailed` naming the failure kind. Two invokers exist: aiobotocore, the
reference, and a lean one (aiohttp with botocore's credentials and SigV4 algorithm).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiobotocore.session import AioSession
from botocore.exceptions import NoRegionError

from bidder.errors import ConfigurationError

ClientName = Literal["aiobotocore", "aiohttp"]
SERVICE_NAME = "sagemaker-runtime"
OPERATION_NAME = "InvokeEndpoint"


@dataclass(frozen=True)
class SageMakerEndpoint:
    """Where and how to invoke; timeouts in seconds."""

    endpoint_name: str
    region: str | None = None
    endpoint_url: str | None = None
    content_type: Literal["text/csv", "application/json"] = "text/csv"
    connect_timeout: float = 0.05
    read_timeout: float = 0.05
    invoke_timeout: float = 0.08
    max_pool_connections: int = 64
    target_variant: str | None = None
    target_model: str | None = None
    custom_attributes: str | None = None
    # Send a unique InferenceId with every invocation, for SageMaker data capture to key on.
    inference_ids: bool = False
    # Which HTTP client invokes: aiobotocore (the reference) or the lean aiohttp invoker.
    client: ClientName = "aiobotocore"

    def invoke_arguments(self) -> dict[str, str]:
        """The `InvokeEndpoint` parameters every call shares (all but Body and InferenceId)."""
        arguments = {
            "EndpointName": self.endpoint_name,
            "ContentType": self.content_type,
            "Accept": self.content_type,
        }
        optional = {
            "TargetVariant": self.target_variant,
            "TargetModel": self.target_model,
            "CustomAttributes": self.custom_attributes,
        }
        arguments.update({name: value for name, value in optional.items() if value})
        return arguments


@dataclass(frozen=True, slots=True)
class Invocation:
    """A successful call's answer: the body, its media type and the variant that served it."""

    body: bytes
    content_type: str | None
    variant: str | None


class InvocationFailed(Exception):
    """A call that failed; `kind` is its label in `bidder_model_call_failures_total`."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class Invoker(Protocol):
    """Sends one invocation's body to the endpoint; raises `InvocationFailed` on failure."""

    async def start(self) -> None:
        """Open the pooled connections and everything resolved once per process."""
        ...

    async def close(self) -> None: ...

    async def invoke(self, body: bytes, inference_id: str | None) -> Invocation: ...


@asynccontextmanager
async def runtime_client(
    session: AioSession, endpoint: SageMakerEndpoint, config: Any = None
) -> AsyncIterator[Any]:
    """A `sagemaker-runtime` client whose region and URL botocore resolves as it always does;
    a process without a region, or without credentials in the standard chain, is refused."""
    try:
        async with session.create_client(
            SERVICE_NAME,
            region_name=endpoint.region,
            endpoint_url=endpoint.endpoint_url,
            config=config,
        ) as client:
            if await session.get_credentials() is None:
                raise ConfigurationError(
                    "the SageMaker scorer found no AWS credentials in the standard chain "
                    "(environment, profile, container or instance role)"
                )
            yield client
    except NoRegionError:
        raise ConfigurationError(
            "the SageMaker scorer needs a region: set BIDDER_SAGEMAKER_REGION "
            "or AWS_DEFAULT_REGION, or configure one in the AWS profile"
        ) from None
