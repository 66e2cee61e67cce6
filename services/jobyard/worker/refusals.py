"""Messages a worker refuses become dead letters: one path for every refusal.

Anyone who can write to Redis can push anything into a queue list. A worker refuses, and
never runs: an entry that is not JSON or not a kombu envelope, a body that is not valid
base64 or does not decode, pickle (jobyard accepts JSON only), a message without task
headers, a task that is not in jobyard's registry (an unknown name, or one of Celery's
own built-in tasks such as `celery.backend_cleanup`), and a message Celery finds invalid.

Each refused message leaves the queue and `unacked`, and becomes a dead letter of the
queue it was taken from (`core.store.REFUSE_SCRIPT`): the job record it names, when that
record still waits to run in that queue, ends `dead`; otherwise a new dead record holds
the reason (under the message's id when no record has that id). The reason names the
queue, the task, the message id and the first bytes of the body (of the whole entry when
it is not an envelope), escaped so that no control character or non-ASCII text reaches a
record or a log line. The delivery side (`worker.delivery`) and Celery's consumer hooks
(`worker.consumer`) both call :func:`refuse`.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from jobyard.core import keys, store
from jobyard.core.records import JobError, JobRecord, JobState

log = logging.getLogger("jobyard.worker")

FIRST_BYTES = 64
"""How much of a refused message its dead letter shows."""
_SHOWN_CHARS = 200
_REASON_CHARS = 1000
_USABLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
"""A message id that may name a new dead record (anything else gets a new id)."""


@dataclass(frozen=True)
class RefusedMessage:
    """What is known of a refused message; `task` and `message_id` are as found in it
    (anything, or None), never trusted."""

    queue: str
    """The queue it was taken from."""
    first_bytes: bytes
    task: Any = None
    message_id: Any = None
    delivery_tag: str | None = None
    """Its tag in `unacked`, to remove it there (None: the caller acknowledges it)."""
    started_here: bool = False
    """The start script ran for this delivery (`worker.delivery`)."""


def envelope_ids(payload: Any) -> tuple[Any, Any]:
    """(task, message id) of a decoded queue entry, None where it has none."""
    if not isinstance(payload, dict):
        return None, None
    headers = payload.get("headers")
    headers = headers if isinstance(headers, dict) else {}
    properties = payload.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    return headers.get("task"), headers.get("id") or properties.get("correlation_id")


def escaped(value: Any, limit: int = _SHOWN_CHARS) -> str:
    """`value` as ASCII text without control characters (backslash escapes), cut to
    `limit` characters."""
    text = ascii(value if isinstance(value, str) else repr(value))[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: Any) -> str:
    """`value` quoted and escaped, bytes as a bytes literal of the first
    :data:`FIRST_BYTES`; `none` for None or an empty value."""
    if value is None or value == "" or value == b"":
        return "none"
    if isinstance(value, bytes):
        return repr(value[:FIRST_BYTES])
    return f"'{escaped(value)}'"


def as_bytes(raw: bytes | str) -> bytes:
    """A popped entry or a message body as bytes (as it was sent, if it was text)."""
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw


def refuse(
    client: Any, message: RefusedMessage, error_type: str, reason: str, *, record_ttl_s: int
) -> str | None:
    """File `message` as a dead letter with `reason`; the dead record's id (None if Redis
    could not be written: the error is logged, the caller goes on)."""
    task = shown(message.task)
    message_id = message.message_id if isinstance(message.message_id, str) else None
    error = JobError(
        type=error_type,
        message=f"{escaped(reason, _REASON_CHARS)} (queue {shown(message.queue)}, task {task}, "
        f"message id {shown(message.message_id)}, first bytes {shown(message.first_bytes)})",
    )
    now = time.time()
    fresh_id = str(uuid.uuid4())
    fields = JobRecord(
        id=fresh_id,
        task=escaped(message.task) if message.task else "",
        queue=message.queue,
        state=JobState.DEAD,
        enqueued_at=now,
        finished_at=now,
        error=error,
    ).to_hash()
    del fields["id"]
    named = message_id if message_id and _USABLE_ID.match(message_id) else ""
    queue = message.queue
    extra = {
        "queue": queue,
        "task": task,
        "message_id": shown(message.message_id),
        "first_bytes": shown(message.first_bytes),
        "reason": error_type,
    }
    new_key = keys.job(fresh_id)
    try:
        dead_id, _ = client.eval(
            store.REFUSE_SCRIPT,
            9,
            keys.job(named) if named else new_key,
            new_key,
            keys.running(queue),
            keys.pending(queue),
            keys.dead_letters(queue),
            keys.RECENT,
            keys.recent(queue),
            keys.KOMBU_UNACKED,
            keys.KOMBU_UNACKED_INDEX,
            named,
            fresh_id,
            repr(now),
            error.model_dump_json(),
            record_ttl_s,
            "1" if message.started_here else "0",
            queue,
            message.delivery_tag or "",
            *(item for pair in fields.items() for item in pair),
        )
        dead_id = dead_id.decode() if isinstance(dead_id, bytes) else str(dead_id)
    except Exception as exc:  # never let a record write stop the worker
        log.warning(
            "could not file a refused message of queue %s as a dead letter: %s: %s",
            queue,
            error.message,
            exc,
            extra=extra,
        )
        return None
    log.error(
        "refused a message of queue %s; dead letter %s: %s",
        queue,
        dead_id,
        error.message,
        extra={**extra, "job_id": dead_id},
    )
    return dead_id
