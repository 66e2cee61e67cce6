"""`dead-letters QUEUE [list|retry|purge]` and `jobs JOB_ID` through the service proxy."""

from __future__ import annotations

import json
import re

import yaml

from tests.kubectl.conftest import ADMIN_TOKEN, Apis, Cluster

PROXY = "/api/v1/namespaces/jobs/services/jobyard-api:8000/proxy"


def _proxied(cluster: Cluster) -> list[tuple[str, str, str]]:
    return [(m, p.removeprefix(PROXY), q) for m, p, q in cluster.requests() if p.startswith(PROXY)]


def test_list_table_json_and_yaml(cluster: Cluster, clean_redis: Apis) -> None:
    first = clean_redis.dead_letter("first failure")
    second = clean_redis.dead_letter("second failure")
    table = cluster.run("dead-letters", "default")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "TASK", "ATTEMPTS", "DIED", "ERROR"]
    assert re.fullmatch(
        rf"{second}   cli\.fail\s+1\s+\d+s ago   RuntimeError: second failure", lines[1]
    ), lines[1]
    assert re.fullmatch(
        rf"{first}   cli\.fail\s+1\s+\d+s ago   RuntimeError: first failure", lines[2]
    ), lines[2]
    assert _proxied(cluster) == [("GET", "/v1/dead-letters", "limit=50&queue=default")]
    as_json = json.loads(cluster.run("dead-letters", "default", "list", "-o", "json").stdout)
    assert as_json["queue"] == "default"
    assert [r["id"] for r in as_json["dead_letters"]] == [second, first]
    assert as_json["dead_letters"][0]["state"] == "dead"
    assert as_json["dead_letters"][0]["error"] == {
        "type": "RuntimeError",
        "message": "second failure",
    }
    as_yaml = yaml.safe_load(cluster.run("dead-letters", "default", "-o", "yaml").stdout)
    assert as_yaml == as_json
    empty = cluster.run("dead-letters", "emails")
    assert empty.stdout == "no dead letters in queue 'emails' (release jobyard, namespace jobs)\n"


def test_retry_all_asks_unless_yes(cluster: Cluster, clean_redis: Apis) -> None:
    job_id = clean_redis.dead_letter()
    refused = cluster.run("dead-letters", "default", "retry")
    assert refused.returncode == 2
    assert refused.stderr == (
        "kubectl jobyard: refusing to go on without confirmation: stdin is not a terminal; "
        "pass --yes\n"
    )
    assert cluster.api.requests == []
    result = cluster.run("dead-letters", "default", "retry", "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "retried 1 dead letter(s) of queue 'default'\n"
    assert _proxied(cluster) == [
        ("GET", "/v1/queues/default", ""),
        ("POST", "/v1/dead-letters:retry", "queue=default"),
    ]
    # cli.fail dies again: it is back in the dead letters after one more attempt.
    clean_redis.wait_state(job_id, "dead")
    assert clean_redis.job(job_id)["attempts"] == 1


def test_retry_and_purge_by_id_check_the_queue(cluster: Cluster, clean_redis: Apis) -> None:
    dead = clean_redis.dead_letter()
    waiting = clean_redis.enqueue("jobyard.noop", "emails")
    wrong_queue = cluster.run("dead-letters", "emails", "retry", dead)
    assert wrong_queue.returncode == 2
    assert wrong_queue.stderr == (
        f"kubectl jobyard: job {dead} belongs to queue 'default', not 'emails'\n"
    )
    not_dead = cluster.run("dead-letters", "emails", "purge", waiting, "--yes")
    assert not_dead.returncode == 2
    assert not_dead.stderr == f"kubectl jobyard: job {waiting} is queued, not a dead letter\n"
    purged = cluster.run("dead-letters", "default", "purge", dead, "--yes", "-o", "json")
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout) == {
        "queue": "default",
        "action": "purge",
        "purged": 1,
        "job_ids": [dead],
    }
    assert _proxied(cluster)[-2:] == [
        ("GET", f"/v1/jobs/{dead}", ""),
        ("DELETE", f"/v1/dead-letters/{dead}", ""),
    ]
    with clean_redis.http() as http:
        assert http.get(f"/v1/jobs/{dead}").status_code == 404


def test_purge_all_with_yes(cluster: Cluster, clean_redis: Apis) -> None:
    for _ in range(2):
        clean_redis.dead_letter()
    result = cluster.run("dead-letters", "default", "purge", "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "purged 2 dead letter(s) of queue 'default'\n"
    assert _proxied(cluster)[-1] == ("DELETE", "/v1/dead-letters", "queue=default")


def test_writes_need_rbac_create_and_delete_on_the_proxy(
    cluster: Cluster, clean_redis: Apis
) -> None:
    clean_redis.dead_letter()
    listed = cluster.run("dead-letters", "default", user="viewer")
    assert listed.returncode == 0, listed.stderr
    denied = cluster.run("dead-letters", "default", "purge", "--yes", user="viewer")
    assert denied.returncode == 2
    assert denied.stderr == (
        'kubectl jobyard: RBAC denied: you may not delete services/proxy "jobyard-api:8000" in '
        'namespace "jobs" (the API server said: services "jobyard-api:8000" is forbidden: User '
        '"viewer" cannot delete resource "services/proxy" in API group "" in the namespace '
        '"jobs"). Ask for the chart\'s kubectl role (values kubectlPlugin.rbac) or check with '
        "`kubectl auth can-i delete services/proxy -n jobs`\n"
    )
    allowed = cluster.run("dead-letters", "default", "purge", "--yes", user="operator")
    assert allowed.returncode == 0, allowed.stderr


def test_secure_release_uses_the_admin_token_for_writes(
    cluster: Cluster, clean_redis: Apis
) -> None:
    job_id = clean_redis.enqueue("cli.fail", "default")
    clean_redis.wait_state(job_id, "dead")
    result = cluster.run(
        "dead-letters", "default", "purge", job_id, "--yes", "-n", "secure", user="operator"
    )
    assert result.returncode == 0, result.stderr
    tokens = {
        r.method: r.headers.get("x-jobyard-token")
        for r in cluster.api.requests
        if "/proxy/" in r.path
    }
    assert tokens == {"GET": ADMIN_TOKEN, "DELETE": ADMIN_TOKEN}


def test_jobs_shows_a_job(cluster: Cluster, clean_redis: Apis) -> None:
    job_id = clean_redis.enqueue("cli.echo", "default", count=2, name="x")
    clean_redis.wait_state(job_id, "succeeded")
    result = cluster.run("jobs", job_id)
    assert result.returncode == 0, result.stderr
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert rows["id"] == job_id
    assert rows["task"] == "cli.echo"
    assert rows["state"] == "succeeded"
    assert (
        rows["result"]
        == '{"count": 2, "name": "x", "tags": [], "opts": {"dry_run": false, "level": 0}}'
    )
    record = json.loads(cluster.run("jobs", job_id, "-o", "json").stdout)
    assert record["id"] == job_id and record["attempts"] == 1
    assert yaml.safe_load(cluster.run("jobs", job_id, "-o", "yaml").stdout) == record
    missing = cluster.run("jobs", "no-such-job")
    assert missing.returncode == 2
    assert missing.stderr.startswith("kubectl jobyard: Job not found (404): ")
