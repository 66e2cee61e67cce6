"""Redis clients: one per process (fork-safe), built from `JOBYARD_REDIS_URL`."""

from __future__ import annotations

import os
import threading

import redis
import redis.asyncio

_lock = threading.Lock()
_clients: dict[tuple[int, str], redis.Redis] = {}


def sync_client(url: str) -> redis.Redis:
    """A shared client for this process; a forked child gets its own."""
    key = (os.getpid(), url)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = new_sync_client(url)
    return client


def new_sync_client(url: str) -> redis.Redis:
    """A new client with jobyard's timeouts (prefer :func:`sync_client`'s shared one)."""
    return redis.Redis.from_url(
        url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
    )


def async_client(url: str) -> redis.asyncio.Redis:
    """A new asyncio client (the API makes one in its lifespan)."""
    return redis.asyncio.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )
