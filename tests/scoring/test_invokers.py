"""Both invokers, aiobotocore (the reference) and the lean aiohttp one, put the same request
on the wire, signed as botocore signs it, and read answers and errors the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bidder.scoring.invoke import ClientName, InvocationFailed, SageMakerEndpoint, make_invoker

ACCESS_KEY, SECRET_KEY, TOKEN = "AKIDINVOKETEST", "invoke-test-secret", "invoke-test-token"
CLIENTS: tuple[ClientName, ...] = ("aiobotocore", "aiohttp")


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@dataclass
class Captured:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class CaptureServer:
    """Records every request; answers with `answer` (status, headers, body)."""

    url: str = ""
    requests: list[Captured] = field(default_factory=list)
    answer: tuple[int, dict[str, str], bytes] = (200, {"Content-Type": "text/csv"}, b"0.25\n")

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            Captured(
                request.method,
                request.raw_path.split("?", 1)[0],
                request.query_string,
                {name.lower(): value for name, value in request.headers.items()},
                await request.read(),
            )
        )
        status, headers, body = self.answer
        return web.Response(status=status, headers=headers, body=body)


@pytest.fixture
async def server() -> AsyncIterator[CaptureServer]:
    capture = CaptureServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", capture.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    capture.url = f"http://127.0.0.1:{port}"
    yield capture
    await runner.cleanup()


def endpoint(url: str, client: ClientName) -> SageMakerEndpoint:
    return SageMakerEndpoint(
        endpoint_name="bid model/v2",  # a name that needs URL-encoding in the path
        endpoint_url=url,
        client=client,
        target_variant="blue",
        custom_attributes="campaign=7",
        connect_timeout=2,
        read_timeout=2,
    )


async def invoke(url: str, client: ClientName, body: bytes, inference_id: str | None) -> Any:
    invoker = make_invoker(endpoint(url, client), None)
    await invoker.start()
    try:
        return await invoker.invoke(body, inference_id)
    finally:
        await invoker.close()


def signed_part(captured: Captured) -> tuple[list[str], dict[str, str], str]:
    """The signed header names, their values, and the signature, from Authorization."""
    algorithm, fields = captured.headers["authorization"].split(" ", 1)
    assert algorithm == "AWS4-HMAC-SHA256"
    parts = dict(part.strip().split("=", 1) for part in fields.split(","))
    names = parts["SignedHeaders"].split(";")
    assert parts["Credential"].startswith(f"{ACCESS_KEY}/")
    assert parts["Credential"].endswith("/eu-west-1/sagemaker/aws4_request")
    return names, {name: captured.headers[name] for name in names}, parts["Signature"]


def botocore_signature(captured: Captured, url: str) -> str:
    """The signature botocore's own signer gives the captured request, at its own time."""
    _, signed, _ = signed_part(captured)
    request = AWSRequest(
        method=captured.method,
        url=f"{url}{captured.path}" + (f"?{captured.query}" if captured.query else ""),
        headers={name: value for name, value in signed.items() if name != "host"},
        data=captured.body,
    )
    request.context["timestamp"] = signed["x-amz-date"]
    auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, TOKEN), "sagemaker", "eu-west-1")
    canonical = auth.canonical_request(request)
    signature: str = auth.signature(auth.string_to_sign(request, canonical), request)
    return signature


async def test_both_clients_send_the_same_request_signed_as_botocore_signs_it(
    server: CaptureServer,
) -> None:
    body = b"1.0,2.0,nan\n3.0,4.0,5.0"
    for client in CLIENTS:
        answer = await invoke(server.url, client, body, "inference-1")
        assert answer.body == b"0.25\n"
        assert answer.content_type == "text/csv"
    reference, lean = server.requests
    assert (lean.method, lean.path, lean.query, lean.body) == (
        reference.method,
        reference.path,
        reference.query,
        reference.body,
    )
    assert reference.path == "/endpoints/bid%20model%2Fv2/invocations"
    reference_names, reference_signed, _ = signed_part(reference)
    lean_names, lean_signed, _ = signed_part(lean)
    assert lean_names == reference_names
    # Equal but for the moment of signing.
    assert {k: v for k, v in lean_signed.items() if k != "x-amz-date"} == {
        k: v for k, v in reference_signed.items() if k != "x-amz-date"
    }
    assert lean_signed["x-amz-security-token"] == TOKEN
    assert lean_signed["x-amzn-sagemaker-inference-id"] == "inference-1"
    for captured in (reference, lean):
        assert signed_part(captured)[2] == botocore_signature(captured, server.url)


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind"),
    [
        (424, {"x-amzn-errortype": "ModelError"}, b'{"message": "failed"}', "model_error"),
        (424, {}, b'{"__type": "com.amazon.sagemaker#ModelError", "message": "x"}', "model_error"),
        (429, {}, b'{"code": "ThrottlingException", "message": "slow down"}', "throttled"),
        (400, {}, b'{"Code": "ValidationError", "Message": "bad body"}', "validation_error"),
        (503, {}, b"", "service_unavailable"),
        (500, {}, b"<html>proxy error</html>", "internal_failure"),
        (403, {}, b'{"__type": "AccessDeniedException"}', "client_error"),
    ],
)
async def test_both_clients_read_errors_as_the_same_failure_kind(
    server: CaptureServer, status: int, headers: dict[str, str], body: bytes, kind: str
) -> None:
    server.answer = (status, {"Content-Type": "application/json", **headers}, body)
    for client in CLIENTS:
        with pytest.raises(InvocationFailed) as caught:
            await invoke(server.url, client, b"1,2,3", None)
        assert caught.value.kind == kind, client
    assert len(server.requests) == 2, "one call each: no retries"
