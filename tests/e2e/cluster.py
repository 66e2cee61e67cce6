"""A whole jobyard on one machine for fault tests: its own redis-server, workers, beat and
API as separate OS processes (each in its own process group), and a producer that
enqueues through the real store.

Redis runs with the chart's ACL rules (`charts/jobyard/files/redis/acl-rules.yaml`): the
API, workers and beat each log in as their own restricted user, and closing the cluster
fails the test when Redis refused any command (its ACL LOG), so a permission the rules
lack fails the suite even where jobyard retries or logs the error. The tests' own client
(`Cluster.client`, producer and oracle) is an admin user.

Limits are short so faults resolve fast: hard time limit 3 s (soft 2 s), retry backoff at
most 1 s, visibility timeout 5 s (> 3 + 1, as the config requires), beat lease 3 s, beat's
unacked restore every 0.5 s and lost-message check every 1 s.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from jobyard.core import keys, store
from jobyard.core.bootstrap import Runtime, bootstrap
from jobyard.core.celery_app import create_celery
from jobyard.core.enqueue import EnqueueRequest, prepare
from tests.support.processes import Proc, jobyard_env, wait_until
from tests.support.redis_acl import ServerUsers, with_user
from tests.support.redis_server import RedisProcess, free_port

FAULT_JOB_MODULES = "tests.support.fault_jobs"

QUEUES = ("alpha", "beta", "gamma")
VISIBILITY_TIMEOUT_S = 5.0
TIME_LIMIT_S = 3.0
SOFT_TIME_LIMIT_S = 2.0
LONG_GRACE_S = 10.0
"""`alpha`'s shutdown grace: longer than any job, so a SIGTERMed worker finishes them."""
SHORT_GRACE_S = 0.5
"""`beta`'s shutdown grace: shorter than a 1.5 s job, so SIGTERM requeues running jobs."""
LEASE_TTL_S = 3.0
TICK_S = 0.25


def e2e_config(
    *,
    soft_time_limit_s: float = SOFT_TIME_LIMIT_S,
    time_limit_s: float = TIME_LIMIT_S,
    visibility_timeout_s: float = VISIBILITY_TIMEOUT_S,
) -> str:
    """The fault suite's `jobyard.yaml` (three queues, short limits, a fast beat)."""
    return f"""
queues:
  - name: alpha
    concurrency: 2
    soft_time_limit_s: {soft_time_limit_s}
    time_limit_s: {time_limit_s}
    shutdown_grace_s: {LONG_GRACE_S}
  - name: beta
    concurrency: 2
    soft_time_limit_s: {soft_time_limit_s}
    time_limit_s: {time_limit_s}
    shutdown_grace_s: {SHORT_GRACE_S}
  - name: gamma
    concurrency: 2
    soft_time_limit_s: {soft_time_limit_s}
    time_limit_s: {time_limit_s}
    shutdown_grace_s: 2
broker:
  visibility_timeout_s: {visibility_timeout_s}
  max_retry_backoff_s: 1
beat:
  lease_ttl_s: {LEASE_TTL_S}
  tick_s: {TICK_S}
  restore_interval_s: 0.5
  orphan_check_interval_s: 1
limits:
  result_ttl_s: 3600
"""


E2E_CONFIG = e2e_config()

COMPONENT_COMMANDS = ("api", "worker", "beat")
"""`jobyard <command>` processes that log in to Redis as their own user."""

QUIET_ENV = {"JOBYARD_WORKER_METRICS_PORT": "0", "JOBYARD_BEAT_METRICS_PORT": "0"}
"""No /metrics ports: many workers and beats of one test share the host."""


class Cluster:
    """Owns one redis-server and every jobyard process a test starts."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        appendonly: bool = False,
        config_text: str = E2E_CONFIG,
        redis_url: str | None = None,
        users: ServerUsers | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Without `redis_url`, a redis-server of our own with the chart's ACL users;
        with it, `users` are that server's users (`redis_url` is the admin's) or None
        (every process uses `redis_url`)."""
        self.tmp_path = tmp_path
        self.server: RedisProcess | None = None
        self.users = users
        if redis_url is None:
            self.users = ServerUsers.generate()
            queues = [q["name"] for q in yaml.safe_load(config_text)["queues"]]
            aclfile = tmp_path / "users.acl"
            aclfile.write_text(self.users.acl_text(queues))
            self.server = RedisProcess(appendonly=appendonly, aclfile=aclfile).start()
            redis_url = self.users.url(self.server.url)
        self.url = redis_url
        """The admin's URL (the tests' producer and oracle)."""
        self.config_path = tmp_path / "jobyard.yaml"
        self.config_path.write_text(config_text)
        self.extra_env = dict(env or {})
        self.procs: list[Proc] = []
        self.client = redis.Redis.from_url(redis_url, socket_timeout=10)
        self.runtime: Runtime = bootstrap(self._settings_env())
        self.app = create_celery(self.runtime.settings, self.runtime.config, self.runtime.registry)
        self.heartbeat_dir = tmp_path / "heartbeats"

    def _settings_env(self) -> dict[str, str]:
        return {
            "JOBYARD_REDIS_URL": self.url,
            "JOBYARD_CONFIG": str(self.config_path),
            "JOBYARD_JOB_MODULES": FAULT_JOB_MODULES,
            **{k: v for k, v in self.extra_env.items() if k.startswith("JOBYARD_")},
        }

    def url_for(self, component: str) -> str:
        """The Redis URL of `component` (api, worker, beat, keda): its own user."""
        if self.users is None:
            return self.url
        return with_user(self.url, self.users.components[component])

    def acl_denials(self) -> list[str]:
        """What Redis refused since it started (or since :meth:`reset_acl_log`)."""
        return [
            f"{e['username']}: {e['reason']} {e['object']!r} ({e['context']})"
            for e in self.client.acl_log()
        ]

    def reset_acl_log(self) -> None:
        """Forget refusals a test provoked on purpose."""
        self.client.acl_log_reset()

    # processes

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> Proc:
        """A `python -m jobyard.cli <args>` process in its own process group."""
        extra = {
            "JOBYARD_JOB_MODULES": FAULT_JOB_MODULES,
            "JOBYARD_HEARTBEAT_DIR": str(self.heartbeat_dir),
            **QUIET_ENV,
            **self.extra_env,
            **(env or {}),
        }
        url = self.url_for(args[0]) if args and args[0] in COMPONENT_COMMANDS else self.url
        full_env = jobyard_env(url, self.config_path, **extra)
        name = "-".join(a.lstrip("-") for a in args[:3])
        proc = Proc(list(args), full_env, self.tmp_path / f"{len(self.procs):02d}-{name}.log")
        self.procs.append(proc)
        return proc

    def worker(self, queue: str, *, wait: bool = True, env: dict[str, str] | None = None) -> Proc:
        """A worker of `queue`; returned once it consumes (unless `wait=False`)."""
        proc = self.spawn("worker", "--queue", queue, env=env)
        if wait:
            proc.wait_for_log(" ready.", timeout_s=60)
        return proc

    def beat(self, *, wait: bool = True) -> Proc:
        proc = self.spawn("beat")
        if wait:
            proc.wait_for_log(" started: ", timeout_s=60)
        return proc

    def api(self, env: dict[str, str] | None = None) -> ApiProc:
        """`jobyard api` on a free loopback port; returned once `/healthz` answers."""
        port = free_port()
        proc = self.spawn("api", "--port", str(port), env=env)
        api = ApiProc(proc, f"http://127.0.0.1:{port}")
        api.wait_healthy()
        return api

    def close(self) -> None:
        """Stop everything; fail when Redis refused a command of a component's user."""
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.stop(timeout_s=10)
        if self.server is not None and self.server.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.server.proc.send_signal(signal.SIGCONT)
        denials: list[str] = []
        if self.users is not None:
            with contextlib.suppress(redis.ConnectionError):
                denials = self.acl_denials()
        self.client.close()
        self.app.close()
        if self.server is not None:
            self.server.stop()
            shutil.rmtree(self.server.dir, ignore_errors=True)
        assert not denials, "Redis refused commands of jobyard's users:\n" + "\n".join(denials)

    # producing

    def enqueue(self, task: str, args: dict[str, Any] | None = None, **request: Any) -> str:
        return self.enqueue_many([(task, args or {}, request)])[0]

    def enqueue_many(self, jobs: Iterable[tuple[str, dict[str, Any], dict[str, Any]]]) -> list[str]:
        """Validate and write records and messages of many jobs in one transaction."""
        rt = self.runtime
        prepared = [
            prepare(self.app, rt.config, rt.registry, EnqueueRequest(task, args=args, **request))
            for task, args, request in jobs
        ]
        pipe = self.client.pipeline(transaction=True)
        for job in prepared:
            store.plan_enqueue(
                pipe, job.record, job.message, result_ttl_s=rt.config.limits.result_ttl_s
            )
        pipe.execute()
        return [job.record.id for job in prepared]

    # reading

    def states(self, job_ids: list[str]) -> dict[str, str | None]:
        """Each job's record state (None: no record)."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(keys.job(job_id), "state")
        return {
            job_id: raw.decode() if raw else None
            for job_id, raw in zip(job_ids, pipe.execute(), strict=True)
        }

    def record(self, job_id: str) -> dict[str, str]:
        raw = self.client.hgetall(keys.job(job_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def message_ids(self) -> dict[str, list[str]]:
        """Where every job message is now: `list` (a queue list), `unacked`, `scheduled`."""
        where: dict[str, list[str]] = {"list": [], "unacked": [], "scheduled": []}
        steps = self.runtime.config.broker.priority_steps
        for queue in self.runtime.config.queue_names:
            for name in keys.queue_lists(queue, steps):
                for raw in self.client.lrange(name, 0, -1):
                    where["list"].append(_message_id(raw))
        for raw in self.client.hvals(keys.KOMBU_UNACKED):
            where["unacked"].append(_message_id(json.loads(raw)[0]))
        where["scheduled"] = [m.decode() for m in self.client.zrange(keys.SCHEDULED, 0, -1)]
        return where

    def wait_all_terminal(
        self, job_ids: list[str], timeout_s: float, allowed: Iterable[str] = ()
    ) -> float:
        """Seconds until every job is terminal (or in `allowed`); the timeout is not an
        error here: the accounting that follows reports what is left."""
        done = {"succeeded", "failed", "dead", "cancelled", *allowed}
        start = time.monotonic()
        deadline = start + timeout_s
        while time.monotonic() < deadline:
            if all(s in done for s in self.states(job_ids).values()):
                break
            time.sleep(0.1)
        return time.monotonic() - start


def _message_id(raw: bytes | str | dict[str, Any]) -> str:
    payload = raw if isinstance(raw, dict) else json.loads(raw)
    headers = payload.get("headers") or {}
    return str(headers.get("id") or payload.get("properties", {}).get("correlation_id"))


class ApiProc:
    """A running `jobyard api` and an HTTP client for it."""

    def __init__(self, proc: Proc, base_url: str) -> None:
        self.proc = proc
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=10)

    def wait_healthy(self, timeout_s: float = 60) -> None:
        def healthy() -> bool:
            if self.proc.popen.poll() is not None:
                raise AssertionError(f"api exited:\n{self.proc.log()}")
            try:
                return self.http.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, timeout_s=timeout_s, interval_s=0.1)
