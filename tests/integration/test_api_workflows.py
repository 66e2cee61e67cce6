"""`/v1/workflows`: chains run in order and stop at a failure; groups run every member."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis

from jobyard.core import keys
from tests.integration.conftest import eventually, job_in_state

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _effect(path: Path) -> dict[str, Any]:
    return {"task": "tests.record_effect", "args": {"path": str(path)}}


async def _create(api: httpx.AsyncClient, kind: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    r = await api.post("/v1/workflows", json={"type": kind, "jobs": jobs})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _workflow_until(api: httpx.AsyncClient, wf_id: str, *states: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        r = await api.get(f"/v1/workflows/{wf_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    return await eventually(probe, lambda w: w["state"] in states)


async def test_chain_is_written_with_only_its_first_message(
    api: httpx.AsyncClient, redis_client: redis.Redis, tmp_path: Path
) -> None:
    wf = await _create(api, "chain", [_effect(tmp_path / "a"), {"task": "jobyard.noop"}])
    assert wf["type"] == "chain"
    assert wf["state"] == "running"
    first, second = wf["jobs"]
    assert first["workflow_id"] == second["workflow_id"] == wf["id"]
    assert first["state"] == second["state"] == "queued"
    (raw,) = redis_client.lrange("default", 0, -1)
    message = json.loads(raw)
    assert message["headers"]["id"] == first["id"]
    assert message["headers"]["root_id"] == first["id"]
    import base64

    _args, _kwargs, embed = json.loads(base64.b64decode(message["body"]))
    (rest,) = embed["chain"]
    assert rest["task"] == "jobyard.noop"
    assert rest["immutable"] is True
    assert rest["options"]["task_id"] == second["id"]
    assert rest["options"]["queue"] == "default"
    got = (await api.get(f"/v1/workflows/{wf['id']}")).json()
    assert got == {**wf, "jobs": got["jobs"]}
    assert [j["id"] for j in got["jobs"]] == [first["id"], second["id"]]
    assert redis_client.ttl(keys.workflow(wf["id"])) > 3000


async def test_chain_runs_in_order_through_a_retry(
    api: httpx.AsyncClient, worker: Any, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.txt"
    wf = await _create(
        api,
        "chain",
        [_effect(effects), {"task": "tests.flaky", "args": {"failures": 1}}, _effect(effects)],
    )
    done = await _workflow_until(api, wf["id"], "succeeded", "failed")
    assert done["state"] == "succeeded"
    first, flaky, last = done["jobs"]
    assert _lines(effects) == [first["id"], last["id"]]
    assert flaky["attempts"] == 2
    assert flaky["result"] == {"runs": 2, "attempt": 2}
    # Celery publishes the next step before the success signal writes `finished_at`, so
    # only start times are ordered strictly.
    assert first["started_at"] < flaky["started_at"] < last["started_at"]


async def test_failing_member_stops_the_chain(
    api: httpx.AsyncClient, worker: Any, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.txt"
    wf = await _create(
        api, "chain", [_effect(effects), {"task": "tests.always_fails"}, _effect(effects)]
    )
    first, failing, last = wf["jobs"]
    done = await _workflow_until(api, wf["id"], "failed", "succeeded")
    assert done["state"] == "failed"
    await job_in_state(api, failing["id"], "dead")
    # Give a (wrongly) published third member time to run, then check it did not.
    await anyio.sleep(1.5)
    assert _lines(effects) == [first["id"]]
    stopped = (await api.get(f"/v1/jobs/{last['id']}")).json()
    assert stopped["state"] == "cancelled"
    assert stopped["error"] == {
        "type": "ChainStopped",
        "message": f"not run: job {failing['id']} earlier in its chain ended dead",
    }
    assert (await api.get("/v1/queues/default")).json()["depth"] == 0


async def test_group_runs_every_member(api: httpx.AsyncClient, worker: Any, tmp_path: Path) -> None:
    effects = tmp_path / "effects.txt"
    wf = await _create(
        api,
        "group",
        [
            {"task": "tests.flaky", "args": {"failures": 0}},
            {"task": "tests.flaky", "args": {"failures": 1}},
            _effect(effects),
        ],
    )
    assert wf["type"] == "group"
    done = await _workflow_until(api, wf["id"], "succeeded", "failed")
    assert done["state"] == "succeeded"
    results = [j["result"] for j in done["jobs"]]
    assert results == [{"runs": 1, "attempt": 1}, {"runs": 2, "attempt": 2}, None]
    assert _lines(effects) == [done["jobs"][2]["id"]]


async def test_group_with_a_failure_is_failed(api: httpx.AsyncClient, worker: Any) -> None:
    wf = await _create(api, "group", [{"task": "jobyard.noop"}, {"task": "tests.always_fails"}])
    done = await _workflow_until(api, wf["id"], "failed")
    await job_in_state(api, done["jobs"][0]["id"], "succeeded")


async def test_invalid_workflows_are_refused_naming_each_member(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    r = await api.post(
        "/v1/workflows",
        json={
            "type": "chain",
            "jobs": [
                {"task": "jobyard.noop", "delay_s": 5},
                {"task": "jobyard.noop", "delay_s": 5},
                {"task": "tests.sleep", "args": {}},
                {"task": "nope.nope"},
            ],
        },
    )
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert errors[:2] == [
        {"field": "jobs[1].delay_s", "message": "only the first job of a chain may be delayed"},
        {"field": "jobs[2].args.seconds", "message": "Field required"},
    ]
    assert errors[2]["field"] == "jobs[3].task"
    assert errors[2]["message"].startswith("unknown task 'nope.nope'; registered tasks: ")
    assert len(errors) == 3
    r = await api.post("/v1/workflows", json={"type": "dag", "jobs": [{"task": "jobyard.noop"}]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "type"
    assert "'chain' or 'group'" in r.json()["errors"][0]["message"]
    r = await api.post(
        "/v1/workflows", json={"type": "group", "jobs": [{"task": "jobyard.noop"}] * 101}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "jobs"
    assert redis_client.dbsize() == 0
    missing = await api.get("/v1/workflows/nope")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no workflow 'nope': it never existed or it expired"


async def test_delayed_group_members_are_scheduled(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    wf = await _create(
        api, "group", [{"task": "jobyard.noop", "delay_s": 30}, {"task": "jobyard.noop"}]
    )
    assert [j["state"] for j in wf["jobs"]] == ["scheduled", "queued"]
    assert redis_client.zcard(keys.SCHEDULED) == 1
    assert redis_client.llen("default") == 1
