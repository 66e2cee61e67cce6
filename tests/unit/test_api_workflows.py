"""Building chains and groups with Celery's canvas (`jobyard.core.workflows`)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from jobyard.core.bootstrap import Runtime, bootstrap
from jobyard.core.celery_app import create_celery
from jobyard.core.enqueue import EnqueueRequest
from jobyard.core.jobs import InvalidMembersError
from jobyard.core.records import JobRecord, JobState
from jobyard.core.workflows import (
    WorkflowState,
    WorkflowType,
    derive_state,
    parse_workflow,
    prepare_workflow,
)


@pytest.fixture(scope="module")
def rt() -> Runtime:
    return bootstrap({"JOBYARD_JOB_MODULES": "tests.support.testjobs"})


def _body(payload: str) -> list[Any]:
    envelope = json.loads(payload)
    body: list[Any] = json.loads(base64.b64decode(envelope["body"]))
    return body


def test_chain_publishes_its_first_job_carrying_the_rest_in_reverse(rt: Runtime) -> None:
    app = create_celery(rt.settings, rt.config, rt.registry)
    reqs = [
        EnqueueRequest("tests.flaky", {"failures": 0}),
        EnqueueRequest("jobyard.noop", queue="emails", priority=5),
        EnqueueRequest("tests.sleep", {"seconds": 1}),
    ]
    wf = prepare_workflow(
        app, rt.config, rt.registry, WorkflowType.CHAIN, reqs, now=100.0, workflow_id="wf1"
    )
    ids = [job.record.id for job in wf.jobs]
    assert len(set(ids)) == 3
    assert [job.record.workflow_id for job in wf.jobs] == ["wf1"] * 3
    assert [job.record.id for job in wf.published] == [ids[0]]
    _args, kwargs, embed = _body(wf.published[0].message.payload)
    assert kwargs == {"failures": 0, "retry_delay_s": None}
    chain = embed["chain"]
    assert [step["options"]["task_id"] for step in chain] == [ids[2], ids[1]]
    assert [step["task"] for step in chain] == ["tests.sleep", "jobyard.noop"]
    assert chain[1]["options"]["queue"] == "emails"
    assert chain[1]["options"]["priority"] == 5
    assert chain[1]["options"]["soft_time_limit"] == rt.config.queue("emails").soft_time_limit_s
    assert all(step["immutable"] for step in chain)
    assert chain[1]["kwargs"] == {}
    assert chain[0]["kwargs"] == {"seconds": 1.0, "step_s": 0.1}


def test_group_publishes_every_member_with_the_group_id(rt: Runtime) -> None:
    app = create_celery(rt.settings, rt.config, rt.registry)
    reqs = [EnqueueRequest("jobyard.noop"), EnqueueRequest("jobyard.noop", delay_s=5)]
    wf = prepare_workflow(
        app, rt.config, rt.registry, WorkflowType.GROUP, reqs, now=100.0, workflow_id="g1"
    )
    assert wf.published == wf.jobs
    for job in wf.jobs:
        assert json.loads(job.message.payload)["headers"]["group"] == "g1"
    assert [job.record.state for job in wf.jobs] == [JobState.QUEUED, JobState.SCHEDULED]


def test_invalid_members_are_all_reported(rt: Runtime) -> None:
    app = create_celery(rt.settings, rt.config, rt.registry)
    reqs = [
        EnqueueRequest("tests.flaky", {"failures": "x"}),
        EnqueueRequest("jobyard.noop", delay_s=3),
        EnqueueRequest("jobyard.noop"),
        EnqueueRequest("nope.nope"),
    ]
    with pytest.raises(InvalidMembersError) as info:
        prepare_workflow(app, rt.config, rt.registry, WorkflowType.CHAIN, reqs, now=1.0)
    assert [index for index, _ in info.value.errors] == [0, 1, 3]


def _rec(state: JobState) -> JobRecord:
    return JobRecord(id="x", task="t.t", queue="q", state=state, enqueued_at=1.0)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([JobState.SUCCEEDED, JobState.SUCCEEDED], WorkflowState.SUCCEEDED),
        ([JobState.SUCCEEDED, JobState.QUEUED], WorkflowState.RUNNING),
        ([JobState.STARTED, JobState.RETRYING], WorkflowState.RUNNING),
        ([JobState.SUCCEEDED, JobState.DEAD, JobState.QUEUED], WorkflowState.FAILED),
        ([JobState.FAILED], WorkflowState.FAILED),
        ([JobState.CANCELLED, JobState.SUCCEEDED], WorkflowState.FAILED),
    ],
)
def test_derive_state(states: list[JobState], expected: WorkflowState) -> None:
    assert derive_state([_rec(s) for s in states]) == expected


def test_expired_members_do_not_make_a_workflow_succeed() -> None:
    assert derive_state([_rec(JobState.SUCCEEDED), None]) is WorkflowState.RUNNING
    assert derive_state([]) is WorkflowState.RUNNING


def test_parse_workflow() -> None:
    raw = {b"type": b"group", b"created_at": b"12.5", b"job_ids": b'["a", "b"]'}
    wf = parse_workflow("w", raw)
    assert wf is not None
    assert (wf.id, wf.type, wf.created_at, wf.job_ids) == (
        "w",
        WorkflowType.GROUP,
        12.5,
        ["a", "b"],
    )
    assert parse_workflow("w", {}) is None
