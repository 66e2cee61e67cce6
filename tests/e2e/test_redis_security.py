"""Redis with TLS and an ACL user (password, default user off): the API, a worker and beat
connect with certificate verification on and run jobs end to end; a wrong CA, no CA, a
wrong password or no user are refused; verification is off only when the URL says so."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import kombu
import pytest
import redis

from jobyard.core.bootstrap import bootstrap
from jobyard.core.celery_app import create_celery
from jobyard.core.tls import broker_ssl_options
from tests.e2e.cluster import E2E_CONFIG, Cluster
from tests.e2e.ledger import Report, Row, account, duplicates, effect_counts
from tests.e2e.secure_redis import ACL_PASSWORD, SecureRedis
from tests.support.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

VERIFY_FAILED = "certificate verify failed"


@pytest.fixture
def secure() -> Iterator[SecureRedis]:
    server = SecureRedis().start()
    try:
        yield server
    finally:
        server.stop()


def test_api_worker_and_beat_run_jobs_over_verified_tls_as_an_acl_user(
    secure: SecureRedis, tmp_path: Path, report: Report
) -> None:
    effects, once = tmp_path / "effects.txt", tmp_path / "effects-once.txt"
    config = E2E_CONFIG + (
        "schedules:\n  - name: tick\n    task: faults.effect_once\n    interval_s: 1\n"
        f"    args: {{path: {str(once)!r}}}\n"
    )
    cluster = Cluster(tmp_path, redis_url=secure.url(), config_text=config)
    try:
        api = cluster.api()
        worker = cluster.worker("alpha")
        beat = cluster.beat()
        assert api.http.get("/readyz").status_code == 200
        body = {"task": "faults.effect", "args": {"path": str(effects)}}
        r = api.http.post("/v1/jobs", json=body)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        cluster.wait_all_terminal([job_id], timeout_s=30)
        assert api.http.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded"
        wait_until(lambda: len(effect_counts(once)) >= 3, timeout_s=30)
        scheduled = list(effect_counts(once))
        cluster.wait_all_terminal(scheduled, timeout_s=30)
        jobs = [job_id, *scheduled]
        acct = account(cluster, jobs)
        logs = [p.log() for p in (api.proc, worker, beat)]
    finally:
        cluster.close()
    assert acct.succeeded == len(jobs) and acct.lost == []
    assert effect_counts(effects) == {job_id: 1}
    assert "leader acquired" in logs[2]
    for text in logs:
        assert ACL_PASSWORD not in text, "the Redis password leaked into a log"
        assert VERIFY_FAILED not in text
    report.add(
        Row.of(
            "Redis over TLS + ACL user",
            acct,
            duplicate_executions=duplicates(effect_counts(effects)),
            effect_duplicates=duplicates(effect_counts(once)),
            recovery_s=None,
            notes="API, worker and beat on rediss:// with our CA, certificate verified; "
            "an API job and beat's schedule ran; the password in no log",
        )
    )


def _kombu_connects(url: str, *, use_jobyard: bool, config_path: Path) -> str:
    """'connected', or the error of a broker connection (jobyard's Celery app, or kombu's
    defaults for the same URL)."""
    if use_jobyard:
        rt = bootstrap({"JOBYARD_REDIS_URL": url, "JOBYARD_CONFIG": str(config_path)})
        app = create_celery(rt.settings, rt.config, rt.registry)
        conn = app.connection_for_write()
    else:
        app = None
        conn = kombu.Connection(url, connect_timeout=3)
    try:
        conn.ensure_connection(max_retries=1)
        conn.default_channel.client.ping()
        return "connected"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.release()
        if app is not None:
            app.close()


def test_certificate_verification_is_on_by_default_and_off_only_when_asked(
    secure: SecureRedis, tmp_path: Path
) -> None:
    config_path = tmp_path / "jobyard.yaml"
    config_path.write_text(E2E_CONFIG)
    ours, other = str(secure.ca.cert_path), str(secure.other_ca.cert_path)

    # kombu alone, given `rediss://` without a CA, connects without verifying anything:
    # the default jobyard must not inherit.
    assert _kombu_connects(secure.url(query=""), use_jobyard=False, config_path=config_path) == (
        "connected"
    )
    cases = {
        f"ssl_ca_certs={ours}": "connected",
        f"ssl_ca_certs={other}": VERIFY_FAILED,
        "": VERIFY_FAILED,  # the system's CAs do not know our CA: verified, so refused
        "ssl_cert_reqs=required": VERIFY_FAILED,
        "ssl_cert_reqs=none": "connected",  # the explicit opt-out
    }
    for query, expected in cases.items():
        url = secure.url(query=query)
        broker = _kombu_connects(url, use_jobyard=True, config_path=config_path)
        assert expected in broker, (query, broker)
        try:
            store = "connected" if redis.Redis.from_url(url, socket_timeout=3).ping() else "no"
        except redis.ConnectionError as exc:
            store = str(exc)
        assert expected in store, (query, store)

    assert broker_ssl_options(secure.url(query="")) == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert broker_ssl_options(secure.url(query="ssl_cert_reqs=none&ssl_ca_certs=/x")) == {
        "ssl_cert_reqs": ssl.CERT_NONE,
        "ssl_ca_certs": "/x",
    }
    assert broker_ssl_options("redis://127.0.0.1:6379/0") is None
    with pytest.raises(ValueError, match="ssl_cert_reqs='maybe' is not one of required"):
        broker_ssl_options(secure.url(query="ssl_cert_reqs=maybe"))


def test_wrong_credentials_or_no_ca_keep_a_worker_from_consuming(
    secure: SecureRedis, tmp_path: Path
) -> None:
    cluster = Cluster(tmp_path, redis_url=secure.url())
    try:
        job_id = cluster.enqueue("faults.effect", {"path": str(tmp_path / "effects.txt")})
        refused = {
            "no CA": (secure.url(query=""), VERIFY_FAILED),
            "wrong password": (
                secure.url(password="wrong"),
                "invalid username-password pair or user is disabled",
            ),
            "no user": (
                f"rediss://127.0.0.1:{secure.port}/0?ssl_ca_certs={secure.ca.cert_path}",
                "Authentication required",
            ),
        }
        procs = {
            name: cluster.worker("alpha", wait=False, env={"JOBYARD_REDIS_URL": url})
            for name, (url, _) in refused.items()
        }
        for name, proc in procs.items():
            proc.wait_for_log(refused[name][1], timeout_s=60)
        time.sleep(2)
        for name, proc in procs.items():
            assert " ready." not in proc.log(), name
            assert ACL_PASSWORD not in proc.log()
        assert cluster.states([job_id]) == {job_id: "queued"}
        assert [json.loads(m)["headers"]["id"] for m in cluster.client.lrange("alpha", 0, -1)] == [
            job_id
        ]
    finally:
        cluster.close()
