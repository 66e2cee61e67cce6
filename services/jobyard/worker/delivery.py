"""How a worker takes a job's message from Redis and acknowledges it, with less work per job.

kombu's Redis transport keeps each delivered, not yet acknowledged message in the
`unacked` hash and the `unacked_index` sorted set. Per message it builds a new redis-py
client twice (on delivery and on ack; building one copies redis-py's table of response
callbacks) and wraps each pair of writes in MULTI/EXEC. :class:`JobyardQoS` does the same
bookkeeping with one client per channel and plain pipelines: atomicity buys nothing here,
since kombu restores an entry only once it is older than the visibility timeout and its
restore watches the hash.

With `fold_start` (see :func:`install`) the job's start script (`store.START_SCRIPT`) runs
in the round trip that files the message as unacknowledged, and its result reaches the
task in the message headers (:data:`START_HEADERS`), so `signals.records` does not run it
again. A message with an ETA (a retry with a countdown) waits in the worker until it is
due, so it is started when it runs, as before.

When the job runs in the process that acknowledges its message (the solo and threads
pools; a prefork child's result is acknowledged by the parent), the success write joins
the ack's pipeline (:func:`defer_to_ack`): the record says `succeeded` in the same round
trip that removes the message from `unacked`.

Per job this leaves BRPOP, the delivery pipeline and the ack (with the success write):
two round trips, two client constructions and four Redis commands fewer than kombu's
defaults plus a separate start script and success write.
"""

from __future__ import annotations

import os
import socket
import time
import weakref
from collections.abc import Callable
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps

from jobyard.core import keys, store, transport

START_HEADERS = ("jobyard_start", "jobyard_attempts", "jobyard_had_error")
"""Headers that carry the start script's result to the task (stripped from every incoming
message first, so a header copied into a retried message is never trusted)."""

_settings = {"fold_start": True}

Plan = Callable[[Any], None]
"""Plans writes onto a redis-py pipeline (the `store.plan_*` helpers, partially applied)."""

_live: weakref.WeakSet[JobyardQoS] = weakref.WeakSet()


class JobyardQoS(kombu_redis.QoS):  # type: ignore[misc]
    """kombu's Redis QoS with one client per channel, plain pipelines and the job start."""

    _start_sha: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pid = os.getpid()
        self._deferred: dict[str, Plan] = {}
        _live.add(self)

    def _client(self) -> Any:
        client = getattr(self, "_jobyard_client", None)
        if client is None:
            client = self._jobyard_client = self.channel._create_client()
        return client

    def append(self, message: Any, delivery_tag: str) -> None:
        delivery = message.delivery_info
        exchange, routing_key = delivery["exchange"], delivery["routing_key"]
        headers = message.headers
        for name in START_HEADERS:
            headers.pop(name, None)
        job_id = headers.get("id")
        fold = _settings["fold_start"] and bool(job_id) and not headers.get("eta")
        client = self._client()
        pipe = client.pipeline(transaction=False)
        now = time.time()
        pipe.zadd(self.unacked_index_key, {delivery_tag: now})
        pipe.hset(self.unacked_key, delivery_tag, dumps([message._raw, exchange, routing_key]))
        if fold:
            if JobyardQoS._start_sha is None:
                JobyardQoS._start_sha = client.script_load(store.START_SCRIPT)
            pipe.evalsha(
                JobyardQoS._start_sha,
                2,
                keys.job(job_id),
                keys.running(routing_key),
                now,
                socket.gethostname(),
                job_id,
            )
        results = pipe.execute(raise_on_error=False)
        for result in results[:2]:
            if isinstance(result, Exception):
                raise result
        if fold:
            started = results[2]
            if isinstance(started, Exception):
                # NOSCRIPT after a Redis restart, say: the task starts the job itself.
                JobyardQoS._start_sha = None
            else:
                state, attempts, had_error = started
                headers["jobyard_start"] = state.decode() if isinstance(state, bytes) else state
                headers["jobyard_attempts"] = int(attempts)
                headers["jobyard_had_error"] = bool(had_error)
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        pipe = self._client().pipeline(transaction=False)
        deferred = self._deferred.pop(delivery_tag, None)
        if deferred is not None:
            deferred(pipe)
        pipe.zrem(self.unacked_index_key, delivery_tag)
        pipe.hdel(self.unacked_key, delivery_tag)
        pipe.execute()
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self._deferred.pop(delivery_tag, None)
        if requeue:
            self.restore_by_tag(delivery_tag, leftmost=True)
            virtual.QoS.ack(self, delivery_tag)
        else:
            self.ack(delivery_tag)


def defer_to_ack(delivery_tag: Any, plan: Plan) -> bool:
    """Run `plan` in the pipeline that acknowledges `delivery_tag`, if this process holds
    that delivery unacknowledged; False (nothing deferred) otherwise: the caller writes."""
    if not isinstance(delivery_tag, str):
        return False
    pid = os.getpid()
    for qos in list(_live):
        # A prefork child inherits its parent's QoS objects: never defer to a copy.
        if qos._pid == pid and delivery_tag in qos._delivered:
            qos._deferred[delivery_tag] = plan
            return True
    return False


def install(*, fold_start: bool = True) -> None:
    """Make jobyard's Redis transport channels (`core.transport`) use :class:`JobyardQoS`
    in this (worker) process."""
    _settings["fold_start"] = fold_start
    transport.Channel.QoS = JobyardQoS
