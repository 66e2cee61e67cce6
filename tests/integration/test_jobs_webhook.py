"""webhook.deliver against a real local HTTP server, directly and through a real worker."""

from __future__ import annotations

import email.utils
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobyard import __version__
from jobyard.core import keys
from jobyard.core.records import JobState
from jobyard.core.registry import PermanentError, RetryableError
from jobyard.jobs.webhook import WebhookArgs, deliver, encode_body, verify_signature
from tests.support.jobs import Jobs, start_worker
from tests.support.webhook_receiver import Answer, Delivery, Receiver

pytestmark = pytest.mark.integration

SECRET = "whsec-integration"
WORKER_ENV = {"JOBYARD_WEBHOOK_SECRET": SECRET, "JOBYARD_WEBHOOK_TIMEOUT_S": "5"}
BODY: dict[str, Any] = {"event": "invoice.paid", "invoice": {"id": 42, "total": 9.5}, "ok": True}
ALLOWED = "127.0.0.2"
"""Receivers listen here: allow-listed in these tests' jobyard.yaml."""
DENIED = "127.0.0.3"
"""A loopback address no allow-list names."""
EGRESS = f"""
egress:
  allow: ["{ALLOWED}/32", "localhost"]
webhooks:
  endpoints:
    - name: billing
      hosts: ["localhost"]
"""


@pytest.fixture
def config_path(config_path: Path) -> Path:
    config_path.write_text(config_path.read_text() + EGRESS)
    return config_path


@pytest.fixture
def jobs(redis_url: str, config_path: Path) -> Iterator[Jobs]:
    j = Jobs(redis_url, config_path, env=WORKER_ENV)
    yield j
    j.close()


def free_port(host: str = ALLOWED) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def assert_signed(d: Delivery, job_id: str, url: str) -> None:
    """The delivery carries jobyard's headers and a valid signature over its exact body."""
    assert d.headers["content-type"] == "application/json"
    assert d.headers["user-agent"] == f"jobyard/{__version__}"
    assert d.headers["x-jobyard-delivery"] == job_id
    assert abs(int(d.headers["x-jobyard-timestamp"]) - d.received_at) < 5
    assert verify_signature(
        SECRET,
        d.headers["x-jobyard-timestamp"],
        job_id,
        url,
        d.body,
        d.headers["x-jobyard-signature"],
    )
    assert d.body == encode_body(BODY)
    assert json.loads(d.body) == BODY


# --- direct calls: the job function with a real context, no worker ---------------------


def test_direct_delivery_sends_signed_exact_body_and_extra_headers(jobs: Jobs) -> None:
    with Receiver(host=ALLOWED, secrets=[SECRET]) as rx:
        args = WebhookArgs.model_validate(
            {"url": rx.url, "body": BODY, "event": "invoice.paid", "headers": {"X-Tenant": "t1"}}
        )
        result = deliver(jobs.context("webhook.deliver", job_id="dlv-1"), args)
    assert result["status"] == 200
    assert result["delivery_id"] == "dlv-1"
    assert isinstance(result["duration_ms"], float) and result["duration_ms"] >= 0
    assert len(rx.deliveries) == 1
    d = rx.deliveries[0]
    assert (d.method, d.path) == ("POST", "/hooks/test")
    assert_signed(d, "dlv-1", rx.url)
    assert d.verified is True  # by the recipe of docs/webhooks.md
    assert d.headers["x-jobyard-event"] == "invoice.paid"
    assert d.headers["x-tenant"] == "t1"


@pytest.mark.parametrize("secret_env", [{}, {"JOBYARD_WEBHOOK_SECRET": ""}], ids=["unset", "empty"])
def test_without_a_secret_signing_fails_permanently_and_sends_nothing(
    redis_url: str, config_path: Path, secret_env: dict[str, str]
) -> None:
    unsigned = Jobs(redis_url, config_path, env=secret_env)
    with Receiver(host=ALLOWED, secrets=[SECRET]) as rx:
        args = WebhookArgs.model_validate({"url": rx.url, "body": BODY})
        with pytest.raises(PermanentError, match=r"JOBYARD_WEBHOOK_SECRET is not set \(or empty\)"):
            deliver(unsigned.context("webhook.deliver"), args)
        assert rx.deliveries == []
        # sign=false is the explicit opt-out: sent, without a signature header.
        opt_out = WebhookArgs.model_validate({"url": rx.url, "body": BODY, "sign": False})
        assert deliver(unsigned.context("webhook.deliver"), opt_out)["status"] == 200
    assert len(rx.deliveries) == 1
    assert "x-jobyard-signature" not in rx.deliveries[0].headers
    assert rx.deliveries[0].headers["x-jobyard-delivery"] == "job-1"
    unsigned.close()


def test_redirect_is_not_followed_and_fails_permanently(jobs: Jobs) -> None:
    location = "http://127.0.0.1:1/elsewhere?token=leak"
    with Receiver([Answer(302, {"Location": location}, b"moved")], host=ALLOWED) as rx:
        args = WebhookArgs.model_validate({"url": rx.url + "?sig=q1", "body": BODY})
        with pytest.raises(PermanentError) as info:
            deliver(jobs.context("webhook.deliver"), args)
    assert str(info.value) == f"POST {rx.url} answered 302 Found: redirects are not followed"
    assert len(rx.deliveries) == 1
    assert rx.deliveries[0].path == "/hooks/test?sig=q1"


def test_slow_receiver_times_out_as_retryable(redis_url: str, config_path: Path) -> None:
    fast = Jobs(redis_url, config_path, env={**WORKER_ENV, "JOBYARD_WEBHOOK_TIMEOUT_S": "0.3"})
    with Receiver([Answer(200, delay_s=2.0)], host=ALLOWED) as rx:
        args = WebhookArgs.model_validate({"url": rx.url, "body": BODY})
        with pytest.raises(RetryableError, match=r"timed out after 0\.3 s") as info:
            deliver(fast.context("webhook.deliver"), args)
    assert info.value.delay_s is None
    fast.close()


def test_503_with_http_date_retry_after_sets_the_delay(jobs: Jobs) -> None:
    when = email.utils.formatdate(time.time() + 40, usegmt=True)
    with Receiver([Answer(503, {"Retry-After": when}, b"maintenance")], host=ALLOWED) as rx:
        args = WebhookArgs.model_validate({"url": rx.url, "body": BODY})
        with pytest.raises(
            RetryableError, match=r"answered 503 Service Unavailable: server error, will retry$"
        ) as info:
            deliver(jobs.context("webhook.deliver"), args)
    assert info.value.delay_s is not None
    assert 37 <= info.value.delay_s <= 40


# --- through a real worker ------------------------------------------------------------


def test_worker_delivers_and_records_the_result(spawn: Any, jobs: Jobs) -> None:
    start_worker(spawn, "default", env=WORKER_ENV)
    with Receiver(host=ALLOWED, secrets=[SECRET]) as rx:
        job_id = jobs.enqueue("webhook.deliver", {"url": rx.url, "body": BODY})
        rec = jobs.wait(job_id)
    assert rec.state is JobState.SUCCEEDED
    assert rec.attempts == 1
    assert rec.result["status"] == 200
    assert rec.result["delivery_id"] == job_id
    assert set(rec.result) == {"status", "delivery_id", "duration_ms"}
    assert len(rx.deliveries) == 1
    assert_signed(rx.deliveries[0], job_id, rx.url)


def test_500_is_retried_with_the_same_delivery_id(spawn: Any, jobs: Jobs) -> None:
    start_worker(spawn, "default", env=WORKER_ENV)
    with Receiver([Answer(500, body=b"database down")], host=ALLOWED) as rx:
        job_id = jobs.enqueue("webhook.deliver", {"url": rx.url, "body": BODY})
        retrying = jobs.wait_state(job_id, JobState.RETRYING)
        rec = jobs.wait(job_id)
    assert retrying.error is not None
    assert retrying.error.type == "RetryableError"
    assert retrying.error.message == (
        f"POST {rx.url} answered 500 Internal Server Error: server error, will retry"
    )
    assert rec.state is JobState.SUCCEEDED
    assert rec.attempts == 2
    assert rec.error is None
    assert len(rx.deliveries) == 2
    for d in rx.deliveries:
        assert_signed(d, job_id, rx.url)


def test_429_waits_for_retry_after_not_the_default_backoff(spawn: Any, jobs: Jobs) -> None:
    start_worker(spawn, "default", env=WORKER_ENV)
    with Receiver([Answer(429, {"Retry-After": "1"}, b"slow down")], host=ALLOWED) as rx:
        job_id = jobs.enqueue("webhook.deliver", {"url": rx.url, "body": BODY})
        retrying = jobs.wait_state(job_id, JobState.RETRYING)
        rec = jobs.wait(job_id)
    assert rec.state is JobState.SUCCEEDED
    assert rec.attempts == 2
    first, second = rx.deliveries
    # The default backoff after attempt 1 is 2-4 s; Retry-After asked for 1 s.
    assert retrying.eta is not None
    assert 0.95 <= retrying.eta - first.received_at < 1.9
    assert second.received_at - first.received_at >= 0.95
    assert second.headers["x-jobyard-delivery"] == first.headers["x-jobyard-delivery"] == job_id


def test_400_fails_at_once_naming_the_status(spawn: Any, jobs: Jobs) -> None:
    start_worker(spawn, "default", env=WORKER_ENV)
    with Receiver([Answer(400, body=b'{"error": "missing field\n customer"}')], host=ALLOWED) as rx:
        job_id = jobs.enqueue("webhook.deliver", {"url": rx.url, "body": BODY})
        rec = jobs.wait(job_id)
    assert rec.state is JobState.FAILED
    assert rec.attempts == 1
    assert rec.error is not None
    assert rec.error.type == "PermanentError"
    assert rec.error.message == (
        f"POST {rx.url} answered 400 Bad Request: refused by the receiver, not retried"
    )
    assert len(rx.deliveries) == 1
    assert jobs.client.zcard(keys.dead_letters("default")) == 0


def test_connection_refused_is_retried_until_the_receiver_is_up(spawn: Any, jobs: Jobs) -> None:
    port = free_port()
    url = f"http://{ALLOWED}:{port}/hooks/test"
    start_worker(spawn, "default", env=WORKER_ENV)
    job_id = jobs.enqueue("webhook.deliver", {"url": url, "body": BODY})
    retrying = jobs.wait_state(job_id, JobState.RETRYING)
    assert retrying.attempts == 1
    assert retrying.error is not None
    assert retrying.error.type == "RetryableError"
    assert f"POST {url} failed" in retrying.error.message
    assert "Connection refused" in retrying.error.message
    with Receiver(port=port, host=ALLOWED, secrets=[SECRET]) as rx:
        rec = jobs.wait(job_id)
    assert rec.state is JobState.SUCCEEDED
    assert rec.attempts == 2
    assert len(rx.deliveries) == 1
    assert_signed(rx.deliveries[0], job_id, rx.url)


# --- signatures from the receiver's side -------------------------------------------------


def test_a_delivery_replayed_to_another_receiver_or_with_another_id_fails_verification(
    jobs: Jobs,
) -> None:
    with (
        Receiver(host=ALLOWED, secrets=[SECRET]) as mine,
        Receiver(host=ALLOWED, secrets=[SECRET], path="/victim") as victim,
    ):
        # Someone who may enqueue has jobyard sign a body for their own URL...
        args = WebhookArgs.model_validate({"url": mine.url, "body": BODY})
        deliver(jobs.context("webhook.deliver", job_id="dlv-mine"), args)
        (signed,) = mine.deliveries
        assert signed.verified is True
        # ...and replays it, byte for byte, to another receiver holding the same secret.
        replay = {k: v for k, v in signed.headers.items() if k.startswith("x-jobyard-")}
        with httpx.Client(trust_env=False) as http:
            http.post(victim.url, content=signed.body, headers=replay)
            # Or to the same receiver, as another delivery (to slip past deduplication).
            http.post(mine.url, content=signed.body, headers={**replay, "x-jobyard-delivery": "x"})
            # The untouched request still verifies where it was meant to go (the control).
            http.post(mine.url, content=signed.body, headers=replay)
    assert [d.verified for d in victim.deliveries] == [False]
    assert [d.verified for d in mine.deliveries] == [True, False, True]


def test_per_endpoint_secrets_by_host_or_name_and_rotation(
    redis_url: str, config_path: Path, tmp_path: Path
) -> None:
    secrets_file = tmp_path / "webhook-secrets.json"
    secrets_file.write_text(json.dumps({"billing": ["bill-new", "bill-old"]}))
    env = {**WORKER_ENV, "JOBYARD_WEBHOOK_SECRETS_FILE": str(secrets_file)}
    rotating = {**env, "JOBYARD_WEBHOOK_SECRET": "default-new,default-old"}
    j = Jobs(redis_url, config_path, env=rotating)
    with Receiver(host="127.0.0.1", secrets=["bill-old"]) as by_host:
        # localhost is the billing endpoint's host: its secrets sign, both while rotating.
        url = f"http://localhost:{by_host.port}/hooks/test"
        deliver(
            j.context("webhook.deliver"), WebhookArgs.model_validate({"url": url, "body": BODY})
        )
    (d,) = by_host.deliveries
    assert d.headers["x-jobyard-signature"].count("v1=") == 2
    for secret, ok in (("bill-new", True), ("bill-old", True), ("default-new", False)):
        assert ok is verify_signature(
            secret,
            d.headers["x-jobyard-timestamp"],
            "job-1",
            url,
            d.body,
            d.headers["x-jobyard-signature"],
        )
    with (
        Receiver(host=ALLOWED, secrets=["bill-new"]) as by_name,
        Receiver(host=ALLOWED, secrets=["default-old"]) as default,
    ):
        named = {"url": by_name.url, "body": BODY, "endpoint": "billing"}
        deliver(j.context("webhook.deliver"), WebhookArgs.model_validate(named))
        plain = {"url": default.url, "body": BODY}
        deliver(j.context("webhook.deliver"), WebhookArgs.model_validate(plain))
    assert [x.verified for x in by_name.deliveries] == [True]
    assert [x.verified for x in default.deliveries] == [True]
    assert default.deliveries[0].headers["x-jobyard-signature"].count("v1=") == 2
    j.close()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"billing": []}', "key 'billing': must be a list of 1 or 2 non-empty strings"),
        ('{"billing": ["s3cr3t-a", "s3cr3t-b", "s3cr3t-c"]}', "key 'billing'"),
        ('{"billing": ["s3cr3t-a"], "biling": ["s3cr3t-b"]}', "key(s) 'biling' name no endpoint"),
        ('{"other": ["s3cr3t-a"]}', "key(s) 'other' name no endpoint"),
        ("{}", "no secrets for endpoint(s) 'billing'"),
    ],
)
def test_a_bad_secrets_file_stops_start_naming_file_and_key_never_a_secret(
    redis_url: str, config_path: Path, tmp_path: Path, content: str, message: str
) -> None:
    from jobyard.core.errors import ConfigError

    path = tmp_path / "secrets.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        Jobs(redis_url, config_path, env={"JOBYARD_WEBHOOK_SECRETS_FILE": str(path)})
    text = str(info.value)
    assert f"JOBYARD_WEBHOOK_SECRETS_FILE ({path})" in text
    assert message in text
    assert "s3cr3t" not in text


def test_a_default_secret_with_more_than_two_parts_is_refused_without_echo(
    redis_url: str, config_path: Path
) -> None:
    from jobyard.core.errors import ConfigError

    for value in ("s3cr3t-a,s3cr3t-b,s3cr3t-c", "s3cr3t-a,"):
        with pytest.raises(ConfigError, match="JOBYARD_WEBHOOK_SECRET: give one secret") as info:
            Jobs(redis_url, config_path, env={"JOBYARD_WEBHOOK_SECRET": value})
        assert "s3cr3t" not in str(info.value)


# --- egress: where deliveries may go ------------------------------------------------------


def _resolver(monkeypatch: pytest.MonkeyPatch, name: str, answers: list[str]) -> list[str]:
    """Make `name` resolve to answers[0], then answers[1], ...; returns the lookups made."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        address = answers[min(len(lookups), len(answers) - 1)]
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return lookups


def test_a_name_is_resolved_once_and_the_checked_address_is_connected_to(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Receiver(host=ALLOWED, secrets=[SECRET]) as rx:
        # Rebinding: allowed at the check, the metadata service at a second lookup.
        lookups = _resolver(monkeypatch, "rebind.test", [ALLOWED, "169.254.169.254"])
        url = f"http://rebind.test:{rx.port}/hooks/test"
        args = WebhookArgs.model_validate({"url": url, "body": BODY})
        assert deliver(jobs.context("webhook.deliver"), args)["status"] == 200
    assert lookups == ["rebind.test"]
    (d,) = rx.deliveries
    assert d.headers["host"] == f"rebind.test:{rx.port}"  # the name, not the address
    assert verify_signature(
        SECRET,
        d.headers["x-jobyard-timestamp"],
        "job-1",
        url,
        d.body,
        d.headers["x-jobyard-signature"],
    )


def test_a_name_resolving_to_a_denied_address_fails_permanently_and_sends_nothing(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Receiver(host=ALLOWED) as rx:
        # Denied at the (only) lookup; a second one would have given the allowed listener.
        lookups = _resolver(monkeypatch, "internal.test", ["10.0.0.1", ALLOWED])
        url = f"http://internal.test:{rx.port}/hooks/test?token=t0p"
        args = WebhookArgs.model_validate({"url": url, "body": BODY})
        with pytest.raises(PermanentError) as info:
            deliver(jobs.context("webhook.deliver"), args)
    assert lookups == ["internal.test"]
    assert rx.deliveries == []
    assert str(info.value) == (
        f"POST http://internal.test:{rx.port}/hooks/test refused before connecting: "
        "internal.test resolves to 10.0.0.1, a private (RFC 1918) address, which jobyard "
        "does not connect to unless egress.allow in jobyard.yaml lists it"
    )


def test_worker_refuses_a_denied_destination_at_delivery_without_retry(
    spawn: Any, jobs: Jobs
) -> None:
    start_worker(spawn, "default", env=WORKER_ENV)
    with Receiver(host=DENIED) as rx:
        # A producer that skipped enqueue-time validation (or a name that changed since).
        job_id = jobs.enqueue_unchecked(
            "webhook.deliver", {"url": rx.url, "body": BODY}, queue="default"
        )
        rec = jobs.wait(job_id)
    assert rec.state is JobState.FAILED
    assert rec.attempts == 1
    assert rec.error is not None and rec.error.type == "PermanentError"
    assert f"refused before connecting: {DENIED}, a loopback address" in rec.error.message
    assert rx.deliveries == []


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (500, {"X-Debug": "secret-header-value"}),
        (302, {"Location": "http://10.0.0.1/admin?token=leak"}),
        (404, {"Set-Cookie": "session=leak"}),
    ],
)
def test_job_errors_hold_no_body_header_or_query_of_the_answer(
    spawn: Any, jobs: Jobs, status: int, headers: dict[str, str]
) -> None:
    start_worker(spawn, "default", env={**WORKER_ENV})
    body = b"stack trace: password=hunter2 at /srv/app.py line 7"
    with Receiver([Answer(status, headers, body)] * 8, host=ALLOWED) as rx:
        url = rx.url + "?token=q-leak"
        job_id = jobs.enqueue("webhook.deliver", {"url": url, "body": BODY})
        rec = jobs.wait(job_id, lambda r: r.error is not None)
    assert rec.error is not None
    message = rec.error.message
    assert message.startswith(f"POST {rx.url} answered {status} ")
    for leak in ("hunter2", "stack trace", "leak", "secret-header-value", "10.0.0.1", "q-leak"):
        assert leak not in message
    assert len(rx.deliveries) >= 1


def test_a_dripping_server_is_cut_at_the_deadline(redis_url: str, config_path: Path) -> None:
    env = {
        **WORKER_ENV,
        "JOBYARD_WEBHOOK_TIMEOUT_S": "1",
        "JOBYARD_WEBHOOK_DEADLINE_S": "1.5",
    }
    j = Jobs(redis_url, config_path, env=env)
    # One byte every 0.3 s: no single read waits the 1 s timeout; the answer takes ~20 s.
    with Receiver([Answer(200, body=b"ok" * 20, drip_s=0.3)], host=ALLOWED) as rx:
        args = WebhookArgs.model_validate({"url": rx.url, "body": BODY})
        started = time.monotonic()
        with pytest.raises(RetryableError) as info:
            deliver(j.context("webhook.deliver"), args)
        took_s = time.monotonic() - started
    assert str(info.value) == (
        f"POST {rx.url} did not complete within the 1.5 s deadline (JOBYARD_WEBHOOK_DEADLINE_S)"
    )
    assert 1.5 <= took_s < 2.5
    j.close()
