"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.redis_server import redis_url_for_tests

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_base_url() -> Iterator[str]:
    """One real Redis server for the session."""
    with redis_url_for_tests() as url:
        yield url


@pytest.fixture
def redis_url(redis_base_url: str) -> Iterator[str]:
    """A flushed database of the session's Redis, for one test."""
    url = redis_base_url.rsplit("/", 1)[0] + "/0"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
