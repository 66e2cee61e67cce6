"""`email.send`: send one message through the configured SMTP relay.

The relay is `JOBYARD_SMTP_HOST:JOBYARD_SMTP_PORT`; with `JOBYARD_SMTP_STARTTLS=true` the
connection is upgraded with STARTTLS (the certificate is verified against the system
trust store, or `SSL_CERT_FILE`), and with `JOBYARD_SMTP_USERNAME` and
`JOBYARD_SMTP_PASSWORD` the job logs in. Implicit TLS (port 465) is not supported.

The `Message-ID` is derived from the job id, so every retry of a job sends the same id and
a relay or mailbox can drop duplicates. Bcc recipients get the message through the SMTP
envelope only: they never appear in a header.

Header injection: every header-bound argument (subject, addresses) refuses control and
line-break characters and RFC 2047 encoded words at enqueue (a 422 naming the field); the
message is written with a policy that verifies generated headers, and the written header
block is checked once more before it reaches the relay (see `jobyard.jobs._mail_headers`).
A Python whose `email` package lacks the CVE-2024-6923 fix is refused: the job fails
permanently instead of sending.

Outcomes: connection errors, timeouts, a dropped connection and 4xx replies are retried;
5xx replies, every recipient refused for good, and a failed login fail at once. When only
some recipients are refused the job succeeds and lists them under `refused`.
"""

from __future__ import annotations

import contextlib
import email.utils
import platform
import smtplib
import ssl
from email.message import EmailMessage
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, EmailStr, Field, model_validator

from jobyard.core.context import JobContext
from jobyard.core.registry import PermanentError, RetryableError, RetryPolicy, job
from jobyard.core.settings import Settings
from jobyard.jobs._mail_headers import (
    HeaderInjectionError,
    HeaderText,
    check_header_block,
    header_policy,
    header_text_problem,
    interpreter_has_cve_2024_6923_fix,
)

MAX_RECIPIENTS = 100
MAX_BODY_CHARS = 1_000_000

EMAIL_RETRY = RetryPolicy(
    max_attempts=6, backoff_s=2.0, backoff_max_s=600.0, retry_on=(RetryableError,)
)
"""Six attempts over about a minute (2, 4, ... 32 s, with jitter)."""


def _address_safe(value: object) -> object:
    # Before EmailStr: it normalises (strips whitespace such as VT) before we would see it.
    if isinstance(value, str):
        problem = header_text_problem(value)
        if problem:
            raise ValueError(problem)
    return value


Address = Annotated[EmailStr, BeforeValidator(_address_safe)]
"""A plain address (no display name) that can be written into a header."""
Addresses = Annotated[list[Address], Field(max_length=MAX_RECIPIENTS)]


class EmailArgs(BaseModel):
    """Arguments of `email.send`."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    to: Annotated[list[Address], Field(min_length=1, max_length=MAX_RECIPIENTS)]
    """Recipients shown in the To header (plain addresses, e.g. `ada@example.com`)."""
    cc: Addresses = Field(default_factory=list)
    """Recipients shown in the Cc header."""
    bcc: Addresses = Field(default_factory=list)
    """Recipients that get the message but appear in no header."""
    subject: Annotated[HeaderText, Field(min_length=1, max_length=998)]
    """The subject line: one line, no control characters, no RFC 2047 encoded words."""
    text: Annotated[str, Field(max_length=MAX_BODY_CHARS)] | None = None
    """The plain-text body. Give `text`, `html` or both (sent as multipart/alternative)."""
    html: Annotated[str, Field(max_length=MAX_BODY_CHARS)] | None = None
    """The HTML body."""
    reply_to: Address | None = None
    """Where replies go (the Reply-To header)."""

    @model_validator(mode="after")
    def _body_and_recipients(self) -> EmailArgs:
        if self.text is None and self.html is None:
            raise ValueError("give text, html or both")
        total = len(self.to) + len(self.cc) + len(self.bcc)
        if total > MAX_RECIPIENTS:
            raise ValueError(f"at most {MAX_RECIPIENTS} recipients in to, cc and bcc together")
        return self

    def envelope_recipients(self) -> list[str]:
        """Every recipient once, in to, cc, bcc order."""
        seen: set[str] = set()
        out: list[str] = []
        for addr in (*self.to, *self.cc, *self.bcc):
            if addr.lower() not in seen:
                seen.add(addr.lower())
                out.append(addr)
        return out


def sender_address(settings: Settings) -> str:
    """The envelope sender from `JOBYARD_SMTP_FROM` (which may carry a display name)."""
    addr = email.utils.parseaddr(settings.smtp_from)[1]
    if "@" not in addr:
        raise PermanentError(
            f"JOBYARD_SMTP_FROM {settings.smtp_from!r} is not an email address "
            "(e.g. 'Jobyard <jobs@example.com>')"
        )
    return addr


def message_id(job_id: str, sender: str) -> str:
    """The Message-ID of job `job_id`'s email: the same on every attempt."""
    return f"<jobyard.{job_id}@{sender.rpartition('@')[2]}>"


def _checked_headers(args: EmailArgs, sender_header: str) -> None:
    """Check every header-bound value again: a message forged into Redis skips the API."""
    values = {
        "JOBYARD_SMTP_FROM": [sender_header],
        "to": list(args.to),
        "cc": list(args.cc),
        "reply_to": [args.reply_to] if args.reply_to else [],
        "subject": [args.subject],
    }
    for field, items in values.items():
        for value in items:
            problem = header_text_problem(value)
            if problem:
                raise PermanentError(f"{field}: {problem}; the message was not sent")


def build_message(args: EmailArgs, *, sender_header: str, msg_id: str) -> EmailMessage:
    """The message as sent (no Bcc header); header-bound values are checked first."""
    _checked_headers(args, sender_header)
    msg = EmailMessage(policy=header_policy())
    msg["From"] = sender_header
    msg["To"] = ", ".join(args.to)
    if args.cc:
        msg["Cc"] = ", ".join(args.cc)
    if args.reply_to:
        msg["Reply-To"] = args.reply_to
    msg["Subject"] = args.subject
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = msg_id
    if args.text is not None:
        msg.set_content(args.text)
        if args.html is not None:
            msg.add_alternative(args.html, subtype="html")
    else:
        assert args.html is not None
        msg.set_content(args.html, subtype="html")
    return msg


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error
    shown = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{exc.smtp_code} {shown}".strip()


def _by_code(code: int, message: str) -> Exception:
    """4xx (and unknown codes) retry; 5xx do not."""
    if 500 <= code < 600:
        return PermanentError(message)
    return RetryableError(message)


def classify(exc: Exception, settings: Settings) -> Exception:
    """The job error an SMTP failure becomes (`RetryableError` or `PermanentError`)."""
    where = f"SMTP {settings.smtp_host}:{settings.smtp_port}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = exc.recipients
        detail = "; ".join(f"{addr}: {code} {_text(msg)}" for addr, (code, msg) in refused.items())
        if any(400 <= code < 500 for code, _ in refused.values()):
            return RetryableError(f"{where}: every recipient was refused, some for now: {detail}")
        return PermanentError(f"{where}: every recipient was refused: {detail}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _by_code(
            exc.smtp_code,
            f"{where}: login as {settings.smtp_username!r} failed: {_reply(exc)} "
            "(check JOBYARD_SMTP_USERNAME and JOBYARD_SMTP_PASSWORD)",
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentError(
            f"{where}: {exc} (STARTTLS needs a relay that offers it; AUTH is often offered "
            "only after STARTTLS: set JOBYARD_SMTP_STARTTLS=true)"
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return RetryableError(f"{where}: the server closed the connection: {exc}")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(exc.smtp_code, f"{where} answered {_reply(exc)}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(
            f"{where}: TLS certificate not trusted: {getattr(exc, 'verify_message', None) or exc} "
            "(the relay's CA must be in the system trust store or SSL_CERT_FILE)"
        )
    if isinstance(exc, smtplib.SMTPException):
        return PermanentError(f"{where}: {exc}")
    if isinstance(exc, OSError):
        return RetryableError(f"{where}: cannot talk to the relay: {exc or type(exc).__name__}")
    return exc


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _login(smtp: smtplib.SMTP, settings: Settings) -> None:
    """Log in when a username and password are configured (empty counts as unset)."""
    username = settings.smtp_username or ""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
    if not username and not password:
        return
    if not username or not password:
        raise PermanentError(
            "set both JOBYARD_SMTP_USERNAME and JOBYARD_SMTP_PASSWORD to log in, or neither"
        )
    smtp.login(username, password)


def written_message(msg: EmailMessage, international: bool) -> bytes:
    """`msg` as the relay gets it, after checking its header block holds only our headers."""
    policy = header_policy()
    if international:
        policy = policy.clone(utf8=True)
    expected = list(msg.keys())
    try:
        raw = msg.as_bytes(policy=policy)
        check_header_block(raw, expected)
    except (HeaderInjectionError, ValueError) as exc:  # HeaderWriteError is a ValueError
        raise PermanentError(f"refusing to send: {exc}") from exc
    return raw


def deliver_message(
    settings: Settings, msg: EmailMessage, sender: str, recipients: list[str]
) -> dict[str, tuple[int, bytes]]:
    """Hand `msg` to the relay; return the recipients it refused (code, reply)."""
    international = not all(a.isascii() for a in (sender, *recipients))
    raw = written_message(msg, international)
    # Connecting in the constructor also sets the name STARTTLS verifies the certificate for.
    smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s)
    try:
        smtp.ehlo()
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        _login(smtp, settings)
        options = ["SMTPUTF8", "BODY=8BITMIME"] if international else []
        return smtp.sendmail(sender, recipients, raw, mail_options=options)
    finally:
        # The message is accepted once DATA succeeded: a failing QUIT must not retry it.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
        smtp.close()


@job("email.send", args=EmailArgs, queue="emails", retry=EMAIL_RETRY, idempotent=True)
def send(ctx: JobContext, args: EmailArgs) -> dict[str, Any]:
    """Send an email through the configured SMTP relay (STARTTLS and login optional).

    Result: `{"message_id": ..., "accepted": [addresses], "refused": {address: {"code",
    "message"}}}`.
    """
    if not interpreter_has_cve_2024_6923_fix():
        raise PermanentError(
            f"this Python ({platform.python_version()}) lacks the fix for CVE-2024-6923 (mail "
            "header injection): run jobyard on CPython 3.11.10+, 3.12.5+, 3.13+ or a "
            "distribution build that carries it (the jobyard image does); nothing was sent"
        )
    settings = ctx.settings
    sender = sender_address(settings)
    msg_id = message_id(ctx.job_id, sender)
    msg = build_message(args, sender_header=settings.smtp_from, msg_id=msg_id)
    recipients = args.envelope_recipients()
    try:
        refused = deliver_message(settings, msg, sender, recipients)
    except PermanentError:
        raise
    except Exception as exc:
        mapped = classify(exc, settings)
        if mapped is exc:
            raise
        raise mapped from exc
    return {
        "message_id": msg_id,
        "accepted": [r for r in recipients if r not in refused],
        "refused": {
            addr: {"code": code, "message": _text(reply)} for addr, (code, reply) in refused.items()
        },
    }
