"""email.send's pure parts: arguments, the message it builds, how SMTP failures classify."""

from __future__ import annotations

import smtplib
import ssl
from typing import Any

import pytest
from pydantic import ValidationError

from jobyard.core.registry import PermanentError, RetryableError
from jobyard.core.settings import Settings, load_settings
from jobyard.jobs.email import EmailArgs, build_message, classify, message_id, sender_address

VALID: dict[str, Any] = {"to": ["ada@example.com"], "subject": "Hello", "text": "Hi Ada"}


def settings(**env: str) -> Settings:
    return load_settings(
        {"JOBYARD_SMTP_HOST": "relay.internal", "JOBYARD_SMTP_PORT": "2525", **env}
    )


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        EmailArgs.model_validate(raw)
    return str(info.value)


def test_addresses_are_validated_per_field() -> None:
    assert "to.0" in _error({**VALID, "to": ["not-an-address"]})
    assert "cc.1" in _error({**VALID, "cc": ["bob@example.com", "bob@"]})
    assert "bcc.0" in _error({**VALID, "bcc": ["@example.com"]})
    assert "reply_to" in _error({**VALID, "reply_to": "nobody"})
    assert "to" in _error({**VALID, "to": []})


def test_a_body_is_required_and_subject_is_one_line() -> None:
    assert "give text, html or both" in _error({"to": ["a@example.com"], "subject": "s"})
    assert "subject" in _error({**VALID, "subject": "Hi\r\nBcc: victim@example.com"})
    assert "Extra inputs are not permitted" in _error({**VALID, "from": "x@example.com"})


def test_recipient_total_is_capped() -> None:
    many = [f"u{i}@example.com" for i in range(60)]
    assert "at most 100 recipients" in _error({**VALID, "to": many, "bcc": many})


def test_envelope_lists_each_recipient_once_in_order() -> None:
    args = EmailArgs.model_validate(
        {
            **VALID,
            "to": ["a@example.com", "b@example.com"],
            "cc": ["B@example.com", "c@example.com"],
            "bcc": ["d@example.com", "a@example.com"],
        }
    )
    assert args.envelope_recipients() == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    ]


def test_args_round_trip_through_json() -> None:
    args = EmailArgs.model_validate({**VALID, "html": "<p>Hi</p>", "reply_to": "r@example.com"})
    assert EmailArgs.model_validate(args.model_dump(mode="json")) == args


def test_message_has_headers_alternatives_and_no_bcc() -> None:
    args = EmailArgs.model_validate(
        {
            "to": ["ada@example.com", "alan@example.com"],
            "cc": ["grace@example.com"],
            "bcc": ["secret@example.com"],
            "subject": "Quarterly report",
            "text": "Plain body",
            "html": "<p>HTML body</p>",
            "reply_to": "support@example.com",
        }
    )
    msg = build_message(args, sender_header="Jobs <jobs@example.com>", msg_id="<m1@example.com>")
    assert msg["From"] == "Jobs <jobs@example.com>"
    assert msg["To"] == "ada@example.com, alan@example.com"
    assert msg["Cc"] == "grace@example.com"
    assert msg["Reply-To"] == "support@example.com"
    assert msg["Subject"] == "Quarterly report"
    assert msg["Message-ID"] == "<m1@example.com>"
    assert msg["Date"] is not None
    assert msg["Bcc"] is None
    assert "secret@example.com" not in msg.as_string()
    assert msg.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), p.get_content().strip()) for p in msg.iter_parts()]
    assert parts == [("text/plain", "Plain body"), ("text/html", "<p>HTML body</p>")]


def test_html_only_message_is_a_single_html_part() -> None:
    args = EmailArgs.model_validate({"to": ["a@example.com"], "subject": "s", "html": "<b>x</b>"})
    msg = build_message(args, sender_header="j@example.com", msg_id="<m@example.com>")
    assert msg.get_content_type() == "text/html"
    assert msg.get_content().strip() == "<b>x</b>"


def test_message_id_and_sender_come_from_smtp_from() -> None:
    s = settings(JOBYARD_SMTP_FROM="Billing <billing@shop.example>")
    sender = sender_address(s)
    assert sender == "billing@shop.example"
    assert message_id("0b9c-11", sender) == "<jobyard.0b9c-11@shop.example>"
    with pytest.raises(PermanentError, match="JOBYARD_SMTP_FROM 'nobody' is not an email address"):
        sender_address(settings(JOBYARD_SMTP_FROM="nobody"))


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (smtplib.SMTPServerDisconnected("gone"), RetryableError, "closed the connection: gone"),
        (ConnectionRefusedError(111, "Connection refused"), RetryableError, "Connection refused"),
        (TimeoutError("timed out"), RetryableError, "cannot talk to the relay: timed out"),
        (smtplib.SMTPDataError(451, b"4.3.0 busy"), RetryableError, "answered 451 4.3.0 busy"),
        (smtplib.SMTPDataError(554, b"5.7.1 spam"), PermanentError, "answered 554 5.7.1 spam"),
        (smtplib.SMTPSenderRefused(553, b"bad sender", "x@y"), PermanentError, "553 bad sender"),
        (smtplib.SMTPConnectError(421, b"too many"), RetryableError, "answered 421 too many"),
        (
            smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"),
            PermanentError,
            "login as 'mailer' failed: 535 5.7.8 bad credentials",
        ),
        (
            smtplib.SMTPAuthenticationError(454, b"4.7.0 try later"),
            RetryableError,
            "login as 'mailer' failed: 454",
        ),
        (
            smtplib.SMTPRecipientsRefused({"a@x.io": (550, b"no such user")}),
            PermanentError,
            "every recipient was refused: a@x.io: 550 no such user",
        ),
        (
            smtplib.SMTPRecipientsRefused(
                {"a@x.io": (550, b"no such user"), "b@x.io": (452, b"mailbox full")}
            ),
            RetryableError,
            "every recipient was refused, some for now",
        ),
        (
            smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server."),
            PermanentError,
            "set JOBYARD_SMTP_STARTTLS=true",
        ),
        (
            ssl.SSLCertVerificationError(1, "certificate verify failed"),
            PermanentError,
            "TLS certificate not trusted",
        ),
        (smtplib.SMTPException("No suitable authentication method"), PermanentError, "No suit"),
    ],
)
def test_failures_classify_by_reply_code(exc: Exception, kind: type[Exception], text: str) -> None:
    mapped = classify(exc, settings(JOBYARD_SMTP_USERNAME="mailer"))
    assert type(mapped) is kind
    assert text in str(mapped)
    assert str(mapped).startswith("SMTP relay.internal:2525")


def test_unrelated_errors_pass_through() -> None:
    bug = KeyError("x")
    assert classify(bug, settings()) is bug
