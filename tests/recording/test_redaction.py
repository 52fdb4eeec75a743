"""User identifiers and IP addresses hashed or dropped, everything else byte for byte."""

from __future__ import annotations

import hashlib
import hmac
import re
import shutil
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bidder.recording.redaction import IDENTIFIER_PATHS, Redactor
from bidder.recording.speedups import compiled
from bidder.traffic.synthetic import generate_bid_requests
from tests.recording.helpers import REQUESTS, formatted

KEY = b"0123456789abcdef-test-key"


@pytest.fixture(params=[False, True], ids=["decoding", "scanning"])
def valid(request: pytest.FixtureRequest) -> bool:
    """Whether the body is passed as known to be JSON: the compiled scanner edits it (where
    it is built) instead of the levels on the way being decoded and encoded again."""
    flag: bool = request.param
    return flag


def identified_request() -> dict[str, Any]:
    return {
        "id": "r1",
        "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}],
        "device": {
            "ip": "203.0.113.7",
            "ipv6": "2001:db8::7",
            "ifa": "6d92078a-8246-4ba4-ae5b-76104861e7dc",
            "dpidsha1": "aa",
            "macmd5": "bb",
            "os": "ios",
            "geo": {"country": "USA", "ip": "geo ip is not an identifier path"},
        },
        "user": {
            "id": "user-1",
            "buyeruid": 424242,
            "eids": [{"source": "id5", "uids": [{"id": "e1", "atype": 1}, {"id": "e2"}]}],
            "ext": {
                "eids": [{"source": "uid2", "uids": [{"id": "e3"}]}],
                "prebid": {"buyeruids": {"appnexus": "b1", "rubicon": "b2"}},
                "consent": "kept",
            },
        },
        "ext": {"anything": [1, 2, 3]},
    }


def mac(text: str) -> str:
    return hmac.new(KEY, text.encode(), hashlib.sha256).hexdigest()


def test_drop_removes_every_identifier_and_keeps_the_rest(valid: bool) -> None:
    body = orjson.dumps(identified_request())
    redacted = Redactor("drop").redact(body, valid=valid)
    assert redacted is not None
    document = orjson.loads(redacted)
    assert document["device"] == {
        "os": "ios",
        "geo": {"country": "USA", "ip": "geo ip is not an identifier path"},
    }
    assert document["user"] == {
        "eids": [{"source": "id5", "uids": [{"atype": 1}, {}]}],
        "ext": {
            "eids": [{"source": "uid2", "uids": [{}]}],
            "prebid": {"buyeruids": {}},
            "consent": "kept",
        },
    }
    original = identified_request()
    for key in ("id", "imp", "ext"):
        assert document[key] == original[key]


def test_hash_replaces_each_identifier_with_its_keyed_hmac(valid: bool) -> None:
    redacted = Redactor("hash", KEY).redact(orjson.dumps(identified_request()), valid=valid)
    assert redacted is not None
    document = orjson.loads(redacted)
    device, user = document["device"], document["user"]
    assert device["ip"] == mac("203.0.113.7")
    assert device["ipv6"] == mac("2001:db8::7")
    assert device["ifa"] == mac("6d92078a-8246-4ba4-ae5b-76104861e7dc")
    assert device["dpidsha1"] == mac("aa")
    assert device["geo"]["ip"] == "geo ip is not an identifier path"
    assert user["id"] == mac("user-1")
    assert user["buyeruid"] == mac("424242")  # a number is hashed as its JSON text
    assert [uid["id"] for uid in user["eids"][0]["uids"]] == [mac("e1"), mac("e2")]
    assert user["ext"]["eids"][0]["uids"][0]["id"] == mac("e3")
    assert user["ext"]["prebid"]["buyeruids"] == {"appnexus": mac("b1"), "rubicon": mac("b2")}
    # The same identifier hashes the same in every request, so recordings can be joined.
    again = orjson.loads(
        Redactor("hash", KEY).redact(orjson.dumps(identified_request()), valid=valid) or b""
    )
    assert again == document


def test_a_value_that_cannot_be_hashed_is_dropped_and_null_stays(valid: bool) -> None:
    body = orjson.dumps(
        {"device": {"ip": {"nested": "1.2.3.4"}, "ifa": None}, "user": {"id": True}}
    )
    document = orjson.loads(Redactor("hash", KEY).redact(body, valid=valid) or b"")
    assert document == {"device": {"ifa": None}, "user": {}}


@pytest.mark.parametrize(
    "document",
    [
        {"device": "not an object", "user": [1, 2]},
        {"user": {"eids": "not an array", "ext": None}},
        {"user": {"ext": {"prebid": {"buyeruids": ["listed", {"x": 1}]}}}},
    ],
)
def test_unexpected_shapes_are_handled_without_failing(
    document: dict[str, Any], valid: bool
) -> None:
    redacted = Redactor("drop").redact(orjson.dumps(document), valid=valid)
    assert redacted is not None
    assert b"listed" not in redacted


def test_the_body_must_be_a_json_object() -> None:
    redactor = Redactor("drop")
    assert redactor.redact(b"[1, 2]") is None
    assert redactor.redact(b"not json") is None
    assert redactor.redact(b'{"device": {"ip": "1.2.3.4"}') is None


def test_formatting_outside_the_redacted_objects_is_kept_and_lines_are_joined(valid: bool) -> None:
    body = (
        b'{"id":\n"r1",  "site": {"page":"https://news.example/a b"},\n"device":{"ip":"1.2.3.4"}}'
    )
    redacted = Redactor("drop").redact(body, valid=valid)
    if valid:  # edited in place: only the identifier goes
        expected = b'{"id": "r1",  "site": {"page":"https://news.example/a b"}, "device":{}}'
    else:  # the top level encoded again
        expected = b'{"id":"r1","site":{"page":"https://news.example/a b"},"device":{}}'
    assert redacted == expected


def test_line_breaks_inside_a_redacted_object_are_joined_too(valid: bool) -> None:
    body = b'{"user": {"id": "u1", "ext": {"consent":\n"kept"}},\r\n"device": {"geo": [1,\n2]}}'
    for redactor in (Redactor("drop"), Redactor("hash", KEY)):
        redacted = redactor.redact(body, valid=valid)
        assert redacted is not None
        assert b"\n" not in redacted
        assert b"\r" not in redacted
        assert orjson.loads(redacted)["device"] == {"geo": [1, 2]}


@pytest.mark.parametrize(
    "body",
    [
        # Keys written with escapes.
        b'{"device": {"\\u0069p": "203.0.113.7", "os": "ios"}, "user": {"\\u0069d": "u1"}}',
        # A duplicate member: a decoder reads the last, the first must not keep its id.
        b'{"device": {"ip": "203.0.113.7"}, "user": {}, "device": {"ip": "198.51.100.1"}}',
    ],
)
def test_escaped_keys_and_duplicate_members_hide_no_identifier(body: bytes, valid: bool) -> None:
    redacted = Redactor("drop").redact(body, valid=valid)
    assert redacted is not None
    document = orjson.loads(redacted)
    assert document["device"] == ({"os": "ios"} if b"os" in body else {})
    assert b"198.51.100.1" not in redacted
    assert b"u1" not in redacted
    assert b"203.0.113.7" not in redacted


def test_hash_mode_needs_a_key_and_paths_must_not_nest() -> None:
    with pytest.raises(ValueError, match="needs a key"):
        Redactor("hash")
    with pytest.raises(ValueError, match="both an identifier and the way"):
        Redactor("drop", paths=[*IDENTIFIER_PATHS, ("user", "id", "inner")])


@settings(max_examples=300, deadline=None)
@given(document=REQUESTS, indent=st.booleans(), mode=st.sampled_from(["drop", "hash"]))
def test_scanning_and_decoding_give_the_same_json(
    document: dict[str, Any], indent: bool, mode: Literal["drop", "hash"]
) -> None:
    body = formatted(document, indent)
    redactor = Redactor(mode, KEY)
    scanned = redactor.redact(body, valid=True)
    decoded = redactor.redact(body)
    assert scanned is not None
    assert decoded is not None
    assert b"\n" not in scanned
    assert orjson.loads(scanned) == orjson.loads(decoded)


def test_scanning_and_decoding_agree_on_the_corpus_and_the_synthetic_traffic(
    corpus: Path,
) -> None:
    bodies = [orjson.dumps(request) for request in generate_bid_requests(300, seed=7)]
    bodies += [path.read_bytes() for path in sorted(corpus.rglob("*.json"))]
    compared = 0
    for body in bodies:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            continue
        for redactor in (Redactor("drop"), Redactor("hash", KEY)):
            scanned = redactor.redact(body, valid=True)
            decoded = redactor.redact(body)
            if decoded is None:
                assert scanned is None
                continue
            assert scanned is not None
            assert orjson.loads(scanned) == orjson.loads(decoded)
            compared += 1
    assert compared > 300


_SCANNER = pytest.mark.skipif(compiled is None, reason="the C scanner is not built")

# Long values off every path, whose strings hold brackets, quotes and escapes: the scanner
# crosses them 64 bytes at a time where it can, and these put every kind of byte on either
# side of a block's edge.
_TRICKY_TEXT = st.text(st.sampled_from("ab{}[]/\u00e9,: "), max_size=90) | st.text(
    st.sampled_from('a{]"\\\n'), max_size=12
)
_OFF_PATH = st.recursive(
    _TRICKY_TEXT | st.integers(-(2**63), 2**63 - 1) | st.none(),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(_TRICKY_TEXT, inner, max_size=4),
    max_leaves=30,
)


@_SCANNER
@settings(max_examples=300, deadline=None)
@given(
    before=_OFF_PATH,
    after=_OFF_PATH,
    pad=st.text(st.just("x"), max_size=63),
    user=REQUESTS,
    indent=st.booleans(),
)
def test_long_values_off_every_path_are_skipped_whole(
    before: Any, after: Any, pad: str, user: dict[str, Any], indent: bool
) -> None:
    # An escaped key on the way to identifiers is the scanner's to give up on (by design).
    assume(b"\\" not in orjson.dumps(user))
    document = {"pad": pad, "imp": before, **user, "ext": [after, before]}
    body = formatted(document, indent)
    redactor = Redactor("drop")
    assert compiled is not None
    assert redactor.tree is not None
    # The scanner itself, not `redact`, which would hide a scan given up behind decoding;
    # skipping with the CPU's widest blocks and with SSE2's.
    scanned = compiled.without_identifiers(body, redactor.tree)
    decoded = redactor.redact(body)
    assert scanned is not None
    assert decoded is not None
    assert orjson.loads(scanned) == orjson.loads(decoded)
    assert compiled.without_identifiers(body, redactor.tree, True) == scanned


@pytest.mark.parametrize(
    "body",
    [
        # Off every path: skipped, however deep.
        b'{"ext":' + b"[" * 100 + b"]" * 100 + b',"device":{"ip":"203.0.113.7"}}',
        # On the way to identifiers: past the scanner's depth, redacted by decoding.
        b'{"user":{"ext":{"prebid":{"buyeruids":{"a":'
        + b'{"b":' * 80
        + b"1"
        + b"}" * 80
        + b',"c":"buyer-7"}}}},"device":{"ip":"203.0.113.7"}}',
    ],
)
def test_a_deeply_nested_body_is_redacted(body: bytes) -> None:
    scanned = Redactor("drop").redact(body, valid=True)
    assert scanned is not None
    assert scanned == Redactor("drop").redact(body)
    assert b"203.0.113.7" not in scanned
    assert b"buyer-7" not in scanned


@_SCANNER
@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_the_scanner_stays_within_any_bytes(data: st.DataObject) -> None:
    """Whatever it is given, the scanner answers None, or edits inside the body in order, or
    the body shorter or as long, on one line."""
    body = orjson.dumps(data.draw(REQUESTS))
    cut = data.draw(st.integers(0, len(body)))
    noise = data.draw(st.binary(max_size=8))
    at = data.draw(st.integers(0, cut))
    mutated = body[:at] + noise + body[at:cut]
    tree = Redactor("drop").tree
    assert tree is not None
    assert compiled is not None
    for hashing in (False, True):
        edits = compiled.identifier_edits(mutated, tree, hashing)
        if edits is None:
            continue
        end = 0
        for start, stop, kind in edits:
            assert end <= start <= stop <= len(mutated)
            assert kind in (0, 1, 2, 3)
            end = stop
    dropped = compiled.without_identifiers(mutated, tree)
    assert compiled.without_identifiers(mutated, tree, True) == dropped
    if dropped is not None:
        assert b"\n" not in dropped
        assert len(dropped) <= len(mutated) + 4 * mutated.count(b",")


@_SCANNER
@pytest.mark.parametrize(
    ("nodes", "error", "message"),
    [
        ((), TypeError, "nodes must be a tuple of 1 node or more"),
        ([((), (), -1)], TypeError, "nodes must be a tuple"),
        (((("ip",), (-2,), -1),), TypeError, "node 0 must be"),
        ((((b"ip", b"ua"), (-2,), -1),), TypeError, "node 0 must be"),
        ((((b"user",), (1,), -1),), ValueError, "0 to 0), -1 or -2, not 1"),
        ((((b"ip",), (-3,), -1),), ValueError, "not -3"),
        ((((), (), "each"),), ValueError, "not 'each'"),
        ((((), (), 2**70),), ValueError, "not 1180591620717411303424"),
    ],
)
def test_a_malformed_tree_is_refused_by_name(
    nodes: Any, error: type[Exception], message: str
) -> None:
    assert compiled is not None
    with pytest.raises(error, match=re.escape(message)):
        compiled.scanner_tree(nodes)


@_SCANNER
def test_the_scanner_takes_only_its_own_tree() -> None:
    assert compiled is not None
    nodes = (((b"ip",), (-2,), -1),)
    tree = compiled.scanner_tree(nodes)
    assert compiled.without_identifiers(b'{"ip":"203.0.113.7","w":1}', tree) == b'{"w":1}'
    with pytest.raises(TypeError):
        compiled.without_identifiers(b'{"ip":"203.0.113.7"}', nodes)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        type(tree)()


@pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler here"
)
def test_the_scanner_is_built_where_a_compiler_is() -> None:
    assert compiled is not None, "setup.py builds it: pip install -e . (make dev)"


@_SCANNER
@given(key=st.binary(max_size=200), message=st.binary(max_size=300), portable=st.booleans())
@settings(max_examples=500)
def test_the_compiled_hmac_is_the_standard_librarys(
    key: bytes, message: bytes, portable: bool
) -> None:
    """Keys shorter and longer than SHA-256's block (a long one is hashed first), messages
    across every padding boundary; with the CPU's SHA instructions where it has them, and
    with the compression written in plain C."""
    assert compiled is not None
    assert compiled.hmac_sha256(key, message, portable) == hmac.digest(key, message, "sha256")


@_SCANNER
@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("length", [0, 55, 56, 63, 64, 65, 119, 120, 128])
def test_the_compiled_hmac_at_each_padding_boundary(length: int, portable: bool) -> None:
    assert compiled is not None
    message = bytes(range(256))[:length]
    for key in (b"", b"k" * 64, b"k" * 65):
        expected = hmac.digest(key, message, "sha256")
        assert compiled.hmac_sha256(key, message, portable) == expected
