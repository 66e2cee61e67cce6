"""Each component's Redis user (charts/jobyard/files/redis/acl-rules.yaml) in the fault
suite's real redis-server: what each may not do is refused, and a component missing a
permission it needs is caught (Redis' ACL LOG, which closing a cluster checks)."""

from __future__ import annotations

import pytest
import redis

from tests.chart.test_redis_acl import KEDA_SCRIPT
from tests.e2e.cluster import Cluster
from tests.support.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

NoPermission = redis.exceptions.NoPermissionError


def _as(cluster: Cluster, component: str) -> redis.Redis:
    return redis.Redis.from_url(cluster.url_for(component), socket_timeout=5)


def test_app_users_cannot_administer_or_list_redis(cluster: Cluster) -> None:
    cluster.enqueue("faults.effect", {"path": "/nonexistent"})
    for component in ("api", "worker", "beat"):
        client = _as(cluster, component)
        assert client.ping()
        refused = {
            "FLUSHALL": client.flushall,
            "FLUSHDB": client.flushdb,
            "CONFIG GET": lambda c=client: c.config_get("*"),
            "CONFIG SET": lambda c=client: c.config_set("appendonly", "no"),
            "KEYS": lambda c=client: c.keys("*"),
            "SCAN": lambda c=client: c.scan(0),
            "RANDOMKEY": client.randomkey,
            "INFO": client.info,
            "ACL LIST": client.acl_list,
            "MONITOR": lambda c=client: c.execute_command("MONITOR"),
            "SHUTDOWN": lambda c=client: c.execute_command("SHUTDOWN", "NOSAVE"),
            "CLIENT KILL": lambda c=client: c.execute_command("CLIENT", "KILL", "TYPE", "normal"),
            "SCRIPT FLUSH": client.script_flush,
            "PUBLISH": lambda c=client: c.publish("anything", "x"),
            "SET outside jobyard's keys": lambda c=client: c.set("other-app:key", "x"),
            "GET outside jobyard's keys": lambda c=client: c.get("other-app:key"),
        }
        for what, call in refused.items():
            with pytest.raises(NoPermission):
                call()
                pytest.fail(f"{component} may {what}")
        client.close()
    assert cluster.client.dbsize() > 0, "nothing was flushed"
    cluster.reset_acl_log()


def test_only_workers_block_on_a_queue(cluster: Cluster) -> None:
    for component in ("api", "beat"):
        with pytest.raises(NoPermission):
            _as(cluster, component).brpop(["alpha"], timeout=1)
    assert _as(cluster, "worker").brpop(["alpha"], timeout=1) is None
    cluster.reset_acl_log()


def test_keda_reads_the_queue_lengths_and_nothing_else(cluster: Cluster) -> None:
    job_id = cluster.enqueue("faults.effect", {"path": "/nonexistent"}, priority=6)
    keda = _as(cluster, "keda")
    # KEDA's own script, on each list its triggers name (bare queue and priority lists).
    assert keda.eval(KEDA_SCRIPT, 1, "alpha\x06\x166") == 1
    assert keda.eval(KEDA_SCRIPT, 1, "alpha") == 0
    assert keda.eval(KEDA_SCRIPT, 1, "gamma\x06\x169") == 0
    assert keda.llen("alpha\x06\x166") == 1
    refused = {
        "read a job record": lambda: keda.hgetall(f"jobyard:job:{job_id}"),
        "read a message": lambda: keda.lrange("alpha\x06\x166", 0, -1),
        "take a message": lambda: keda.rpop("alpha\x06\x166"),
        "enqueue": lambda: keda.lpush("alpha", "forged"),
        "delete a queue": lambda: keda.delete("alpha"),
        "write through a script": lambda: keda.eval(
            "return redis.call('lpush', KEYS[1], 'forged')", 1, "alpha"
        ),
        "count another key": lambda: keda.eval(KEDA_SCRIPT, 1, "jobyard:recent"),
        "read unacked": lambda: keda.hlen("unacked"),
        "list keys": lambda: keda.keys("*"),
    }
    for what, call in refused.items():
        # NOPERM, or the error of a script whose command the user may not run.
        with pytest.raises(redis.ResponseError, match=r"permissions|can't run"):
            call()
            pytest.fail(f"KEDA may {what}")
    assert cluster.states([job_id]) == {job_id: "queued"}
    cluster.reset_acl_log()


def test_no_one_logs_in_as_the_default_user(cluster: Cluster) -> None:
    port = cluster.server.port if cluster.server else 0
    anonymous = redis.Redis(port=port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("jobyard:recent")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, username="default", password="").ping()
    cluster.reset_acl_log()


def test_a_component_missing_a_permission_is_caught(cluster: Cluster) -> None:
    """A worker that logs in as the API's user (no blocking commands) cannot take a job:
    Redis refuses it and the ACL LOG, which every fault test checks at the end, says so."""
    job_id = cluster.enqueue("faults.effect", {"path": str(cluster.tmp_path / "e.txt")})
    cluster.worker("alpha", wait=False, env={"JOBYARD_REDIS_URL": cluster.url_for("api")})

    def refused() -> list[str]:
        return [d for d in cluster.acl_denials() if d.startswith("jobyard-api:")]

    denials = wait_until(refused, timeout_s=60)
    assert any("brpop" in d for d in denials), denials
    assert cluster.states([job_id])[job_id] == "queued"
    cluster.reset_acl_log()
