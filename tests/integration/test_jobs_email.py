"""email.send against a real aiosmtpd relay: plain, STARTTLS + AUTH, and through a worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobyard.core import keys
from jobyard.core.records import JobState
from jobyard.core.registry import PermanentError, RetryableError
from jobyard.jobs.email import EmailArgs, send
from tests.support.jobs import Jobs, start_worker
from tests.support.smtp_relay import RecordingHandler, Relay, TlsFiles, make_tls
from tests.support.webhook_receiver import free_port

pytestmark = pytest.mark.integration

SENDER = "Jobyard <jobs@example.com>"
ARGS: dict[str, Any] = {
    "to": ["ada@example.com", "alan@example.com"],
    "cc": ["grace@example.com"],
    "bcc": ["audit@example.com"],
    "subject": "Your report is ready",
    "text": "Download it from the portal.",
    "html": "<p>Download it from the <a href='https://portal.example.com'>portal</a>.</p>",
    "reply_to": "support@example.com",
}


def smtp_env(relay: Relay, **extra: str) -> dict[str, str]:
    return {
        "JOBYARD_SMTP_HOST": "127.0.0.1",
        "JOBYARD_SMTP_PORT": str(relay.port),
        "JOBYARD_SMTP_FROM": SENDER,
        "JOBYARD_SMTP_TIMEOUT_S": "10",
        **extra,
    }


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls(tmp_path / "tls")


@pytest.fixture
def relay() -> Iterator[Relay]:
    with Relay() as r:
        yield r


def direct(
    redis_url: str, config_path: Path, env: dict[str, str], args: dict[str, Any], job_id: str
) -> dict[str, Any]:
    jobs = Jobs(redis_url, config_path, env=env)
    try:
        return send(jobs.context("email.send", job_id=job_id), EmailArgs.model_validate(args))
    finally:
        jobs.close()


def test_sends_multipart_with_headers_and_bcc_only_in_the_envelope(
    relay: Relay, redis_url: str, config_path: Path
) -> None:
    result = direct(redis_url, config_path, smtp_env(relay), ARGS, "job-7")
    assert result == {
        "message_id": "<jobyard.job-7@example.com>",
        "accepted": [
            "ada@example.com",
            "alan@example.com",
            "grace@example.com",
            "audit@example.com",
        ],
        "refused": {},
    }
    (got,) = relay.messages
    assert got.mail_from == "jobs@example.com"
    assert got.rcpt_tos == result["accepted"]
    msg = got.message
    assert msg["From"] == SENDER
    assert msg["To"] == "ada@example.com, alan@example.com"
    assert msg["Cc"] == "grace@example.com"
    assert msg["Reply-To"] == "support@example.com"
    assert msg["Subject"] == "Your report is ready"
    assert msg["Message-ID"] == "<jobyard.job-7@example.com>"
    assert msg["Bcc"] is None
    assert b"audit@example.com" not in got.raw
    assert msg.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), p.get_content().strip()) for p in msg.iter_parts()]
    assert parts == [("text/plain", ARGS["text"]), ("text/html", ARGS["html"])]


def test_some_recipients_refused_still_sends_and_reports_them(
    redis_url: str, config_path: Path
) -> None:
    handler = RecordingHandler(rcpt_replies=["550 5.1.1 <ada@example.com>: no such user"])
    with Relay(handler) as relay:
        result = direct(redis_url, config_path, smtp_env(relay), ARGS, "job-8")
    assert result["refused"] == {
        "ada@example.com": {"code": 550, "message": "5.1.1 <ada@example.com>: no such user"}
    }
    assert result["accepted"] == ["alan@example.com", "grace@example.com", "audit@example.com"]
    assert relay.messages[0].rcpt_tos == result["accepted"]


def test_starttls_and_auth(
    tls: TlsFiles, redis_url: str, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    with Relay(tls=tls, credentials=("mailer", "s3cret")) as relay:
        env = smtp_env(
            relay,
            JOBYARD_SMTP_STARTTLS="true",
            JOBYARD_SMTP_USERNAME="mailer",
            JOBYARD_SMTP_PASSWORD="s3cret",
        )
        result = direct(redis_url, config_path, env, ARGS, "job-tls")
        assert relay.logins == ["mailer"]
        assert len(relay.messages) == 1
        assert result["message_id"] == "<jobyard.job-tls@example.com>"

        with pytest.raises(PermanentError, match="login as 'mailer' failed: 535"):
            direct(redis_url, config_path, {**env, "JOBYARD_SMTP_PASSWORD": "wrong"}, ARGS, "j2")
        # Without STARTTLS this relay offers no AUTH: a permanent, explained failure.
        with pytest.raises(PermanentError, match="set JOBYARD_SMTP_STARTTLS=true"):
            direct(redis_url, config_path, {**env, "JOBYARD_SMTP_STARTTLS": "false"}, ARGS, "j3")
        monkeypatch.delenv("SSL_CERT_FILE")
        with pytest.raises(PermanentError, match="TLS certificate not trusted"):
            direct(redis_url, config_path, env, ARGS, "j4")
    assert len(relay.messages) == 1


@pytest.mark.parametrize(
    "credentials",
    [
        {"JOBYARD_SMTP_USERNAME": "mailer"},
        {"JOBYARD_SMTP_PASSWORD": "s3cret"},
        {"JOBYARD_SMTP_USERNAME": "mailer", "JOBYARD_SMTP_PASSWORD": ""},
    ],
    ids=["username-only", "password-only", "empty-password"],
)
def test_half_configured_login_fails_permanently(
    relay: Relay, redis_url: str, config_path: Path, credentials: dict[str, str]
) -> None:
    with pytest.raises(PermanentError, match="set both JOBYARD_SMTP_USERNAME and JOBYARD_SMTP_PA"):
        direct(redis_url, config_path, smtp_env(relay, **credentials), ARGS, "job-h")
    assert relay.messages == []


def test_empty_credentials_mean_no_login(relay: Relay, redis_url: str, config_path: Path) -> None:
    env = smtp_env(relay, JOBYARD_SMTP_USERNAME="", JOBYARD_SMTP_PASSWORD="")
    assert direct(redis_url, config_path, env, ARGS, "job-e")["refused"] == {}
    assert len(relay.messages) == 1


def test_no_relay_listening_is_retryable(redis_url: str, config_path: Path) -> None:
    port = free_port()
    env = {"JOBYARD_SMTP_HOST": "127.0.0.1", "JOBYARD_SMTP_PORT": str(port)}
    with pytest.raises(RetryableError, match=f"SMTP 127.0.0.1:{port}: cannot talk to the relay"):
        direct(redis_url, config_path, env, ARGS, "job-9")


def test_worker_retries_a_451_and_keeps_the_message_id(
    spawn: Any, redis_url: str, config_path: Path
) -> None:
    handler = RecordingHandler(data_replies=["451 4.3.0 Temporary local problem"])
    with Relay(handler) as relay:
        env = smtp_env(relay)
        jobs = Jobs(redis_url, config_path)
        start_worker(spawn, "emails", env=env)
        job_id = jobs.enqueue("email.send", ARGS)
        retrying = jobs.wait_state(job_id, JobState.RETRYING)
        rec = jobs.wait(job_id)
    assert retrying.error is not None
    assert retrying.error.type == "RetryableError"
    assert "answered 451 4.3.0 Temporary local problem" in retrying.error.message
    assert rec.state is JobState.SUCCEEDED
    assert rec.attempts == 2
    assert handler.data_attempts == 2
    (got,) = relay.messages
    assert got.message["Message-ID"] == f"<jobyard.{job_id}@example.com>"
    assert rec.result["message_id"] == f"<jobyard.{job_id}@example.com>"
    assert rec.result["refused"] == {}
    jobs.close()


def test_worker_fails_a_550_without_retry(spawn: Any, redis_url: str, config_path: Path) -> None:
    refusal = "550 5.1.1 mailbox unavailable"
    handler = RecordingHandler(rcpt_replies=[refusal] * 4)
    with Relay(handler) as relay:
        jobs = Jobs(redis_url, config_path)
        start_worker(spawn, "emails", env=smtp_env(relay))
        job_id = jobs.enqueue("email.send", ARGS)
        rec = jobs.wait(job_id)
    assert rec.state is JobState.FAILED
    assert rec.attempts == 1
    assert rec.error is not None
    assert rec.error.type == "PermanentError"
    assert rec.error.message.startswith(
        f"SMTP 127.0.0.1:{relay.port}: every recipient was refused: "
        "ada@example.com: 550 5.1.1 mailbox unavailable;"
    )
    assert relay.messages == []
    assert handler.data_attempts == 0
    assert jobs.client.zcard(keys.dead_letters("emails")) == 0
    jobs.close()


# --- header injection, end to end ------------------------------------------------------

ATTACK_SUBJECT = "=?utf-8?q?Invoice=0D=0AFrom:_ceo@victim.example=0D=0ABcc:_attacker@evil.example?="


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("subject", ATTACK_SUBJECT, "args.subject"),
        ("subject", "Invoice\u2028Bcc: attacker@evil.example", "args.subject"),
        ("subject", "Invoice\x0bBcc: attacker@evil.example", "args.subject"),
        ("subject", "Invoice\x1cBcc: attacker@evil.example", "args.subject"),
        ("subject", "Invoice\x85Bcc: attacker@evil.example", "args.subject"),
        ("to", ["=?utf-8?q?a=0D=0ABcc:_x@evil.example?=@example.com"], "args.to[0]"),
        ("reply_to", "ada@example.com\u2029", "args.reply_to"),
    ],
)
@pytest.mark.anyio
async def test_the_api_refuses_header_injection_naming_the_field(
    api: Any, field: str, value: Any, where: str, redis_client: Any
) -> None:
    r = await api.post("/v1/jobs", json={"task": "email.send", "args": {**ARGS, field: value}})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    (error,) = r.json()["errors"]
    assert error["field"] == where
    assert redis_client.llen("emails") == 0


def test_a_forged_injection_never_reaches_the_relay(
    spawn: Any, relay: Relay, redis_url: str, config_path: Path
) -> None:
    """A message written straight into Redis (no API) with the CVE-2024-6923 subject: the
    worker refuses it for good and the relay receives nothing at all."""
    jobs = Jobs(redis_url, config_path)
    start_worker(spawn, "emails", env=smtp_env(relay))
    job_id = jobs.enqueue_unchecked("email.send", {**ARGS, "subject": ATTACK_SUBJECT}, "emails")
    rec = jobs.wait(job_id)
    jobs.close()
    assert rec.state in (JobState.FAILED, JobState.DEAD)
    assert rec.error is not None
    assert "subject" in rec.error.message
    assert "RFC 2047" in rec.error.message
    assert relay.messages == []
