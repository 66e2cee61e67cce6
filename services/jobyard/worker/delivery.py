"""How a worker takes a job's message from Redis and acknowledges it, with less work per job.

kombu's Redis transport keeps each delivered, not yet acknowledged message in the
`unacked` hash and the `unacked_index` sorted set. Per message it builds a new redis-py
client twice (on delivery and on ack; building one copies redis-py's table of response
callbacks) and wraps each pair of writes in MULTI/EXEC. :class:`JobyardQoS` does the same
bookkeeping with one client per channel and plain pipelines (`core.redis.CommandBatch`,
redis-py's commands without its `Pipeline` machinery): atomicity buys nothing here,
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

While its queue has messages, a worker takes the next one with :data:`TAKE_SCRIPT`
instead of BRPOP (:class:`WorkerChannel`): one script pops it from the first non-empty
priority list, files it as unacknowledged and starts its job, so delivery is one round
trip instead of two. When the script finds the lists empty the channel goes back to a
blocking BRPOP.

Taken either way, an entry that is not a kombu envelope (not JSON, no delivery tag, a
body that is not valid base64...) is refused here, before Celery sees it: it becomes a
dead letter (`worker.refusals`), leaves `unacked` if the take script filed it, and the
job the script started for it ends `dead`. Envelopes Celery refuses are filed by
`worker.consumer`.

Per busy-queue job this leaves the take script and the ack (with the success write): two
round trips instead of kombu's three plus a start script and a success write, and no
redis-py client built per message.
"""

from __future__ import annotations

import json
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
from jobyard.core.redis import CommandBatch
from jobyard.worker.refusals import RefusedMessage, as_bytes, envelope_ids, refuse

START_HEADERS = ("jobyard_start", "jobyard_attempts", "jobyard_had_error")
"""Headers that carry the start script's result to the task (stripped from every incoming
message first, so a header copied into a retried message is never trusted)."""

_settings = {"fold_start": True, "refused_ttl_s": 7 * 24 * 3600}

_HOSTNAME = socket.gethostname()
"""The `worker` a started job's record names (read once, not per job)."""

Plan = Callable[[Any], None]
"""Plans writes onto a redis-py pipeline (the `store.plan_*` helpers, partially applied)."""

_live: weakref.WeakSet[JobyardQoS] = weakref.WeakSet()

TAKE_SCRIPT = (
    store.START_FUNCTION
    + """
-- KEYS: the queue's lists in priority order, then the unacked index and the unacked hash.
-- ARGV: now, worker, job key prefix, running key prefix, '1' to start the job.
-- Returns false (lists empty); {list, entry} (not filed: not an envelope this script
-- can read); or {list, entry, delivery tag, state, attempts, had error} (filed; state ''
-- when the job was not started here).
local n = #KEYS
local item, dest
for i = 1, n - 2 do
  item = redis.call('RPOP', KEYS[i])
  if item then dest = KEYS[i] break end
end
if not item then return false end
local ok, msg = pcall(cjson.decode, item)
if not ok or type(msg) ~= 'table' or type(msg.properties) ~= 'table'
    or type(msg.properties.delivery_tag) ~= 'string' then
  return {dest, item}
end
local props = msg.properties
local tag = props.delivery_tag
local info = props.delivery_info
if type(info) ~= 'table' then info = {} end
local exchange = type(info.exchange) == 'string' and info.exchange or ''
local routing_key = type(info.routing_key) == 'string' and info.routing_key or ''
redis.call('ZADD', KEYS[n - 1], ARGV[1], tag)
-- kombu's entry, [message, exchange, routing key], around the popped text as it is
local entry = '[' .. item .. ', ' .. cjson.encode(exchange) .. ', '
  .. cjson.encode(routing_key) .. ']'
redis.call('HSET', KEYS[n], tag, entry)
local headers = type(msg.headers) == 'table' and msg.headers or {}
local job_id = headers.id
local has_eta = type(headers.eta) == 'string' and headers.eta ~= ''
if ARGV[5] ~= '1' or type(job_id) ~= 'string' or job_id == '' or has_eta then
  return {dest, item, tag, '', 0, 0}
end
local started = start_job(ARGV[3] .. job_id, ARGV[4] .. routing_key, ARGV[1], ARGV[2], job_id)
return {dest, item, tag, started[1], started[2], started[3]}
"""
)
"""Take the next message of a queue in one round trip (see the module docstring)."""


class JobyardQoS(kombu_redis.QoS):  # type: ignore[misc]
    """kombu's Redis QoS with one client per channel, plain pipelines and the job start."""

    _start_sha: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pid = os.getpid()
        self._deferred: dict[str, Plan] = {}
        self._taken: dict[str, tuple[str, int, bool]] = {}
        """Deliveries :data:`TAKE_SCRIPT` filed: tag -> start result ('' if not started)."""
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
        taken = self._taken.pop(delivery_tag, None)
        if taken is not None:
            # Filed (and maybe started) by the take script already.
            _start_headers(headers, *taken)
            virtual.QoS.append(self, message, delivery_tag)
            return
        job_id = headers.get("id")
        fold = _settings["fold_start"] and bool(job_id) and not headers.get("eta")
        client = self._client()
        pipe: Any = CommandBatch(client)
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
                _HOSTNAME,
                job_id,
            )
        results = pipe.execute()
        for result in results[:2]:
            if isinstance(result, Exception):
                raise result
        if fold:
            started = results[2]
            if isinstance(started, Exception):
                # NOSCRIPT after a Redis restart, say: the task starts the job itself.
                JobyardQoS._start_sha = None
            else:
                _start_headers(headers, *started)
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        pipe: Any = CommandBatch(self._client())
        deferred = self._deferred.pop(delivery_tag, None)
        if deferred is not None:
            deferred(pipe)
        pipe.zrem(self.unacked_index_key, delivery_tag)
        pipe.hdel(self.unacked_key, delivery_tag)
        for reply in pipe.execute():
            if isinstance(reply, Exception):
                raise reply
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self._deferred.pop(delivery_tag, None)
        if requeue:
            self.restore_by_tag(delivery_tag, leftmost=True)
            virtual.QoS.ack(self, delivery_tag)
        else:
            self.ack(delivery_tag)


def _start_headers(headers: dict[str, Any], state: Any, attempts: Any, had_error: Any) -> None:
    """Hand the start script's result to the task (nothing when it did not run)."""
    state = state.decode() if isinstance(state, bytes) else state
    if state:
        headers["jobyard_start"] = state
        headers["jobyard_attempts"] = int(attempts)
        headers["jobyard_had_error"] = bool(had_error)


class WorkerChannel(transport.Channel):
    """jobyard's Redis channel in a worker: :class:`JobyardQoS`, and while the queue has
    messages, :data:`TAKE_SCRIPT` in place of BRPOP."""

    QoS = JobyardQoS
    _take_sha: str | None = None
    _take_next = False
    """Take with the script at the next poll: the last poll found a message."""
    _taking = False
    """The command in flight on the poll connection is the take script."""

    def _brpop_start(self, timeout: Any = None) -> None:
        if not self._take_next or self.global_keyprefix:
            self._taking = False
            super()._brpop_start(timeout)
            return
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        if WorkerChannel._take_sha is None:
            WorkerChannel._take_sha = self.client.script_load(TAKE_SCRIPT)
        lists = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()
        self._taking = True
        self.client.connection.send_command(
            "EVALSHA",
            WorkerChannel._take_sha,
            len(lists) + 2,
            *lists,
            self.qos.unacked_index_key,
            self.qos.unacked_key,
            time.time(),
            _HOSTNAME,
            keys.job(""),
            keys.running(""),
            "1" if _settings["fold_start"] else "0",
        )

    def _brpop_read(self, **options: Any) -> Any:
        taking, self._taking, self._take_next = self._taking, False, False
        command = "EVALSHA" if taking else "BRPOP"
        try:
            try:
                reply = self.client.parse_response(self.client.connection, command, **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            except kombu_redis.redis.exceptions.ResponseError:
                if not taking:
                    raise
                # NOSCRIPT after a Redis restart, say: BRPOP next, and load it again.
                WorkerChannel._take_sha = None
                raise kombu_redis.Empty() from None
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()
        if not reply:
            raise kombu_redis.Empty()
        dest, item = reply[0], reply[1]
        queue = (dest.decode() if isinstance(dest, bytes) else dest).rsplit(self.sep, 1)[0]
        self._queue_cycle.rotate(queue)
        self._take_next = True
        filed = None
        if len(reply) > 2:
            tag = reply[2].decode() if isinstance(reply[2], bytes) else reply[2]
            filed = (tag, (reply[3], reply[4], reply[5]))
        self._receive(queue, item, filed)
        return True

    def _receive(
        self, queue: str, item: bytes | str, filed: tuple[str, tuple[Any, Any, Any]] | None
    ) -> None:
        """Hand a popped entry to kombu, or refuse it if it is not an envelope; `filed`:
        (delivery tag, start result) when the take script filed it as unacknowledged."""
        problem: str | None
        try:
            payload = json.loads(item)
        except (ValueError, UnicodeDecodeError):
            payload, problem = None, "the queue entry is not JSON"
        else:
            problem = transport.envelope_problem(payload)
            if problem is not None:
                problem = f"the queue entry is not a valid message: {problem}"
        if problem is None:
            if filed is not None:
                self.qos._taken[filed[0]] = filed[1]
            self.connection._deliver(payload, queue)
            return
        task, message_id = envelope_ids(payload)
        state = filed[1][0] if filed is not None else b""
        state = state.decode() if isinstance(state, bytes) else state
        refuse(
            self.qos._client(),
            RefusedMessage(
                queue=queue,
                first_bytes=as_bytes(item),
                task=task,
                message_id=message_id,
                delivery_tag=filed[0] if filed is not None else None,
                started_here=state not in ("", "missing", "cancelled", "succeeded"),
            ),
            "MessageRefused",
            problem,
            record_ttl_s=int(_settings["refused_ttl_s"]),
        )


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


def install(*, fold_start: bool = True, refused_ttl_s: int | None = None) -> None:
    """Make jobyard's Redis transport (`core.transport`) use :class:`WorkerChannel` in
    this (worker) process; `refused_ttl_s`: how long the dead letter of a refused
    message is kept."""
    _settings["fold_start"] = fold_start
    if refused_ttl_s is not None:
        _settings["refused_ttl_s"] = refused_ttl_s
    transport.Transport.Channel = WorkerChannel
