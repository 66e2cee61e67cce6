"""`logs QUEUE [-f]`: every worker pod's log by label selector, prefixed by pod; following
streams chunked logs with one thread per pod and picks up pods that appear later."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time

from tests.conftest import ROOT
from tests.kubectl.conftest import PLUGIN, SAMPLES, Cluster, plugin_env

DEPLOYMENT = "jobyard-worker-default"


def test_logs_of_every_pod_prefixed_with_tail_and_since(cluster: Cluster) -> None:
    a = cluster.jobs.add_pod(DEPLOYMENT, lines=["a1", "a2", "a3"])
    b = cluster.jobs.add_pod(DEPLOYMENT, lines=["b1"])
    cluster.jobs.add_pod(DEPLOYMENT, running=False)  # ContainerCreating: no log yet
    cluster.jobs.add_pod("jobyard-worker-emails", lines=["other queue"])
    result = cluster.run("logs", "default", "--tail", "2", "--since", "5m")
    assert result.returncode == 0, result.stderr
    expected = sorted([(a, ["a2", "a3"]), (b, ["b1"])])
    assert result.stdout.splitlines() == [
        f"[pod/{pod}] {line}" for pod, lines in expected for line in lines
    ]
    log_requests = [r for r in cluster.api.requests if r.path.endswith("/log")]
    assert [r.path for r in log_requests] == [
        f"/api/v1/namespaces/jobs/pods/{pod}/log" for pod, _ in expected
    ]
    assert log_requests[0].query == {
        "container": ["worker"],
        "sinceSeconds": ["300"],
        "tailLines": ["2"],
    }
    listed = next(r for r in cluster.api.requests if r.path == "/api/v1/namespaces/jobs/pods")
    assert listed.query["labelSelector"] == [
        "app.kubernetes.io/name=jobyard,app.kubernetes.io/instance=jobyard,"
        "app.kubernetes.io/component=worker,jobyard.io/queue=default"
    ]


def test_no_running_pod_is_said_on_stderr(cluster: Cluster) -> None:
    result = cluster.run("logs", "emails")
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == "no running worker pod of queue 'emails' (scaled to zero?)\n"


class Follower:
    """`kubectl-jobyard logs -f` running; its stdout lines as they come."""

    def __init__(self, cluster: Cluster, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(PLUGIN), *args],
            env=plugin_env(cluster.home, cluster.kubeconfig),
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.lines: list[str] = []
        self.args = list(args)
        self._partial = ""

    def wait_for(self, line: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while line not in self.lines:
            if time.monotonic() > deadline:
                raise AssertionError(f"{line!r} not in {self.lines}")
            for _ in self.selector.select(timeout=0.2):
                assert self.proc.stdout is not None
                chunk = self.proc.stdout.read() or ""
                *complete, self._partial = (self._partial + chunk).split("\n")
                self.lines.extend(complete)
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=15)
        finally:
            self.selector.close()
        if SAMPLES:
            with open(SAMPLES, "a", encoding="utf-8") as out:
                sample = {
                    "args": self.args,
                    "user": None,
                    "code": code,
                    "stdout": "\n".join(self.lines) + "\n",
                    "stderr": "",
                }
                out.write(json.dumps(sample) + "\n")
        return code


def test_follow_streams_new_lines_and_new_pods(cluster: Cluster) -> None:
    first = cluster.jobs.add_pod(DEPLOYMENT, lines=["old 1", "old 2"])
    follower = Follower(cluster, "logs", "default", "-f", "--tail", "1", "--poll-interval", "0.3")
    try:
        follower.wait_for(f"[pod/{first}] old 2")
        assert f"[pod/{first}] old 1" not in follower.lines
        # A chunk written now reaches the terminal while the stream stays open.
        cluster.api.logs[("jobs", first)].append("job started")
        follower.wait_for(f"[pod/{first}] job started")
        # Autoscaling adds a pod: followed from its first line.
        second = cluster.jobs.add_pod(DEPLOYMENT, lines=["booting", "ready"])
        follower.wait_for(f"[pod/{second}] ready")
        assert f"[pod/{second}] booting" in follower.lines
        cluster.api.logs[("jobs", second)].append("from the second pod")
        cluster.api.logs[("jobs", first)].append("from the first pod")
        follower.wait_for(f"[pod/{second}] from the second pod")
        follower.wait_for(f"[pod/{first}] from the first pod")
    finally:
        code = follower.stop()
    assert code == 0
    streams = [r for r in cluster.api.requests if r.path.endswith("/log")]
    assert [(r.path.split("/")[-2], r.query) for r in streams] == [
        (first, {"container": ["worker"], "follow": ["True"], "tailLines": ["1"]}),
        (second, {"container": ["worker"], "follow": ["True"]}),
    ]
