"""Celery task messages built the way kombu's Redis transport would publish them.

Building the envelope here lets the store write a job's record and its message in one
Redis transaction (one round trip, and never a message without a record). The result is
byte-compatible with `Producer.publish` on kombu's Redis transport with the anonymous
exchange (routing key = queue), which `tests/integration/test_messages.py` checks against
kombu itself.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from celery import Celery
from celery.utils.saferepr import saferepr

from jobyard.core import keys

ENQUEUED_AT_HEADER = "jobyard_enqueued_at"
"""Message header with the unix time the job was enqueued (the oldest-job-age source)."""
ETA_HEADER = "jobyard_eta"
"""Message header of a delayed job: the unix time it became due (queue wait starts there)."""


def _plain(value: Any, levels: int) -> bool:
    """Whether `repr(value)` is what Celery's `saferepr` would write: JSON scalars, strings
    that repr leaves unescaped, containers nested at most `levels` deep."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is float:
        return True
    if kind is str:
        return value.isprintable() and "'" not in value and "\\" not in value
    if levels <= 0:
        return False
    if kind is dict:
        return all(
            type(k) is str and _plain(k, 0) and _plain(v, levels - 1) for k, v in value.items()
        )
    if kind is list:
        return all(_plain(v, levels - 1) for v in value)
    return False


def kwargs_repr(app: Celery, kwargs: dict[str, Any]) -> str:
    """The message's `kwargsrepr` header, as Celery's `as_task_v2` writes it.

    `saferepr` walks the value in Python: half the cost of building a message. For the
    plain JSON arguments of almost every job, `repr` gives the same text, so it is used
    when it provably does (`tests/unit/test_messages_repr.py` checks random values)."""
    maxsize = app.amqp.kwargsrepr_maxsize
    maxlevels = _repr_maxlevels(app)
    if _plain(kwargs, maxlevels - 1):
        text = repr(kwargs)
        if len(text) <= maxsize:
            return text
    return str(saferepr(kwargs, maxsize, maxlevels=maxlevels))


def _repr_maxlevels(app: Celery) -> int:
    cached: int | None = getattr(app, "_jobyard_repr_maxlevels", None)
    if cached is None:
        cached = int(app.conf.task_repr_maxlevels)
        app._jobyard_repr_maxlevels = cached
    return cached


@dataclass(frozen=True)
class BuiltMessage:
    """A message ready to LPUSH: the list it goes to and its JSON payload."""

    list_key: str
    payload: str


def build_message(
    app: Celery,
    *,
    task_id: str,
    task_name: str,
    kwargs: dict[str, Any],
    queue: str,
    priority: int,
    priority_steps: tuple[int, ...],
    headers: dict[str, Any] | None = None,
    soft_time_limit_s: float | None = None,
    time_limit_s: float | None = None,
    root_id: str | None = None,
    parent_id: str | None = None,
    group_id: str | None = None,
    chain: list[dict[str, Any]] | None = None,
) -> BuiltMessage:
    """The Celery protocol-2 message for one task call."""
    tm = app.amqp.as_task_v2(
        task_id,
        task_name,
        args=(),
        kwargs=kwargs,
        group_id=group_id,
        chain=chain,
        root_id=root_id,
        parent_id=parent_id,
        soft_time_limit=soft_time_limit_s,
        time_limit=time_limit_s,
        ignore_result=True,
        argsrepr="()",  # what saferepr(()) gives: jobyard passes keyword arguments only
        kwargsrepr=kwargs_repr(app, kwargs),
    )
    msg_headers = dict(tm.headers)
    if headers:
        msg_headers.update(headers)
    body = _json_bytes(tm.body)
    envelope = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": msg_headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": tm.properties.get("reply_to", ""),
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": priority,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    step = keys.priority_step(priority, priority_steps)
    return BuiltMessage(keys.queue_list(queue, step), _json_bytes(envelope).decode())


def _json_bytes(value: Any) -> bytes:
    """JSON with orjson (the enqueue hot path); the standard library for what orjson
    refuses (a non-string dict key, say), so a message that kombu could send never fails."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode("utf-8")
