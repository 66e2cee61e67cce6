"""Job registration and the retry policy."""

from __future__ import annotations

import random

import pytest
from pydantic import BaseModel

from jobyard.core.errors import ConfigError, UnknownTaskError
from jobyard.core.registry import (
    PermanentError,
    Registry,
    RetryableError,
    RetryPolicy,
    check_queues,
    job,
)


class Args(BaseModel):
    n: int


def test_register_and_lookup() -> None:
    reg = Registry()

    @job("billing.invoice", args=Args, queue="emails", registry=reg)
    def invoice(ctx: object, args: Args) -> int:
        """Send an invoice.

        Longer text."""
        return args.n

    spec = reg.get("billing.invoice")
    assert spec.queue == "emails" and spec.description == "Send an invoice."
    assert spec.validate_args({"n": "3"}).n == 3
    with pytest.raises(UnknownTaskError, match=r"registered tasks: billing\.invoice"):
        reg.get("billing.nope")
    with pytest.raises(ConfigError, match="registered twice"):
        job("billing.invoice", args=Args, registry=reg)(lambda c, a: None)


@pytest.mark.parametrize("name", ["Billing.x", "billing", "billing..x", "1a.b"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="lower-case dotted"):
        job(name, args=Args, registry=Registry())


def test_default_queue_must_be_configured() -> None:
    reg = Registry()
    job("a.b", args=Args, queue="nope", registry=reg)(lambda c, a: None)
    with pytest.raises(ConfigError, match="default queue 'nope'"):
        check_queues(reg, ["default"])


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_s=2, backoff_max_s=30, jitter=False)
    assert [policy.delay_s(a) for a in range(1, 7)] == [2, 4, 8, 16, 30, 30]
    jittered = RetryPolicy(max_attempts=10, backoff_s=2, backoff_max_s=30)
    rng = random.Random(7)
    delays = [jittered.delay_s(4, rng) for _ in range(200)]
    assert all(8 <= d <= 16 for d in delays)
    assert max(delays) - min(delays) > 4  # really spread, not a constant


def test_should_retry() -> None:
    policy = RetryPolicy(max_attempts=3, retry_on=(ConnectionError,))
    assert policy.should_retry(ConnectionError(), 1)
    assert policy.should_retry(ConnectionError(), 2)
    assert not policy.should_retry(ConnectionError(), 3)
    assert not policy.should_retry(ValueError(), 1)
    assert policy.should_retry(RetryableError("x"), 1)
    assert not RetryPolicy().should_retry(PermanentError("x"), 1)


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="backoff_s"):
        RetryPolicy(backoff_s=10, backoff_max_s=1)
