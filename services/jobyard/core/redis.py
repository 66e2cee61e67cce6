"""Redis clients: one per process (fork-safe), built from `JOBYARD_REDIS_URL`; and
:class:`CommandBatch`, the lean pipeline of the worker's per-job writes."""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import hiredis
import orjson
import redis
import redis.asyncio
from redis.commands.core import CoreCommands
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

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


class _HiredisPacking:
    """Packs a command with hiredis (C). redis-py's asyncio connections pack in Python,
    joining the buffer again for every argument: a third of a batch enqueue's CPU went
    there. The bytes are the same (tested)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str) and " " in first:  # "CONFIG GET": separate arguments
            args = (*first.encode().split(), *args[1:])
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]


class HiredisConnection(_HiredisPacking, redis.asyncio.Connection):
    """`redis://` connection packing with hiredis."""


class HiredisSSLConnection(_HiredisPacking, redis.asyncio.SSLConnection):
    """`rediss://` connection packing with hiredis."""


_HIREDIS_PACKING: dict[type, type] = {
    redis.asyncio.Connection: HiredisConnection,
    redis.asyncio.SSLConnection: HiredisSSLConnection,
}


def async_client(url: str) -> redis.asyncio.Redis:
    """A new asyncio client (the API makes one in its lifespan)."""
    client = redis.asyncio.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )
    pool = client.connection_pool
    # The URL picks the connection class (TCP, TLS, unix socket); connections are made
    # when first needed, so swapping the class here changes every one of them.
    pool.connection_class = _HIREDIS_PACKING.get(pool.connection_class, pool.connection_class)
    return client


class _QueuedCommands(CoreCommands):
    """redis-py's command methods, queueing each command (its arguments) instead of
    sending it; subclasses say how the queue is sent."""

    _event_dispatcher: Any = None
    """Unused (declared by redis-py's command protocol)."""

    def __init__(self) -> None:
        self._commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any, **options: Any) -> _QueuedCommands:
        self._commands.append(args)
        return self

    def __len__(self) -> int:
        return len(self._commands)


class CommandBatch(_QueuedCommands):
    """Commands queued with redis-py's command methods, sent in one write, answered raw.

    A worker writes a few commands per job in two round trips (delivery, ack): redis-py's
    `Pipeline` spends about 45 µs of CPU per execution around them (response callbacks,
    its retry wrapper, resetting its state), a fifth of a no-op job's budget. This keeps
    redis-py's command methods, connection pool, packing and parser, and returns the
    replies unconverted (bytes, ints, lists; an error reply as its `ResponseError`, in
    place). A broken connection is retried once on a fresh one, as redis-py's default
    retry does for a pipeline, so only send commands that may run twice.
    """

    def __init__(self, client: redis.Redis) -> None:
        super().__init__()
        self._pool = client.connection_pool

    def execute(self) -> list[Any]:
        """Send the queued commands; their replies in order."""
        commands, self._commands = self._commands, []
        if not commands:
            return []
        try:
            return self._send(commands)
        except (RedisConnectionError, RedisTimeoutError):
            return self._send(commands)

    def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        conn: Any = self._pool.get_connection()
        try:
            conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
            return replies
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self._pool.release(conn)


APPLY_SCRIPT = """
-- KEYS: every key the writes touch (declared, unused). ARGV[1]: a JSON array of commands,
-- each an array of strings ["HSET", key, field, value, ...]. Runs them in order; a script
-- runs atomically, so this is a MULTI/EXEC with one reply instead of one per command.
for _, command in ipairs(cjson.decode(ARGV[1])) do
  redis.call(unpack(command))
end
return #KEYS
"""


class AtomicWrites(_QueuedCommands):
    """Writes queued with redis-py's command methods and applied atomically by one script.

    What `pipeline(transaction=True)` does for a producer's writes (all of them or, when
    Redis refuses the script, none), with one reply to read instead of one per command:
    redis-py's asyncio client spends a timeout context and a parse on each `QUEUED`
    reply, most of a batch enqueue's Redis time. Every argument is sent as text (a score
    as `repr(float)`, as redis-py would), so Lua never rounds a number.
    """

    async def apply(self, client: redis.asyncio.Redis) -> None:
        """Run the queued writes in one atomic script call (EVALSHA, loaded on NOSCRIPT)."""
        if not self._commands:
            return
        commands = [[_text(a) for a in command] for command in self._commands]
        keys = list(dict.fromkeys(command[1] for command in commands))
        # Not redis-py's `AsyncScript`: its isinstance check against the (Protocol-typed)
        # asyncio Pipeline class cost a tenth of an enqueue request's CPU.
        args: list[str | bytes] = [*keys, orjson.dumps(commands)]
        try:
            await client.evalsha(APPLY_SHA, len(keys), *args)
        except redis.exceptions.NoScriptError:
            await client.script_load(APPLY_SCRIPT)
            await client.evalsha(APPLY_SHA, len(keys), *args)


APPLY_SHA = hashlib.sha1(APPLY_SCRIPT.encode(), usedforsecurity=False).hexdigest()


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, float):
        return repr(value)
    return str(value)
