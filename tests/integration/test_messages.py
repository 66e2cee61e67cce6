"""jobyard's message builder stays byte-compatible with what kombu itself publishes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import redis

from jobyard.core import keys
from jobyard.core.bootstrap import bootstrap
from jobyard.core.celery_app import create_celery
from jobyard.core.messages import build_message

pytestmark = pytest.mark.integration


def _decode(raw: bytes) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(raw)
    envelope["body"] = json.loads(base64.b64decode(envelope["body"]))
    return envelope


@pytest.mark.parametrize("priority", [0, 4, 9])
def test_built_message_matches_kombu_publish(
    redis_url: str, config_path: Path, redis_client: redis.Redis, priority: int
) -> None:
    rt = bootstrap({"JOBYARD_REDIS_URL": redis_url, "JOBYARD_CONFIG": str(config_path)})
    app = create_celery(rt.settings, rt.config, rt.registry)
    steps = rt.config.broker.priority_steps
    kwargs = {"n": 1, "s": "x"}
    app.send_task(
        "jobyard.noop",
        kwargs=kwargs,
        task_id="t-kombu",
        queue="emails",
        priority=priority,
        soft_time_limit=5,
        time_limit=8,
        ignore_result=True,
    )
    step = keys.priority_step(priority, steps)
    expected_list = keys.queue_list("emails", step)
    assert redis_client.llen(expected_list) == 1, "kombu chose a different priority list"
    theirs = _decode(redis_client.rpop(expected_list) or b"")

    ours_msg = build_message(
        app,
        task_id="t-kombu",
        task_name="jobyard.noop",
        kwargs=kwargs,
        queue="emails",
        priority=priority,
        priority_steps=steps,
        soft_time_limit_s=5,
        time_limit_s=8,
    )
    assert ours_msg.list_key == expected_list
    ours = _decode(ours_msg.payload.encode())

    for envelope in (ours, theirs):
        envelope["properties"].pop("delivery_tag")  # a fresh uuid per publish
    # Celery fills reply_to with the producing app's oid, used only by RPC result
    # backends; jobyard has none, so its messages leave it empty.
    assert ours["properties"].pop("reply_to") == ""
    theirs["properties"].pop("reply_to")
    assert ours["body"] == theirs["body"]
    assert ours["properties"] == theirs["properties"]
    assert ours["content-type"] == theirs["content-type"]
    assert ours["content-encoding"] == theirs["content-encoding"]
    assert ours["headers"] == theirs["headers"]
