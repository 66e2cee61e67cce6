"""The plugin against a fake Kubernetes API server whose service proxy reaches real jobyard
APIs (and a worker) on a real Redis.

Two releases from real Helm renders: `jobyard` in namespace `jobs` (open API) and `secure`
in namespace `secure` (API tokens from the chart's Secret). Kubeconfig users: `admin`
(everything), `viewer` and `operator` (the chart's kubectl roles), `nobody` (no grant).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import ROOT, TEST_CONFIG
from tests.kubectl.cluster import Installed, install, write_kubeconfig
from tests.kubectl.fake_apiserver import FakeApiServer, Grants
from tests.support.processes import Proc, jobyard_env, wait_until
from tests.support.redis_server import free_port

KUBECTL_DB = 11
SAMPLES = os.environ.get("KUBECTL_PLUGIN_SAMPLES")
"""When set, a file where every run is appended (the README's sample output comes from it)."""
PLUGIN = Path(sys.executable).parent / "kubectl-jobyard"
READ_TOKEN = "read-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
USERS = {
    "admin": "k8s-admin-token",
    "viewer": "k8s-viewer-token",
    "operator": "k8s-operator-token",
    "nobody": "k8s-nobody-token",
}


@dataclass
class Apis:
    """The real jobyard processes of the module."""

    open_url: str
    secure_url: str
    redis: redis.Redis
    env: dict[str, str]
    """The environment of the module's jobyard processes (for a test's own worker)."""
    tmp: Path

    def http(self, secure: bool = False) -> httpx.Client:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if secure else {}
        return httpx.Client(
            base_url=self.secure_url if secure else self.open_url, headers=headers, timeout=10
        )

    def enqueue(self, task: str, queue: str, priority: int = 0, **args: object) -> str:
        with self.http() as http:
            response = http.post(
                "/v1/jobs", json={"task": task, "args": args, "queue": queue, "priority": priority}
            )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, object]:
        with self.http() as http:
            data: dict[str, object] = http.get(f"/v1/jobs/{job_id}").json()
        return data

    def wait_state(self, job_id: str, state: str, timeout_s: float = 60) -> None:
        wait_until(lambda: self.job(job_id)["state"] == state, timeout_s=timeout_s, interval_s=0.1)

    def dead_letter(self, reason: str = "boom") -> str:
        """A job of queue default that died (cli.fail has one attempt)."""
        job_id = self.enqueue("cli.fail", "default", reason=reason)
        self.wait_state(job_id, "dead")
        return job_id


@pytest.fixture(scope="session")
def apis(redis_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apis]:
    tmp = tmp_path_factory.mktemp("kubectl")
    redis_url = f"{redis_base_url.rsplit('/', 1)[0]}/{KUBECTL_DB}"
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    config = tmp / "jobyard.yaml"
    config.write_text(TEST_CONFIG)
    open_port, secure_port = free_port(), free_port()
    common = {
        "JOBYARD_JOB_MODULES": "tests.support.cli_jobs,tests.kubectl.gate_jobs",
        "JOBYARD_HEARTBEAT_DIR": str(tmp / "hb"),
    }
    procs = [
        Proc(
            ["api"],
            jobyard_env(redis_url, config, JOBYARD_API_PORT=str(open_port), **common),
            tmp / "api-open.log",
        ),
        Proc(
            ["api"],
            jobyard_env(
                redis_url,
                config,
                JOBYARD_API_PORT=str(secure_port),
                JOBYARD_API_TOKENS=READ_TOKEN,
                JOBYARD_ADMIN_TOKENS=ADMIN_TOKEN,
                **common,
            ),
            tmp / "api-secure.log",
        ),
        Proc(
            ["worker", "--queue", "default"],
            jobyard_env(redis_url, config, **common),
            tmp / "worker-default.log",
        ),
        Proc(["beat"], jobyard_env(redis_url, config, **common), tmp / "beat.log"),
    ]
    result = Apis(
        f"http://127.0.0.1:{open_port}",
        f"http://127.0.0.1:{secure_port}",
        client,
        jobyard_env(redis_url, config, **common),
        tmp,
    )
    try:

        def ready() -> bool:
            for proc in procs:
                if proc.popen.poll() is not None:
                    raise AssertionError(f"{proc.args} exited:\n{proc.log()}")
            try:
                with result.http() as http, result.http(secure=True) as secure:
                    if secure.get("/readyz").status_code != 200:
                        return False
                    queues = {q["name"]: q for q in http.get("/v1/queues").json()["queues"]}
            except httpx.HTTPError:
                return False
            return bool(queues["default"]["workers"] >= 1)

        wait_until(ready, timeout_s=90, interval_s=0.2)
        yield result
    finally:
        for proc in procs:
            proc.stop()
        client.flushdb()
        client.close()


@pytest.fixture
def clean_redis(apis: Apis) -> Apis:
    """The module's Redis without the queues' jobs and dead letters of earlier tests
    (worker heartbeats, beat's lease and tick kept)."""
    for key in apis.redis.scan_iter("*"):
        name = key.decode(errors="replace")
        jobs = name.startswith(("jobyard:job:", "jobyard:dead:", "jobyard:recent", "jobyard:idem:"))
        if jobs or name.split("\x06\x16")[0] in ("default", "emails", "reports"):
            apis.redis.delete(key)
    return apis


@dataclass
class Cluster:
    api: FakeApiServer
    jobs: Installed
    secure: Installed
    kubeconfig: Path
    home: Path

    def run(
        self,
        *args: str,
        user: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        timeout_s: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl-jobyard ARGS` as the operator runs it (KUBECONFIG, optional --context)."""
        full_env = plugin_env(self.home, self.kubeconfig)
        full_env.update(env or {})
        argv = [str(PLUGIN), *args]
        if user is not None:
            argv += ["--context", user]
        result = subprocess.run(
            argv,
            env=full_env,
            cwd=str(ROOT),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if SAMPLES:
            with open(SAMPLES, "a", encoding="utf-8") as out:
                sample = {
                    "args": [*args],
                    "user": user,
                    "code": result.returncode,
                    "stdout": result.stdout,
                    "stderr": result.stderr,
                }
                out.write(json.dumps(sample) + "\n")
        return result

    def requests(self, user: str = "admin") -> list[tuple[str, str, str]]:
        """(method, path, query string) of every recorded request of `user`."""
        out = []
        for r in self.api.requests:
            if r.user == user:
                query = "&".join(f"{k}={v}" for k, vs in sorted(r.query.items()) for v in vs)
                out.append((r.method, r.path, query))
        return out


def plugin_env(home: Path, kubeconfig: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOBYARD_", "KUBE")) and k not in ("HOME",)
    }
    env.update(HOME=str(home), KUBECONFIG=str(kubeconfig), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def cluster(apis: Apis, tmp_path: Path) -> Iterator[Cluster]:
    api = FakeApiServer()
    url = api.start()
    jobs = install(api, {}, "jobyard", "jobs")
    secure = install(
        api,
        {
            "auth": {"apiTokens": [READ_TOKEN], "adminTokens": [ADMIN_TOKEN]},
            "kubectlPlugin": {"rbac": {"readTokenSecret": True}},
        },
        "secure",
        "secure",
    )
    api.proxy_targets[("jobs", "jobyard-api")] = apis.open_url
    api.proxy_targets[("secure", "secure-jobyard-api")] = apis.secure_url
    api.add_user(USERS["admin"], "admin", Grants(everything=True))
    api.add_user(
        USERS["viewer"],
        "viewer",
        Grants(
            namespaced={
                "jobs": jobs.role_rules("read-only"),
                "secure": secure.role_rules("read-only"),
            }
        ),
    )
    api.add_user(
        USERS["operator"],
        "operator",
        Grants(
            namespaced={
                "jobs": jobs.role_rules("operator"),
                "secure": secure.role_rules("operator"),
            }
        ),
    )
    api.add_user(USERS["nobody"], "nobody", Grants())
    home = tmp_path / "home"
    home.mkdir()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url, USERS, "jobs")
    yield Cluster(api, jobs, secure, kubeconfig, home)
    api.stop()
