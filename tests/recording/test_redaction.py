"""User identifiers and IP addresses hashed or dropped, everything else byte for byte."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest

from bidder.recording.redaction import IDENTIFIER_PATHS, Redactor

KEY = b"0123456789abcdef-test-key"


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


def test_drop_removes_every_identifier_and_keeps_the_rest() -> None:
    body = orjson.dumps(identified_request())
    redacted = Redactor("drop").redact(body)
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


def test_hash_replaces_each_identifier_with_its_keyed_hmac() -> None:
    redacted = Redactor("hash", KEY).redact(orjson.dumps(identified_request()))
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
    again = orjson.loads(Redactor("hash", KEY).redact(orjson.dumps(identified_request())) or b"")
    assert again == document


def test_a_value_that_cannot_be_hashed_is_dropped_and_null_stays() -> None:
    body = orjson.dumps(
        {"device": {"ip": {"nested": "1.2.3.4"}, "ifa": None}, "user": {"id": True}}
    )
    document = orjson.loads(Redactor("hash", KEY).redact(body) or b"")
    assert document == {"device": {"ifa": None}, "user": {}}


@pytest.mark.parametrize(
    "document",
    [
        {"device": "not an object", "user": [1, 2]},
        {"user": {"eids": "not an array", "ext": None}},
        {"user": {"ext": {"prebid": {"buyeruids": ["listed", {"x": 1}]}}}},
    ],
)
def test_unexpected_shapes_are_handled_without_failing(document: dict[str, Any]) -> None:
    redacted = Redactor("drop").redact(orjson.dumps(document))
    assert redacted is not None
    assert b"listed" not in redacted


def test_the_body_must_be_a_json_object() -> None:
    redactor = Redactor("drop")
    assert redactor.redact(b"[1, 2]") is None
    assert redactor.redact(b"not json") is None
    assert redactor.redact(b'{"device": {"ip": "1.2.3.4"}') is None


def test_formatting_outside_the_redacted_objects_is_kept_and_lines_are_joined() -> None:
    body = (
        b'{"id":\n"r1",  "site": {"page":"https://news.example/a b"},\n"device":{"ip":"1.2.3.4"}}'
    )
    redacted = Redactor("drop").redact(body)
    assert redacted == b'{"id":"r1","site":{"page":"https://news.example/a b"},"device":{}}'


def test_line_breaks_inside_a_redacted_object_are_joined_too() -> None:
    body = b'{"user": {"id": "u1", "ext": {"consent":\n"kept"}},\r\n"device": {"geo": [1,\n2]}}'
    for redactor in (Redactor("drop"), Redactor("hash", KEY)):
        redacted = redactor.redact(body)
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
def test_escaped_keys_and_duplicate_members_hide_no_identifier(body: bytes) -> None:
    redacted = Redactor("drop").redact(body)
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
