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

from celery import Celery

from jobyard.core import keys

ENQUEUED_AT_HEADER = "jobyard_enqueued_at"
"""Message header with the unix time the job was enqueued (the oldest-job-age source)."""
ETA_HEADER = "jobyard_eta"
"""Message header of a delayed job: the unix time it became due (queue wait starts there)."""


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
    )
    msg_headers = dict(tm.headers)
    if headers:
        msg_headers.update(headers)
    body = json.dumps(tm.body, separators=(", ", ": ")).encode("utf-8")
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
    return BuiltMessage(keys.queue_list(queue, step), json.dumps(envelope))
