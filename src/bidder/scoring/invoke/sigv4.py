"""AWS Signature Version 4 for requests to one URL, by botocore's algorithm, at a lower cost.

botocore's `SigV4Auth` builds an `AWSRequest`, re-parses the URL and derives the signing key
(four HMACs) on every call: about 45 µs. The URL of every invocation is the same, so its
host, canonical path and query are worked out once (with botocore's own functions), the
signing key is kept for as long as the date and the secret key stay the same, and a
signature costs two SHA-256 hashes and one HMAC. The tests check that the result equals
`SigV4Auth`'s, header for header, for the same time and credentials.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote, urlsplit

from botocore.auth import SIGNED_HEADERS_BLACKLIST, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.utils import normalize_url_path

ALGORITHM: Final = "AWS4-HMAC-SHA256"
_UNSIGNED_HEADERS: Final = frozenset(SIGNED_HEADERS_BLACKLIST)


class SigV4Signer:
    """Signs requests with `method` to `url` for `service` in `region`."""

    def __init__(self, *, method: str, url: str, region: str, service: str) -> None:
        self.method = method.upper()
        self.region = region
        self.service = service
        template = AWSRequest(method=self.method, url=url)
        reference = SigV4Auth(None, service, region)
        # The Host header botocore signs: lower case, default port left out, IPv6 bracketed.
        self.host: str = reference.headers_to_sign(template)["host"]
        self._canonical_path = quote(normalize_url_path(urlsplit(url).path), safe="/~")
        self._canonical_query: str = reference.canonical_query_string(template)
        self._second = -1
        self._timestamp = ""
        self._key_for: tuple[str, str] = ("", "")
        self._key = b""

    def sign(
        self,
        headers: Mapping[str, str],
        body: bytes,
        credentials: ReadOnlyCredentials,
        now: float | None = None,
    ) -> dict[str, str]:
        """The headers to add to a request with these headers and body: `X-Amz-Date`,
        `X-Amz-Security-Token` (temporary credentials only) and `Authorization`."""
        timestamp = self._timestamp_of(time.time() if now is None else now)
        added = {"X-Amz-Date": timestamp}
        if credentials.token:
            added["X-Amz-Security-Token"] = credentials.token
        canonical = {"host": self.host}
        for name, value in (*headers.items(), *added.items()):
            lower = name.lower()
            if lower not in _UNSIGNED_HEADERS:
                canonical[lower] = " ".join(value.split())
        names = sorted(canonical)
        signed_headers = ";".join(names)
        canonical_request = "\n".join(
            (
                self.method,
                self._canonical_path,
                self._canonical_query,
                "".join(f"{name}:{canonical[name]}\n" for name in names),
                signed_headers,
                hashlib.sha256(body).hexdigest(),
            )
        )
        date = timestamp[:8]
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        string_to_sign = (
            f"{ALGORITHM}\n{timestamp}\n{scope}\n"
            + hashlib.sha256(canonical_request.encode()).hexdigest()
        )
        signature = hmac.new(
            self._signing_key(credentials.secret_key, date),
            string_to_sign.encode(),
            hashlib.sha256,
        ).hexdigest()
        added["Authorization"] = (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        return added

    def _timestamp_of(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._timestamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        return self._timestamp

    def _signing_key(self, secret_key: str, date: str) -> bytes:
        """The day's key for this region and service; derived again only when the date or
        the secret key (after a credential refresh) changes."""
        if self._key_for != (secret_key, date):
            key = f"AWS4{secret_key}".encode()
            for part in (date, self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._key_for = (secret_key, date)
            self._key = key
        return self._key
