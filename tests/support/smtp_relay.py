"""A real SMTP relay for tests (aiosmtpd), optionally with STARTTLS and AUTH."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.certs import Authority
from tests.support.webhook_receiver import free_port


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


@dataclass
class RecordingHandler:
    """Stores accepted messages; `data_replies`/`rcpt_replies` are answered first, in order."""

    data_replies: list[str] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)
    data_attempts: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_attempts += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        raw = bytes(envelope.original_content or envelope.content)
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg, raw))
        return "250 Message accepted for delivery"


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    server_context: ssl.SSLContext


def make_tls(directory: Path) -> TlsFiles:
    """A throw-away CA and a certificate for 127.0.0.1/localhost signed by it."""
    ca = Authority.create(directory, "jobyard-test-ca")
    cert_file, key_file = ca.issue_server(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return TlsFiles(ca.cert_path, context)


class Relay:
    """An aiosmtpd server on a free port of 127.0.0.1, in a thread."""

    def __init__(
        self,
        handler: RecordingHandler | None = None,
        *,
        tls: TlsFiles | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.handler = handler or RecordingHandler()
        self.port = free_port()
        self.logins: list[str] = []
        extra: dict[str, Any] = {}
        if tls is not None:
            extra.update(tls_context=tls.server_context, require_starttls=True)
        if credentials is not None:
            extra.update(
                authenticator=self._authenticator(credentials),
                auth_required=True,
                auth_require_tls=tls is not None,
            )
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **extra)

    def _authenticator(self, credentials: tuple[str, str]) -> Any:
        def check(
            server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> AuthResult:
            if not isinstance(auth_data, LoginPassword):
                return AuthResult(success=False, handled=False)
            login, password = auth_data.login.decode(), auth_data.password.decode()
            ok = (login, password) == credentials
            if ok:
                self.logins.append(login)
            return AuthResult(success=ok, handled=False)

        return check

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def __enter__(self) -> Relay:
        self.controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.controller.stop()
