"""webhook.deliver's pure parts: signatures, Retry-After, argument validation."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import pytest
from pydantic import ValidationError

from jobyard.jobs._http import parse_retry_after
from jobyard.jobs.webhook import (
    WebhookArgs,
    encode_body,
    shown_url,
    signature,
    signature_header,
    signed_payload,
    signed_url,
    verify_signature,
)
from tests.support.webhook_receiver import documented_verifier

SECRET = "whsec-test"
BODY = b'{"event":"ping","n":1}'
TS = 1_700_000_000
DLV = "dlv-1"
URL = "https://hooks.example.com/in?x=1"
# printf 'v1\n%s\n%s\n%s\n' 1700000000 dlv-1 'https://hooks.example.com/in?x=1' \
#   | cat - <(printf '{"event":"ping","n":1}') | openssl dgst -sha256 -hmac whsec-test
OPENSSL_HEX = "d9709a230596cc32718566be3dba5ccc4e85ba3b6308d8a3ab874dc924daf8fe"
HEADER = f"v1={OPENSSL_HEX}"


def test_signature_matches_openssl_over_timestamp_delivery_url_and_body() -> None:
    assert signature(SECRET, TS, DLV, URL, BODY) == HEADER
    assert signature(SECRET.encode(), str(TS), DLV, URL, BODY) == HEADER
    assert signed_payload(TS, DLV, URL, BODY) == f"v1\n{TS}\n{DLV}\n{URL}\n".encode() + BODY


def test_verify_accepts_a_fresh_valid_signature() -> None:
    assert verify_signature(SECRET, str(TS), DLV, URL, BODY, HEADER, now_s=TS + 10) is True
    assert verify_signature(SECRET, TS, DLV, URL, BODY, HEADER, now_s=TS - 299) is True


@pytest.mark.parametrize(
    ("secret", "timestamp", "delivery", "url", "body", "header", "now_s"),
    [
        ("other-secret", str(TS), DLV, URL, BODY, HEADER, TS),
        (SECRET, str(TS), DLV, URL, BODY + b" ", HEADER, TS),
        (SECRET, str(TS + 1), DLV, URL, BODY, HEADER, TS),
        (SECRET, str(TS), "dlv-2", URL, BODY, HEADER, TS),
        (SECRET, str(TS), DLV, "https://evil.example/in?x=1", BODY, HEADER, TS),
        (SECRET, str(TS), DLV, "https://hooks.example.com/in?x=2", BODY, HEADER, TS),
        (SECRET, str(TS), DLV, URL, BODY, f"sha256={OPENSSL_HEX}", TS),
        (SECRET, str(TS), DLV, URL, BODY, OPENSSL_HEX, TS),
        (SECRET, str(TS), DLV, URL, BODY, HEADER, TS + 301),
        (SECRET, str(TS), DLV, URL, BODY, HEADER, TS - 301),
        (SECRET, "17e8", DLV, URL, BODY, HEADER, TS),
        (SECRET, "", DLV, URL, BODY, HEADER, TS),
    ],
    ids=[
        "wrong-secret",
        "tampered-body",
        "tampered-timestamp",
        "other-delivery-id",
        "replayed-to-another-receiver",
        "other-query",
        "wrong-scheme",
        "no-prefix",
        "too-old",
        "too-far-ahead",
        "timestamp-not-integer",
        "timestamp-empty",
    ],
)
def test_verify_rejects(
    secret: str, timestamp: str, delivery: str, url: str, body: bytes, header: str, now_s: float
) -> None:
    assert verify_signature(secret, timestamp, delivery, url, body, header, now_s=now_s) is False


def test_fields_cannot_be_shifted_into_one_another() -> None:
    # A delivery id carrying a line feed could move bytes between fields: refused.
    with pytest.raises(ValueError, match="line feeds"):
        signed_payload(TS, "a\nb", URL, BODY)
    assert verify_signature(SECRET, TS, "a\nb", URL, BODY, HEADER, now_s=TS) is False


def test_two_secrets_while_rotating_give_two_entries_any_of_which_verifies() -> None:
    header = signature_header(("new-secret", "old-secret"), TS, DLV, URL, BODY)
    new, old = (part.strip() for part in header.split(","))
    assert new == signature("new-secret", TS, DLV, URL, BODY)
    assert old == signature("old-secret", TS, DLV, URL, BODY)
    assert verify_signature("new-secret", TS, DLV, URL, BODY, header, now_s=TS) is True
    assert verify_signature("old-secret", TS, DLV, URL, BODY, header, now_s=TS) is True
    assert verify_signature("third", TS, DLV, URL, BODY, header, now_s=TS) is False


def test_the_documented_recipe_agrees_with_the_reference() -> None:
    verify = documented_verifier()
    header = signature_header(("new-secret", "old-secret"), str(int(time.time())), DLV, URL, BODY)
    headers = {
        "x-jobyard-timestamp": str(int(time.time())),
        "x-jobyard-delivery": DLV,
        "x-jobyard-signature": header,
    }
    assert verify(["old-secret"], URL, headers, BODY) is True
    assert verify(["other"], URL, headers, BODY) is False
    assert verify(["old-secret"], "https://evil.example/in?x=1", headers, BODY) is False
    assert verify(["old-secret"], URL, {**headers, "x-jobyard-delivery": "dlv-2"}, BODY) is False


def test_signed_and_shown_urls_drop_userinfo_and_shown_drops_the_query() -> None:
    url = "https://user:tok@hooks.example.com:8443/in/x?token=abc#frag"
    assert signed_url(url) == "https://hooks.example.com:8443/in/x?token=abc"
    assert shown_url(url) == "https://hooks.example.com:8443/in/x"


def test_verify_tolerance_is_configurable() -> None:
    assert verify_signature(SECRET, TS, DLV, URL, BODY, HEADER, tolerance_s=5, now_s=TS + 5)
    assert not verify_signature(SECRET, TS, DLV, URL, BODY, HEADER, tolerance_s=5, now_s=TS + 6)


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


@pytest.mark.parametrize(
    "value",
    [
        "a\r\nX-Evil: 1",
        "a\n",
        "caf\u00e9",
        "a\x00b",
        "a\x7fb",
        "a\x0bb",
        "\u2028",
        " lead",
        "trail\t",
    ],
    ids=["crlf", "trailing-lf", "non-ascii", "nul", "del", "vt", "u2028", "leading", "trailing"],
)
def test_header_values_are_visible_ascii_spaces_and_tabs(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        WebhookArgs.model_validate({**VALID, "headers": {"X-Tenant": value}})
    (error,) = info.value.errors()
    assert error["loc"] == ("headers", "X-Tenant")
    assert "visible ASCII characters, spaces and tabs" in error["msg"]


def test_header_values_may_hold_inner_spaces_and_tabs_or_be_empty() -> None:
    args = WebhookArgs.model_validate({**VALID, "headers": {"X-A": "a b\tc", "X-B": ""}})
    assert args.headers == {"X-A": "a b\tc", "X-B": ""}


def test_header_names_must_be_tokens_and_unique() -> None:
    assert "not a valid HTTP field name" in _error({**VALID, "headers": {"Bad Name": "v"}})
    assert "given twice" in _error({**VALID, "headers": {"X-A": "1", "x-a": "2"}})


def test_body_must_be_an_object_and_unknown_fields_are_refused() -> None:
    assert "body" in _error({**VALID, "body": [1, 2]})
    assert "Extra inputs are not permitted" in _error({**VALID, "retries": 3})


def test_event_name_is_restricted() -> None:
    assert "event" in _error({**VALID, "event": "bad event\n"})
