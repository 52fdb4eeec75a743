"""Decoding and validating bid requests: bytes in, a `BidRequest` or an `InvalidRequest` out.

Decoding is done by msgspec against the typed structs in `model`, which checks JSON syntax,
UTF-8, types and numeric bounds in one pass; the rules that span several fields (unique
impression ids, one media object per impression, one of site/app/dooh) are checked after.
Every failure becomes an `InvalidRequest` whose message starts with the field path, in the
form `imp[0].bidfloor: expected a number`.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec
import numpy as np

from bidder.errors import InvalidRequest
from bidder.openrtb.model import BidRequest, Imp

DEFAULT_MAX_IMPS: Final = 100
DEFAULT_MAX_JSON_DEPTH: Final = 64

_DECODER: Final = msgspec.json.Decoder(BidRequest)

_TYPE_NAMES: Final = {
    "float": "a number",
    "int": "an integer",
    "str": "a string",
    "bool": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}

_EXPECTED: Final = re.compile(
    r"^Expected `(?P<expected>[^`]+)`(?P<bound>[^,]*?)"
    r"(?:, got `(?P<got>[^`]+)`)?(?: - at `(?P<at>[^`]*)`)?$"
)
_AT: Final = re.compile(r"^(?P<text>.*?)(?: - at `(?P<at>[^`]*)`)?$")
_BYTE_POSITION: Final = re.compile(r"\((byte \d+)\)")
_MISSING: Final = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")

# Opening brackets become +1 and closing ones -1 (0xFF as int8); every other byte is dropped.
_BRACKET_STEPS: Final = bytes(
    1 if byte in b"[{" else 0xFF if byte in b"]}" else 0 for byte in range(256)
)
_NOT_BRACKETS: Final = bytes(byte for byte in range(256) if byte not in b"[]{}")


def decode_bid_request(
    body: bytes, *, max_imps: int = DEFAULT_MAX_IMPS, max_depth: int = DEFAULT_MAX_JSON_DEPTH
) -> BidRequest:
    """Decode and validate one OpenRTB 2.5/2.6 bid request.

    `max_depth` bounds the nesting of arrays and objects anywhere in the body, `ext` objects
    included. Raises `InvalidRequest` for anything that is not a valid request, never
    another error.
    """
    if _nests_deeper_than(body, max_depth):
        raise InvalidRequest(f"body: JSON nested too deeply (limit {max_depth} levels)")
    try:
        request = _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        raise _from_validation_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(_describe_decode_error(str(exc))) from None
    except UnicodeDecodeError:
        raise InvalidRequest("body: not valid UTF-8") from None
    except RecursionError:
        # Only malformed JSON can slip past the depth check (its strings cannot be told
        # apart); msgspec then refuses it before the interpreter's stack runs out.
        raise InvalidRequest("body: JSON nested too deeply") from None
    validate_bid_request(request, max_imps=max_imps)
    return request


def _nests_deeper_than(body: bytes, limit: int) -> bool:
    """Whether arrays and objects in `body` nest deeper than `limit` at any point, brackets
    inside strings not counted (a native request is JSON inside a string)."""
    # Well-formed JSON nested d deep holds at least 2d brackets, so a body with at most twice
    # the limit passes on one C-speed pass (every usual request); malformed JSON is msgspec's.
    if len(body.translate(None, _NOT_BRACKETS)) <= 2 * limit:
        return False
    # Without its escaped backslashes and quotes, every other piece between quotes is
    # outside a string. Everything here runs in C and is linear in the body's size.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside_strings = b"".join(unescaped.split(b'"')[::2])
    steps = outside_strings.translate(_BRACKET_STEPS, _NOT_BRACKETS)
    depths = np.cumsum(np.frombuffer(steps, dtype=np.int8), dtype=np.int64)
    return bool(depths.size) and int(depths.max()) > limit


def validate_bid_request(request: BidRequest, *, max_imps: int = DEFAULT_MAX_IMPS) -> None:
    """Check the specification's cross-field rules on a decoded request."""
    if not request.id:
        raise InvalidRequest(_missing_or_empty(request.id), "id")
    imps = request.imp
    if imps is None:
        raise InvalidRequest("required field missing", "imp")
    if not imps:
        raise InvalidRequest("must contain at least one impression", "imp")
    if len(imps) > max_imps:
        raise InvalidRequest(f"too many impressions ({len(imps)}, limit {max_imps})", "imp")
    seen: set[str] = set()
    for index, imp in enumerate(imps):
        _validate_imp(imp, f"imp[{index}]")
        assert imp.id is not None
        if imp.id in seen:
            raise InvalidRequest(f"duplicate impression id {imp.id!r}", f"imp[{index}].id")
        seen.add(imp.id)
    present = [name for name in ("site", "app", "dooh") if getattr(request, name) is not None]
    if len(present) > 1:
        raise InvalidRequest("at most one of site, app and dooh may be present", present[1])


def _validate_imp(imp: Imp, path: str) -> None:
    if not imp.id:
        raise InvalidRequest(_missing_or_empty(imp.id), f"{path}.id")
    if imp.banner is None and imp.video is None and imp.audio is None and imp.native is None:
        raise InvalidRequest("must offer at least one of banner, video, audio or native", path)
    if imp.video is not None and not imp.video.mimes:
        raise InvalidRequest(_missing_or_empty(imp.video.mimes), f"{path}.video.mimes")
    if imp.audio is not None and not imp.audio.mimes:
        raise InvalidRequest(_missing_or_empty(imp.audio.mimes), f"{path}.audio.mimes")
    if imp.native is not None and imp.native.request is None:
        raise InvalidRequest("required field missing", f"{path}.native.request")
    if imp.pmp is not None and imp.pmp.deals:
        for index, deal in enumerate(imp.pmp.deals):
            if not deal.id:
                raise InvalidRequest(_missing_or_empty(deal.id), f"{path}.pmp.deals[{index}].id")


def _missing_or_empty(value: object) -> str:
    return "required field missing" if value is None else "must not be empty"


def _from_validation_error(text: str) -> InvalidRequest:
    """Turn msgspec's `Expected `float`, got `str` - at `$.imp[0].bidfloor`` into our form."""
    match = _EXPECTED.match(text)
    if match:
        expected = _describe_types(match["expected"])
        bound = match["bound"].strip()
        message = f"expected {expected}" + (f" {_trim_bound(bound)}" if bound else "")
        if match["got"]:
            message += f", got {_describe_types(match['got'])}"
        return InvalidRequest(message, _path(match["at"]))
    generic = _AT.match(text)
    assert generic is not None  # the pattern matches any string
    missing = _MISSING.match(generic["text"])
    if missing:
        return InvalidRequest(
            "required field missing", _join(_path(generic["at"]), missing["field"])
        )
    return InvalidRequest(generic["text"][:1].lower() + generic["text"][1:], _path(generic["at"]))


def _describe_types(spec: str) -> str:
    names = [part.strip() for part in spec.split("|")]
    words = [_TYPE_NAMES.get(name, name) for name in names if name != "null"] or ["null"]
    return " or ".join(words)


def _trim_bound(bound: str) -> str:
    # msgspec prints float bounds as `>= 0.0`; `>= 0` reads better and means the same.
    return re.sub(r"(\d)\.0\b", r"\1", bound)


def _path(at: str | None) -> str:
    if not at or at == "$":
        return "request"
    return at.removeprefix("$.")


def _join(parent: str, child: str) -> str:
    return child if parent == "request" else f"{parent}.{child}"


def _describe_decode_error(text: str) -> str:
    if "truncated" in text:
        return "body: invalid JSON (truncated)"
    detail = _BYTE_POSITION.sub(r"at \1", text.removeprefix("JSON is malformed: "))
    return f"body: invalid JSON ({detail})"
