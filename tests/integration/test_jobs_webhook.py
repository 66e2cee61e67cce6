"""webhook.deliver against a real local HTTP server, directly and through a real worker."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobyard import __version__
from jobyard.core import keys
from jobyard.core.records import JobState
from jobyard.core.registry import PermanentError, RetryableError
from jobyard.jobs.webhook import WebhookArgs, deliver, encode_body, verify_signature
from tests.support.jobs import Jobs, start_worker
from tests.support.webhook_receiver import Answer, Delivery, Receiver, free_port

pytestmark = pytest.mark.integration

SECRET = "whsec-integration"
WORKER_ENV = {"JOBYARD_WEBHOOK_SECRET": SECRET, "JOBYARD_WEBHOOK_TIMEOUT_S": "5"}
BODY: dict[str, Any] = {"event": "invoice.paid", "invoice": {"id": 42, "total": 9.5}, "ok": True}


@pytest.fixture
def jobs(redis_url: str, config_path: Path) -> Iterator[Jobs]:
    j = Jobs(redis_url, config_path, env=WORKER_ENV)
    yield j
    j.close()


def assert_signed(d: Delivery, job_id: str) -> None:
    """The delivery carries jobyard's headers and a valid signature over its exact body."""
    assert d.headers["content-type"] == "application/json"
    assert d.headers["user-agent"] == f"jobyard/{__version__}"
    assert d.headers["x-jobyard-delivery"] == job_id
    assert abs(int(d.headers["x-jobyard-timestamp"]) - d.received_at) < 5
    assert verify_signature(
        SECRET, d.headers["x-jobyard-timestamp"], d.body, d.headers["x-jobyard-signature"]
    )
    assert d.body == encode_body(BODY)
    assert json.loads(d.body) == BODY


# --- direct calls: the job function with a real context, no worker ---------------------


def test_direct_delivery_sends_signed_exact_body_and_extra_headers(jobs: Jobs) -> None:
    with Receiver() as rx:
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
    assert_signed(d, "dlv-1")
    assert d.headers["x-jobyard-event"] == "invoice.paid"
    assert d.headers["x-tenant"] == "t1"


@pytest.mark.parametrize("secret_env", [{}, {"JOBYARD_WEBHOOK_SECRET": ""}], ids=["unset", "empty"])
def test_without_a_secret_signing_fails_permanently_and_sends_nothing(
    redis_url: str, config_path: Path, secret_env: dict[str, str]
) -> None:
    unsigned = Jobs(redis_url, config_path, env=secret_env)
    with Receiver() as rx:
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
    with Receiver([Answer(302, {"Location": "http://127.0.0.1:1/elsewhere"}, b"")]) as rx:
        args = WebhookArgs.model_validate({"url": rx.url, "body": BODY})
        with pytest.raises(PermanentError) as info:
            deliver(jobs.context("webhook.deliver"), args)
    assert "answered 302 Found" in str(info.value)
    assert "redirects are not followed; Location: http://127.0.0.1:1/elsewhere" in str(info.value)
    assert len(rx.deliveries) == 1


def test_slow_receiver_times_out_as_retryable(redis_url: str, config_path: Path) -> None:
    fast = Jobs(redis_url, config_path, env={**WORKER_ENV, "JOBYARD_WEBHOOK_TIMEOUT_S": "0.3"})
    with Receiver([Answer(200, delay_s=2.0)]) as rx:
        args = WebhookArgs.model_validate({"url": rx.url, "body": BODY})
        with pytest.raises(RetryableError, match=r"timed out after 0\.3 s") as info:
            deliver(fast.context("webhook.deliver"), args)
    assert info.value.delay_s is None
    fast.close()


def test_503_with_http_date_retry_after_sets_the_delay(jobs: Jobs) -> None:
    when = email.utils.formatdate(time.time() + 40, usegmt=True)
    with Receiver([Answer(503, {"Retry-After": when}, b"maintenance")]) as rx:
        args = WebhookArgs.model_validate({"url": rx.url, "body": BODY})
        with pytest.raises(
            RetryableError, match="answered 503 Service Unavailable: maintenance"
        ) as info:
            deliver(jobs.context("webhook.deliver"), args)
    assert info.value.delay_s is not None
    assert 37 <= info.value.delay_s <= 40


# --- through a real worker ------------------------------------------------------------


def test_worker_delivers_and_records_the_result(spawn: Any, jobs: Jobs) -> None:
    start_worker(spawn, "default", env=WORKER_ENV)
    with Receiver() as rx:
        job_id = jobs.enqueue("webhook.deliver", {"url": rx.url, "body": BODY})
        rec = jobs.wait(job_id)
    assert rec.state is JobState.SUCCEEDED
    assert rec.attempts == 1
    assert rec.result["status"] == 200
    assert rec.result["delivery_id"] == job_id
    assert set(rec.result) == {"status", "delivery_id", "duration_ms"}
    assert len(rx.deliveries) == 1
    assert_signed(rx.deliveries[0], job_id)


def test_500_is_retried_with_the_same_delivery_id(spawn: Any, jobs: Jobs) -> None:
    start_worker(spawn, "default", env=WORKER_ENV)
    with Receiver([Answer(500, body=b"database down")]) as rx:
        job_id = jobs.enqueue("webhook.deliver", {"url": rx.url, "body": BODY})
        retrying = jobs.wait_state(job_id, JobState.RETRYING)
        rec = jobs.wait(job_id)
    assert retrying.error is not None
    assert retrying.error.type == "RetryableError"
    assert "answered 500 Internal Server Error: database down" in retrying.error.message
    assert rec.state is JobState.SUCCEEDED
    assert rec.attempts == 2
    assert rec.error is None
    assert len(rx.deliveries) == 2
    for d in rx.deliveries:
        assert_signed(d, job_id)


def test_429_waits_for_retry_after_not_the_default_backoff(spawn: Any, jobs: Jobs) -> None:
    start_worker(spawn, "default", env=WORKER_ENV)
    with Receiver([Answer(429, {"Retry-After": "1"}, b"slow down")]) as rx:
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
    with Receiver([Answer(400, body=b'{"error": "missing field\n customer"}')]) as rx:
        job_id = jobs.enqueue("webhook.deliver", {"url": rx.url, "body": BODY})
        rec = jobs.wait(job_id)
    assert rec.state is JobState.FAILED
    assert rec.attempts == 1
    assert rec.error is not None
    assert rec.error.type == "PermanentError"
    assert rec.error.message == (
        f'POST {rx.url} answered 400 Bad Request: {{"error": "missing field customer"}}'
    )
    assert len(rx.deliveries) == 1
    assert jobs.client.zcard(keys.dead_letters("default")) == 0


def test_connection_refused_is_retried_until_the_receiver_is_up(spawn: Any, jobs: Jobs) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/test"
    start_worker(spawn, "default", env=WORKER_ENV)
    job_id = jobs.enqueue("webhook.deliver", {"url": url, "body": BODY})
    retrying = jobs.wait_state(job_id, JobState.RETRYING)
    assert retrying.attempts == 1
    assert retrying.error is not None
    assert retrying.error.type == "RetryableError"
    assert f"POST {url} failed" in retrying.error.message
    assert "Connection refused" in retrying.error.message
    with Receiver(port=port) as rx:
        rec = jobs.wait(job_id)
    assert rec.state is JobState.SUCCEEDED
    assert rec.attempts == 2
    assert len(rx.deliveries) == 1
    assert_signed(rx.deliveries[0], job_id)
