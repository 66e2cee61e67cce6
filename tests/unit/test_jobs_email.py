"""email.send's pure parts: arguments, the message it builds, how SMTP failures classify."""

from __future__ import annotations

import email.policy
import smtplib
import ssl
import sys
from email import message_from_bytes
from email.message import EmailMessage
from typing import Any

import pytest
from pydantic import ValidationError

from jobyard.core.registry import PermanentError, RetryableError
from jobyard.core.settings import Settings, load_settings
from jobyard.jobs._mail_headers import (
    HeaderInjectionError,
    check_header_block,
    header_names,
    header_policy,
    interpreter_has_cve_2024_6923_fix,
)
from jobyard.jobs.email import (
    EmailArgs,
    build_message,
    classify,
    message_id,
    sender_address,
    written_message,
)

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


# --- header injection (CVE-2024-6923 and raw line breaks) ------------------------------

ATTACK_SUBJECT = "=?utf-8?q?Invoice=0D=0AFrom:_ceo@victim.example=0D=0ABcc:_attacker@evil.example?="
LINE_BREAKERS = {
    "CR": "\r",
    "LF": "\n",
    "VT": "\x0b",
    "FF": "\x0c",
    "NUL": "\x00",
    "FS": "\x1c",
    "GS": "\x1d",
    "RS": "\x1e",
    "DEL": "\x7f",
    "NEL": "\x85",
    "C1 CSI": "\x9b",
    "LINE SEPARATOR": "\u2028",
    "PARAGRAPH SEPARATOR": "\u2029",
}


@pytest.mark.parametrize("name", sorted(LINE_BREAKERS))
def test_control_and_line_break_characters_are_refused_in_every_header_field(name: str) -> None:
    char = LINE_BREAKERS[name]
    assert "subject" in _error({**VALID, "subject": f"Invoice{char}Bcc: x@evil.example"})
    for field in ("to", "cc", "bcc"):
        err = _error({**VALID, field: [f"ada{char}@example.com"]})
        assert f"{field}.0" in err
    assert "reply_to" in _error({**VALID, "reply_to": f"ada@example.com{char}"})


def test_encoded_words_are_refused_in_every_header_field() -> None:
    err = _error({**VALID, "subject": ATTACK_SUBJECT})
    assert "subject" in err and "RFC 2047 encoded word" in err
    assert "RFC 2047" in _error({**VALID, "subject": "Re: =?ISO-8859-1?B?SGk=?= there"})
    word = "=?utf-8?q?x?=@example.com"
    for field in ("to", "cc", "bcc"):
        assert f"{field}.0" in _error({**VALID, field: [word]})
    assert "reply_to" in _error({**VALID, "reply_to": word})


def test_non_ascii_text_is_still_allowed_and_encoded_by_the_policy() -> None:
    args = EmailArgs.model_validate({**VALID, "subject": "Zoë Ødegård — résumé ✓ = ? ok"})
    msg = build_message(args, sender_header="Zoë <jobs@example.com>", msg_id="<m@example.com>")
    raw = written_message(msg, international=False)
    assert raw.isascii()
    parsed = message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Zoë Ødegård — résumé ✓ = ? ok"
    assert parsed["From"] == "Zoë <jobs@example.com>"


def test_a_forged_argument_is_refused_again_when_the_message_is_built() -> None:
    forged = EmailArgs.model_construct(
        to=["ada@example.com"],
        cc=[],
        bcc=[],
        subject=ATTACK_SUBJECT,
        text="x",
        html=None,
        reply_to=None,
    )
    with pytest.raises(PermanentError, match="subject: must not contain an RFC 2047"):
        build_message(forged, sender_header="j@example.com", msg_id="<m@example.com>")
    ok = EmailArgs.model_validate(VALID)
    with pytest.raises(PermanentError, match="JOBYARD_SMTP_FROM: must not contain control"):
        build_message(ok, sender_header="j@example.com\r\nBcc: x@evil", msg_id="<m@e.com>")


def test_the_written_header_block_is_checked_on_this_python() -> None:
    """The last line of defence, exercised on the interpreter the tests run on.

    A message whose subject bypassed every earlier check is written with its CR/LF kept
    inside the encoded subject (a Python with the CVE-2024-6923 fix), or refused by the
    header block check (a Python without it writes the smuggled From/Bcc lines): it never
    leaves with a header jobyard did not set.
    """
    msg = EmailMessage(policy=header_policy())
    msg["From"] = "j@example.com"
    msg["To"] = "ada@example.com"
    msg["Subject"] = ATTACK_SUBJECT
    msg.set_content("x")
    try:
        raw = written_message(msg, international=False)
    except PermanentError as exc:
        assert "did not set (bcc, from)" in str(exc)
        assert not interpreter_has_cve_2024_6923_fix()
    else:
        assert interpreter_has_cve_2024_6923_fix()
        assert header_names(raw) == list(msg.keys())
        assert b"\r\nBcc:" not in raw and b"\r\nFrom: ceo" not in raw


def test_the_header_block_check_names_what_was_smuggled_in() -> None:
    raw = (
        b"Subject: Invoice\r\nFrom: ceo@victim.example\r\nBcc: attacker@evil.example\r\n"
        b"To: a@example.com\r\n folded@example.com\r\nFrom: j@example.com\r\n\r\nbody\r\n"
    )
    assert header_names(raw) == ["Subject", "From", "Bcc", "To", "From"]
    with pytest.raises(HeaderInjectionError, match=r"did not set \(bcc, from\)"):
        check_header_block(raw, ["Subject", "From", "To"])
    check_header_block(
        raw.replace(b"Bcc: attacker@evil.example\r\n", b"").replace(
            b"From: ceo@victim.example\r\n", b""
        ),
        ["subject", "to", "from"],
    )


def test_the_python_running_jobyard_carries_the_cve_2024_6923_fix() -> None:
    """CI and the image must run an interpreter that keeps encoded CR/LF inside a header
    (CPython 3.11.10+, 3.12.5+, 3.13+, or a distribution build with the backport, such as
    Debian bookworm's python3.11 from 3.11.2-6+deb12u3)."""
    assert interpreter_has_cve_2024_6923_fix(), sys.version


def test_email_send_refuses_to_run_on_a_python_without_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import jobyard.jobs.email as email_job

    monkeypatch.setattr(email_job, "interpreter_has_cve_2024_6923_fix", lambda: False)
    delivered: list[object] = []
    monkeypatch.setattr(email_job, "deliver_message", lambda *a: delivered.append(a))
    ctx = type("Ctx", (), {"settings": settings(), "job_id": "j1"})()
    with pytest.raises(PermanentError, match="lacks the fix for CVE-2024-6923"):
        email_job.send(ctx, EmailArgs.model_validate(VALID))  # type: ignore[arg-type]
    assert delivered == []
