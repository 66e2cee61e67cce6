"""Parsing queue statistics and message ages (`jobyard.core.queues`)."""

from __future__ import annotations

import json

from jobyard.core.config import parse_config
from jobyard.core.queues import message_age_s, parse_queue_stats, plan_queue_stats
from jobyard.core.settings import Settings


class RecordingPipe:
    """Records the planned commands (the planner only queues calls on a pipeline)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def __getattr__(self, name: str) -> object:
        def call(*args: object) -> None:
            self.calls.append((name, args))

        return call


CONFIG = parse_config(
    """
queues:
  - {name: a, soft_time_limit_s: 10, time_limit_s: 20}
  - {name: b}
broker: {priority_steps: [0, 5]}
"""
)


def test_plan_reads_every_priority_list_once() -> None:
    pipe = RecordingPipe()
    plan = plan_queue_stats(pipe, CONFIG, Settings(heartbeat_interval_s=2), now=1000.0)
    assert pipe.calls[:7] == [
        ("llen", ("a",)),
        ("llen", ("a\x06\x165",)),
        ("lindex", ("a", -1)),
        ("lindex", ("a\x06\x165", -1)),
        ("zcount", ("jobyard:running:a", 1000.0 - 20 - 60, "+inf")),
        ("zcount", ("jobyard:workers:a", 1000.0 - 6, "+inf")),
        ("zcard", ("jobyard:dead:a",)),
    ]
    assert len(pipe.calls) == 2 * plan.commands_per_queue == 14


def _message(enqueued_at: float) -> bytes:
    return json.dumps({"headers": {"jobyard_enqueued_at": enqueued_at}}).encode()


def test_parse_takes_the_oldest_message_and_sums_lists() -> None:
    pipe = RecordingPipe()
    plan = plan_queue_stats(pipe, CONFIG, Settings(), now=1000.0)
    results = [3, 4, _message(990.0), _message(900.0), 2, 1, 5]
    results += [0, 0, None, None, 0, 0, 0]
    a, b = parse_queue_stats(plan, results)
    assert a.model_dump() == {
        "name": "a",
        "depth": 7,
        "depth_by_priority": {"0": 3, "5": 4},
        "oldest_job_age_s": 100.0,
        "in_progress": 2,
        "workers": 1,
        "dead_letters": 5,
    }
    assert b.depth == 0
    assert b.oldest_job_age_s is None


def test_message_age() -> None:
    assert message_age_s(_message(90.0), now=100.0) == 10.0
    assert message_age_s(_message(110.0), now=100.0) == 0.0  # clock skew never negative
    assert message_age_s(None, now=100.0) is None
    assert message_age_s(b"not json", now=100.0) is None
    assert message_age_s(b'{"headers": {}}', now=100.0) is None
    assert message_age_s(b'{"headers": {"jobyard_enqueued_at": "x"}}', now=100.0) is None
    assert message_age_s(b"[1]", now=100.0) is None
    delayed = {"jobyard_enqueued_at": 10.0, "jobyard_eta": 70.0}
    assert message_age_s(json.dumps({"headers": delayed}), now=100.0) == 30.0
    assert message_age_s(json.dumps({"headers": {**delayed, "jobyard_eta": None}}), 100.0) == 90.0
