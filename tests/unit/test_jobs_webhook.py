"""webhook.deliver's pure parts: signatures, Retry-After, argument validation."""

from __future__ import annotations

import email.utils
from typing import Any

import pytest
from pydantic import ValidationError

from jobyard.jobs._http import parse_retry_after
from jobyard.jobs.webhook import WebhookArgs, encode_body, signature, verify_signature

SECRET = "whsec-test"
BODY = b'{"event":"ping","n":1}'
TS = 1_700_000_000
# printf '1700000000.{"event":"ping","n":1}' | openssl dgst -sha256 -hmac whsec-test
OPENSSL_HEX = "2dbc81d9b77605579824dfb1adc84b35675925e7eddb06e2dd3aa6ca64324a61"


def test_signature_matches_openssl() -> None:
    assert signature(SECRET, TS, BODY) == f"sha256={OPENSSL_HEX}"
    assert signature(SECRET.encode(), str(TS), BODY) == f"sha256={OPENSSL_HEX}"


def test_verify_accepts_a_fresh_valid_signature() -> None:
    header = f"sha256={OPENSSL_HEX}"
    assert verify_signature(SECRET, str(TS), BODY, header, now_s=TS + 10) is True
    assert verify_signature(SECRET, TS, BODY, header, now_s=TS - 299) is True


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "header", "now_s"),
    [
        ("other-secret", str(TS), BODY, f"sha256={OPENSSL_HEX}", TS),
        (SECRET, str(TS), BODY + b" ", f"sha256={OPENSSL_HEX}", TS),
        (SECRET, str(TS + 1), BODY, f"sha256={OPENSSL_HEX}", TS),
        (SECRET, str(TS), BODY, f"sha1={OPENSSL_HEX}", TS),
        (SECRET, str(TS), BODY, OPENSSL_HEX, TS),
        (SECRET, str(TS), BODY, f"sha256={OPENSSL_HEX}", TS + 301),
        (SECRET, str(TS), BODY, f"sha256={OPENSSL_HEX}", TS - 301),
        (SECRET, "17e8", BODY, f"sha256={OPENSSL_HEX}", TS),
        (SECRET, "", BODY, f"sha256={OPENSSL_HEX}", TS),
    ],
    ids=[
        "wrong-secret",
        "tampered-body",
        "tampered-timestamp",
        "wrong-scheme",
        "no-prefix",
        "too-old",
        "too-far-ahead",
        "timestamp-not-integer",
        "timestamp-empty",
    ],
)
def test_verify_rejects(
    secret: str, timestamp: str, body: bytes, header: str, now_s: float
) -> None:
    assert verify_signature(secret, timestamp, body, header, now_s=now_s) is False


def test_verify_accepts_any_of_several_signatures_while_rotating() -> None:
    old = signature("old-secret", TS, BODY)
    header = f"{old}, sha256={OPENSSL_HEX}"
    assert verify_signature(SECRET, TS, BODY, header, now_s=TS) is True
    assert verify_signature("old-secret", TS, BODY, header, now_s=TS) is True
    assert verify_signature("third", TS, BODY, header, now_s=TS) is False


def test_verify_tolerance_is_configurable() -> None:
    header = f"sha256={OPENSSL_HEX}"
    assert verify_signature(SECRET, TS, BODY, header, tolerance_s=5, now_s=TS + 5) is True
    assert verify_signature(SECRET, TS, BODY, header, tolerance_s=5, now_s=TS + 6) is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", 1.0), (" 120 ", 120.0), ("0", 0.0), (None, None), ("-5", None), ("soon", None)],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now_s=TS) == expected


def test_retry_after_http_date() -> None:
    future = email.utils.formatdate(TS + 30, usegmt=True)
    past = email.utils.formatdate(TS - 30, usegmt=True)
    assert parse_retry_after(future, now_s=TS) == 30.0
    assert parse_retry_after(past, now_s=TS) == 0.0


def test_body_encoding_is_compact_utf8_in_given_order() -> None:
    assert (
        encode_body({"z": 1, "a": "é", "n": [1, None]}) == '{"z":1,"a":"é","n":[1,null]}'.encode()
    )


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        WebhookArgs.model_validate(raw)
    return str(info.value)


VALID = {"url": "https://hooks.example.com/in", "body": {"a": 1}}


def test_valid_args_round_trip_through_json() -> None:
    args = WebhookArgs.model_validate(
        {**VALID, "headers": {"Authorization": "Bearer t"}, "event": "invoice.paid"}
    )
    again = WebhookArgs.model_validate(args.model_dump(mode="json"))
    assert again == args
    assert str(again.url) == "https://hooks.example.com/in"
    assert again.sign is True


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "not a url"])
def test_only_http_urls(url: str) -> None:
    msg = _error({**VALID, "url": url})
    assert "url" in msg


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "content-length",
        "Connection",
        "Transfer-Encoding",
        "Upgrade",
        "TE",
        "Keep-Alive",
        "Proxy-Authorization",
        "Content-Type",
        "User-Agent",
        "X-Jobyard-Signature",
        "x-jobyard-x",
    ],
)
def test_reserved_headers_are_refused(name: str) -> None:
    msg = _error({**VALID, "headers": {name: "v"}})
    assert f"header {name!r} cannot be set" in msg


def test_header_values_cannot_inject_lines() -> None:
    msg = _error({**VALID, "headers": {"X-Tenant": "a\r\nX-Evil: 1"}})
    assert "must not contain CR, LF or NUL" in msg


def test_header_names_must_be_tokens_and_unique() -> None:
    assert "not a valid HTTP field name" in _error({**VALID, "headers": {"Bad Name": "v"}})
    assert "given twice" in _error({**VALID, "headers": {"X-A": "1", "x-a": "2"}})


def test_body_must_be_an_object_and_unknown_fields_are_refused() -> None:
    assert "body" in _error({**VALID, "body": [1, 2]})
    assert "Extra inputs are not permitted" in _error({**VALID, "retries": 3})


def test_event_name_is_restricted() -> None:
    assert "event" in _error({**VALID, "event": "bad event\n"})
