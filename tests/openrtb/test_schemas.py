"""Conformance: the OpenRTB corpus against the parser and the JSON Schemas in `openrtb_schemas/`.

Every valid request must be accepted by `decode_bid_request` and by the request schemas,
every invalid request rejected by both, every response accepted by the response schemas; where
the parser and the schemas knowingly differ, the difference is pinned by a test below and
documented in openrtb_schemas/README.md.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgspec.inspect as mi
import pytest
from jsonschema import Draft202012Validator, ValidationError

from bidder.errors import InvalidRequest
from bidder.openrtb import (
    DEFAULT_MAX_IMPS,
    Bid,
    BidRequest,
    BidResponse,
    SeatBid,
    decode_bid_request,
    encode_bid_response,
)
from tests.conftest import CORPUS
from tests.schemas import KINDS, VERSIONS, Kind, Version, load_schema, validator

MISSING: Final = "corpus-missing"

# Files of `valid/` that break a rule of the specification the parser does not check. The
# schemas reject them, at exactly the paths given; the parser accepts them.
SPEC_VIOLATIONS: Final[dict[str, set[str]]] = {
    # `ext` must be an object (§3.2 and §2.9); this request carries the string "test-ext" in
    # source.ext and, in 2.6 where `schain` is a Source field, in schain.ext and its node's ext.
    # The parser never looks inside `source`, so it accepts the request.
    "495_prebid-adapter-tadvertising_blis.json": {
        "source.ext",
        "source.schain.ext",
        "source.schain.nodes[0].ext",
    },
}

# Files of `invalid/` that a schema cannot reject, and why.
SCHEMA_CANNOT_REJECT: Final[dict[str, dict[Version, str]]] = {
    "012_imp-id-duplicates.json": {
        "2.5": "JSON Schema cannot express that imp ids are unique",
        "2.6": "JSON Schema cannot express that imp ids are unique",
    },
    "019_site-dooh-both.json": {
        "2.5": "dooh is not an OpenRTB 2.5 object; in a 2.5 request it is an unknown field",
    },
}

# Where the parser names a different field than prebid-server's message (the `.why.txt`).
PARSER_PATH_EXCEPTIONS: Final[dict[str, str]] = {
    # The body is `null`: prebid reports the missing `id`; the parser, rightly, that the whole
    # request is not an object.
    "016_null.json": "request",
}


def corpus_files(folder: str) -> list[Any]:
    """The corpus files of one folder as test parameters, named after the files.

    When the corpus is missing a single placeholder is returned, so that the tests run and
    fail on the `corpus` fixture's message instead of being skipped for lack of parameters.
    """
    directory = CORPUS / folder
    names = sorted(path.name for path in directory.glob("*.json")) if directory.is_dir() else []
    return [pytest.param(name, id=name.removesuffix(".json")) for name in names] or [
        pytest.param(MISSING, id=MISSING)
    ]


VALID: Final = corpus_files("valid")
INVALID: Final = corpus_files("invalid")
RESPONSES: Final = corpus_files("responses")


def read(corpus: Path, folder: str, name: str) -> bytes:
    path = corpus / folder / name
    assert path.is_file(), f"{path} is missing from the corpus"
    return path.read_bytes()


def schema_errors(kind: Kind, version: Version, body: bytes) -> list[str]:
    """Each error as `path: message`; a body that is not JSON is one error at the root."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        return [f"$: not JSON ({exc})"]
    return [
        f"{error.json_path}: {error.message}"
        for error in validator(kind, version).iter_errors(document)
    ]


def instance_path(error: ValidationError) -> str:
    """`imp[0].banner.h` for an error at $.imp[0].banner.h; the empty string for the root."""
    return "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
    ).removeprefix(".")


def is_within(path: str, ancestor: str) -> bool:
    return not ancestor or path == ancestor or path.startswith((f"{ancestor}.", f"{ancestor}["))


def why_paths(why: str) -> list[str]:
    """The field paths prebid-server's message names, without the `request.` prefix.

    `request.imp[0].pmp.deals[0] missing required field: "id"` names `imp[0].pmp.deals[0].id`;
    `request missing required field: "id"` names `id`.
    """
    text = why.strip().removeprefix("Invalid request:").strip()
    missing = re.search(r'missing required (?:field|property):? "(\w+)"', text)
    unquoted = re.sub(r'"[^"]*"', '""', text)
    paths = [
        match[1].removeprefix(".")
        for match in re.finditer(r"\brequest((?:\.\w+|\[\d+\])*)", unquoted)
    ]
    if missing and paths:
        paths[0] = f"{paths[0]}.{missing[1]}".removeprefix(".")
    return paths


# ---------------------------------------------------------------------------- the schemas


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_draft_2020_12(kind: Kind, version: Version) -> None:
    schema = load_schema(kind, version)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:bidder:openrtb:{kind}:{version}"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_ext_is_an_object_and_unknown_fields_are_allowed(
    kind: Kind, version: Version
) -> None:
    schema = load_schema(kind, version)
    assert schema["$defs"]["ext"] == {
        "description": schema["$defs"]["ext"]["description"],
        "type": "object",
    }
    for name, definition in schema["$defs"].items():
        assert "additionalProperties" not in definition, name
        assert "unevaluatedProperties" not in definition, name
        if "properties" in definition:
            assert definition["properties"].get("ext", {"$ref": "#/$defs/ext"}) == {
                "$ref": "#/$defs/ext"
            }, name


def test_the_imp_id_uniqueness_limit_is_stated_in_the_schemas() -> None:
    for version in VERSIONS:
        imp = load_schema("bid-request", version)["$defs"]["BidRequest"]["properties"]["imp"]
        assert "unique" in imp["$comment"]


def test_the_corpus_is_there(corpus: Path) -> None:
    for folder in ("valid", "invalid", "responses"):
        assert sorted((corpus / folder).glob("*.json")), f"{corpus / folder} has no file"
    for path in (corpus / "invalid").glob("*.json"):
        assert path.with_suffix(".why.txt").is_file(), f"{path.name} has no .why.txt"
    for name in [*SPEC_VIOLATIONS, *SCHEMA_CANNOT_REJECT, *PARSER_PATH_EXCEPTIONS]:
        assert any((corpus / folder / name).is_file() for folder in ("valid", "invalid")), name


# The rules of decode.py's validate_bid_request that go beyond a field's type and bounds.
NON_EMPTY: Final = {
    ("BidRequest", "id"),
    ("BidRequest", "imp"),
    ("Imp", "id"),
    ("Deal", "id"),
    ("Video", "mimes"),
    ("Audio", "mimes"),
}
# Fields the parser reads in every request that OpenRTB 2.5 does not define: to the 2.5 schema
# they are unknown fields, accepted whatever their value (see the README).
NOT_IN_25: Final = {("BidRequest", "dooh"), ("Video", "plcmt"), ("Dooh", "*")}
REQUIRED: Final = {
    "BidRequest": ["id", "imp"],
    "Imp": ["id"],
    "Video": ["mimes"],
    "Audio": ["mimes"],
    "Native": ["request"],
    "Deal": ["id"],
}


def parser_fields(struct: mi.StructType) -> list[tuple[str, str, mi.Type]]:
    """Every (struct, field, type) the parser declares, nested structs included."""
    found: list[tuple[str, str, mi.Type]] = []
    pending, seen = [struct], set()
    while pending:
        current = pending.pop()
        if current.cls in seen:
            continue
        seen.add(current.cls)
        for field in current.fields:
            found.append((current.cls.__name__, field.encode_name, field.type))
            stack: list[mi.Type] = [field.type]
            while stack:
                kind = stack.pop()
                if isinstance(kind, mi.UnionType):
                    stack.extend(kind.types)
                elif isinstance(kind, mi.ListType):
                    stack.append(kind.item_type)
                elif isinstance(kind, mi.StructType):
                    pending.append(kind)
    return found


def assert_same_constraint(kind: mi.Type, fragment: dict[str, Any], defs: dict[str, Any]) -> None:
    """The schema fragment accepts what the parser's type accepts, bound for bound."""
    if isinstance(kind, mi.UnionType):
        # `X | None`: null means absent to the parser; the schema rejects it (see the README).
        (kind,) = (member for member in kind.types if not isinstance(member, mi.NoneType))
    if "$ref" in fragment:
        name = fragment["$ref"].removeprefix("#/$defs/")
        if isinstance(kind, mi.StructType):
            assert name == kind.cls.__name__
            return  # its fields are checked on their own
        fragment = defs[name]
    if isinstance(kind, mi.IntType):
        assert fragment["type"] == "integer"
        assert (kind.gt, kind.lt, kind.multiple_of) == (None, None, None)
        assert (fragment.get("minimum"), fragment.get("maximum")) == (kind.ge, kind.le)
    elif isinstance(kind, mi.FloatType):
        assert fragment["type"] == "number"
        assert (kind.gt, kind.lt, kind.multiple_of) == (None, None, None)
        assert (fragment.get("minimum"), fragment.get("maximum")) == (kind.ge, kind.le)
    elif isinstance(kind, mi.StrType):
        assert fragment["type"] == "string"
        assert (kind.min_length, kind.max_length, kind.pattern) == (None, None, None)
    elif isinstance(kind, mi.ListType):
        assert fragment["type"] == "array"
        assert_same_constraint(kind.item_type, fragment["items"], defs)
    else:
        raise AssertionError(f"no schema mapping for {type(kind).__name__}")
    assert not {"exclusiveMinimum", "exclusiveMaximum", "enum", "const"} & fragment.keys()


@pytest.mark.parametrize("version", VERSIONS)
def test_the_schema_constrains_every_parser_field_as_the_parser_does(version: Version) -> None:
    defs = load_schema("bid-request", version)["$defs"]
    info = mi.type_info(BidRequest)
    assert isinstance(info, mi.StructType)
    fields = parser_fields(info)
    assert len(fields) > 50
    for struct, name, kind in fields:
        where = f"{struct}.{name} ({version})"
        if version == "2.5" and {(struct, name), (struct, "*")} & NOT_IN_25:
            assert name not in defs.get(struct, {}).get("properties", {}), where
            continue
        fragment = defs[struct]["properties"].get(name)
        assert fragment is not None, f"{where} is declared by the parser, not by the schema"
        try:
            assert_same_constraint(kind, fragment, defs)
        except AssertionError as exc:
            raise AssertionError(f"{where}: schema {fragment!r}; {exc}") from exc
        extra = {"minLength", "minItems"} & fragment.keys()
        assert bool(extra) == ((struct, name) in NON_EMPTY), where
    for struct, required in REQUIRED.items():
        assert defs[struct]["required"] == required, struct
    assert defs["Imp"]["anyOf"] == [
        {"required": [media]} for media in ("banner", "video", "audio", "native")
    ]


# ------------------------------------------------------------------------ valid requests


@pytest.mark.parametrize("name", VALID)
def test_valid_request_is_accepted_by_the_parser(corpus: Path, name: str) -> None:
    request = decode_bid_request(read(corpus, "valid", name))
    assert request.id
    assert request.imp


# Unknown fields are allowed, so a 2.6-only object (dooh, sua, eids, ...) is an unknown field
# to the 2.5 schema: every valid request is checked against both versions.
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", VALID)
def test_valid_request_is_accepted_by_the_schema(corpus: Path, name: str, version: Version) -> None:
    document = json.loads(read(corpus, "valid", name))
    errors = list(validator("bid-request", version).iter_errors(document))
    if name not in SPEC_VIOLATIONS:
        assert not errors, [f"{error.json_path}: {error.message}" for error in errors]
        return
    # A known violation: rejected exactly where, and only where, the specification is broken.
    assert errors
    for error in errors:
        assert error.validator == "type", error.message
        assert error.validator_value == "object", error.message
        assert instance_path(error) in SPEC_VIOLATIONS[name], error.json_path


# ---------------------------------------------------------------------- invalid requests


@pytest.mark.parametrize("name", INVALID)
def test_invalid_request_is_rejected_by_the_parser(corpus: Path, name: str) -> None:
    body = read(corpus, "invalid", name)
    why = (corpus / "invalid" / name).with_suffix(".why.txt").read_text(encoding="utf-8")
    with pytest.raises(InvalidRequest) as raised:
        decode_bid_request(body)
    error = raised.value
    message = str(error)
    assert message
    expected = why_paths(why)
    if name in PARSER_PATH_EXCEPTIONS:
        assert error.path == PARSER_PATH_EXCEPTIONS[name], message
    elif expected:
        # The parser names one of the fields prebid-server names, and its message says so.
        assert error.path in expected, f"parser: {message!r}; prebid-server: {why.strip()!r}"
    else:
        # No field to name: the body is not JSON at all.
        assert message.startswith("body: invalid JSON"), message
    if error.path:
        assert message.startswith(f"{error.path}: "), message
        assert len(message) > len(error.path) + 2, message


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", INVALID)
def test_invalid_request_is_rejected_by_the_schema(
    corpus: Path, name: str, version: Version
) -> None:
    body = read(corpus, "invalid", name)
    why = (corpus / "invalid" / name).with_suffix(".why.txt").read_text(encoding="utf-8")
    reason = SCHEMA_CANNOT_REJECT.get(name, {}).get(version)
    try:
        document = json.loads(body)
    except ValueError:
        assert reason is None
        return  # not JSON: rejected before any schema applies
    errors = list(validator("bid-request", version).iter_errors(document))
    messages = [f"{error.json_path}: {error.message}" for error in errors]
    if reason is not None:
        # A documented limit; if the schema ever rejects the file, update the docs and this test.
        assert not errors, f"{name} is now rejected ({messages}); it was accepted as {reason}"
        return
    assert errors, f"the {version} schema accepts {name}: {why.strip()}"
    # At least one error is at, or above, a field prebid-server names.
    paths = [instance_path(error) for error in errors]
    assert any(is_within(field, path) for field in why_paths(why) for path in paths), messages


# ----------------------------------------------------------------------------- responses


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", RESPONSES)
def test_response_is_accepted_by_the_schema(corpus: Path, name: str, version: Version) -> None:
    errors = schema_errors("bid-response", version, read(corpus, "responses", name))
    assert not errors, errors


@pytest.mark.parametrize("version", VERSIONS)
def test_the_bidders_own_responses_are_valid(version: Version) -> None:
    bid = Bid(
        id="b1",
        impid="1",
        price=0.42,
        adomain=["advertiser.example"],
        crid="creative-1",
        cat=["IAB1"],
        attr=[1, 2],
        w=300,
        h=250,
        adm="<div></div>",
        nurl="https://bidder.example/win?price=${AUCTION_PRICE}",
        adid="ad-1",
    )
    for response in (
        BidResponse(id="req-1", seatbid=[SeatBid(bid=[bid], seat="seat-1")], cur="USD"),
        BidResponse(
            id="req-1", seatbid=[SeatBid(bid=[Bid(id="b", impid="1", price=0)])], cur="EUR"
        ),
    ):
        document = json.loads(encode_bid_response(response))
        validator("bid-response", version).validate(document)


RESPONSE: Final[dict[str, Any]] = {
    "id": "req-1",
    "cur": "USD",
    "seatbid": [{"seat": "s", "bid": [{"id": "b1", "impid": "1", "price": 1.25, "mtype": 1}]}],
}


@pytest.mark.parametrize(
    ("change", "valid"),
    [
        pytest.param(lambda r: None, True, id="minimal"),
        pytest.param(lambda r: r.pop("seatbid"), True, id="no-bid-without-seatbid"),
        pytest.param(lambda r: r.update(seatbid=[], nbr=2), True, id="no-bid-empty-seatbid"),
        pytest.param(lambda r: r.pop("cur"), True, id="cur-defaults-to-usd"),
        pytest.param(lambda r: r.pop("id"), False, id="no-id"),
        pytest.param(lambda r: r.update(cur=["USD"]), False, id="cur-not-a-string"),
        pytest.param(lambda r: r["seatbid"][0].update(bid=[]), False, id="seatbid-without-bid"),
        pytest.param(lambda r: r["seatbid"][0]["bid"][0].pop("impid"), False, id="no-impid"),
        pytest.param(lambda r: r["seatbid"][0]["bid"][0].pop("price"), False, id="no-price"),
        pytest.param(lambda r: r["seatbid"][0]["bid"][0].update(price="1"), False, id="price-str"),
        pytest.param(lambda r: r["seatbid"][0]["bid"][0].update(price=-1), False, id="price-neg"),
        pytest.param(lambda r: r["seatbid"][0]["bid"][0].update(w=-1), False, id="w-negative"),
        pytest.param(lambda r: r["seatbid"][0]["bid"][0].update(mtype=5), False, id="mtype-5"),
        pytest.param(lambda r: r["seatbid"][0]["bid"][0].update(dur=-1), False, id="dur-neg"),
        pytest.param(lambda r: r["seatbid"][0]["bid"][0].update(apis=[3, 7]), True, id="apis"),
        pytest.param(lambda r: r["seatbid"][0]["bid"][0].update(ext="x"), False, id="ext-str"),
    ],
)
def test_response_schema_rules(change: Callable[[dict[str, Any]], object], valid: bool) -> None:
    response = copy.deepcopy(RESPONSE)
    change(response)
    assert validator("bid-response", "2.6").is_valid(response) is valid


# ------------------------------------------- the parser and the schemas agree, field by field

REQUEST: Final[dict[str, Any]] = {
    "id": "req-1",
    "imp": [{"id": "1", "banner": {"w": 300, "h": 250, "format": [{"w": 300, "h": 250}]}}],
    "site": {"page": "https://example.com/"},
    "device": {"w": 390, "h": 844, "geo": {"lat": 52.5, "lon": 13.4, "utcoffset": 60}},
    "tmax": 120,
}

Change = Callable[[dict[str, Any]], object]


def imp(request: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = request["imp"][0]
    return first


AGREED: Final[list[Any]] = [
    pytest.param(lambda r: None, True, id="base"),
    pytest.param(lambda r: imp(r)["banner"].update(w=2**31 - 1), True, id="w-int32-max"),
    pytest.param(lambda r: imp(r)["banner"].update(w=2**31), False, id="w-over-int32"),
    pytest.param(lambda r: imp(r)["banner"].update(w=0), True, id="w-zero"),
    pytest.param(lambda r: imp(r)["banner"].update(h=-1), False, id="h-negative"),
    pytest.param(lambda r: imp(r)["banner"].update(w="300"), False, id="w-string"),
    pytest.param(lambda r: imp(r)["banner"].update(w=True), False, id="w-boolean"),
    pytest.param(lambda r: imp(r)["banner"].update(btype=["1"]), False, id="btype-strings"),
    pytest.param(lambda r: imp(r)["banner"].update(battr=[2**31]), False, id="battr-over"),
    pytest.param(lambda r: imp(r)["banner"]["format"][0].update(wratio=-1), False, id="wratio"),
    pytest.param(lambda r: imp(r).update(banner=[{}]), False, id="banner-array"),
    pytest.param(lambda r: imp(r).update(bidfloor=0), True, id="bidfloor-zero"),
    pytest.param(lambda r: imp(r).update(bidfloor=1.5), True, id="bidfloor-float"),
    pytest.param(lambda r: imp(r).update(bidfloor=-0.01), False, id="bidfloor-negative"),
    pytest.param(lambda r: imp(r).update(bidfloor="1"), False, id="bidfloor-string"),
    pytest.param(lambda r: imp(r).update(bidfloorcur=1), False, id="bidfloorcur-number"),
    pytest.param(lambda r: imp(r).update(secure=True), False, id="secure-boolean"),
    pytest.param(lambda r: imp(r).update(instl=-(2**31) - 1), False, id="instl-under-int32"),
    pytest.param(lambda r: imp(r).update(id=""), False, id="imp-id-empty"),
    pytest.param(lambda r: imp(r).update(id=1), False, id="imp-id-number"),
    pytest.param(lambda r: imp(r).pop("banner"), False, id="imp-no-media"),
    pytest.param(lambda r: imp(r).update(video={"mimes": ["video/mp4"]}), True, id="video"),
    pytest.param(lambda r: imp(r).update(video={"mimes": "video/mp4"}), False, id="mimes-str"),
    pytest.param(lambda r: imp(r).update(video={"mimes": [1]}), False, id="mimes-numbers"),
    pytest.param(
        lambda r: imp(r).update(video={"mimes": ["v/mp4"], "maxduration": -5}), False, id="maxdur"
    ),
    pytest.param(lambda r: imp(r).update(audio={"mimes": []}), False, id="audio-mimes-empty"),
    pytest.param(lambda r: imp(r).update(native={"request": ""}), True, id="native-empty-string"),
    pytest.param(lambda r: imp(r).update(native={"request": {}}), False, id="native-object"),
    pytest.param(lambda r: imp(r).update(native={"ver": "1.2"}), False, id="native-no-request"),
    pytest.param(lambda r: imp(r).update(pmp={"deals": [{"id": "d"}]}), True, id="deal"),
    pytest.param(lambda r: imp(r).update(pmp={"deals": [{"id": ""}]}), False, id="deal-id-empty"),
    pytest.param(lambda r: imp(r).update(pmp={"deals": [{}]}), False, id="deal-no-id"),
    pytest.param(
        lambda r: imp(r).update(pmp={"deals": [{"id": "d", "bidfloor": -1}]}), False, id="deal-flr"
    ),
    pytest.param(lambda r: r.update(id=""), False, id="request-id-empty"),
    pytest.param(lambda r: r.update(imp={"id": "1"}), False, id="imp-not-an-array"),
    pytest.param(lambda r: r.update(tmax=0), True, id="tmax-zero"),
    pytest.param(lambda r: r.update(tmax=-1), False, id="tmax-negative"),
    pytest.param(lambda r: r.update(cur="USD"), False, id="cur-not-an-array"),
    pytest.param(lambda r: r.update(app={"bundle": "b"}), False, id="site-and-app"),
    pytest.param(lambda r: (r.pop("site"), r.update(app={}, dooh={})), False, id="app-and-dooh"),
    pytest.param(lambda r: (r.pop("site"), r.update(dooh={"id": "s"})), True, id="dooh-only"),
    pytest.param(lambda r: r["site"].update(cat="IAB1"), False, id="site-cat-not-an-array"),
    pytest.param(lambda r: r["device"].update(w=-1), False, id="device-w-negative"),
    pytest.param(lambda r: r["device"]["geo"].update(utcoffset=-600), True, id="utcoffset"),
    pytest.param(lambda r: r["device"]["geo"].update(lat="52"), False, id="lat-string"),
    # The specification's -90..90 range is not enforced by either (see the README).
    pytest.param(lambda r: r["device"]["geo"].update(lat=91.0), True, id="lat-out-of-range"),
]


@pytest.mark.parametrize(("change", "valid"), AGREED)
def test_parser_and_schemas_agree(change: Change, valid: bool) -> None:
    request = copy.deepcopy(REQUEST)
    change(request)
    body = json.dumps(request).encode()
    try:
        decode_bid_request(body)
        parsed = True
    except InvalidRequest:
        parsed = False
    assert parsed is valid, "parser"
    for version in VERSIONS:
        if version == "2.5" and "dooh" in request and not valid:
            continue  # dooh is an unknown field to 2.5
        assert validator("bid-request", version).is_valid(request) is valid, version


# Each divergence the README documents: (change, accepted by the parser, accepted by the schema).
DIVERGENCES: Final[list[Any]] = [
    pytest.param(
        lambda r: imp(r)["banner"].update(w=300.0), False, True, id="integral-float-for-integer"
    ),
    pytest.param(lambda r: r.update(site=None), True, False, id="null-for-an-optional-object"),
    pytest.param(lambda r: imp(r)["banner"].update(w=None), True, False, id="null-for-an-int"),
    pytest.param(lambda r: imp(r).update(ext="x"), True, False, id="ext-not-an-object"),
    pytest.param(lambda r: r.update(source={"fd": "1"}), True, False, id="undeclared-field"),
    pytest.param(lambda r: r["imp"].append(imp(r)), False, True, id="duplicate-imp-ids"),
    pytest.param(
        lambda r: r.update(imp=[{"id": str(i), "banner": {}} for i in range(DEFAULT_MAX_IMPS + 1)]),
        False,
        True,
        id="more-imps-than-the-parser-limit",
    ),
]


@pytest.mark.parametrize(("change", "by_parser", "by_schema"), DIVERGENCES)
def test_documented_divergences(change: Change, by_parser: bool, by_schema: bool) -> None:
    request = copy.deepcopy(REQUEST)
    change(request)
    try:
        decode_bid_request(json.dumps(request).encode())
        parsed = True
    except InvalidRequest:
        parsed = False
    assert parsed is by_parser
    for version in VERSIONS:
        assert validator("bid-request", version).is_valid(request) is by_schema, version


def test_fields_the_parser_reads_that_25_does_not_define() -> None:
    """`plcmt` is a 2.6 field: the parser checks it in every request, the 2.5 schema does not."""
    request = copy.deepcopy(REQUEST)
    imp(request).update(video={"mimes": ["video/mp4"], "plcmt": "instream"})
    with pytest.raises(InvalidRequest, match=r"imp\[0\]\.video\.plcmt"):
        decode_bid_request(json.dumps(request).encode())
    assert not validator("bid-request", "2.6").is_valid(request)
    assert validator("bid-request", "2.5").is_valid(request)


def test_a_number_beyond_the_double_range() -> None:
    """`1e400` is out of range for the parser; Python's json reads it as inf, which passes."""
    body = b'{"id": "1", "imp": [{"id": "1", "banner": {}, "bidfloor": 1e400}]}'
    with pytest.raises(InvalidRequest, match="bidfloor"):
        decode_bid_request(body)
    assert validator("bid-request", "2.6").is_valid(json.loads(body))
