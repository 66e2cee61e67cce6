"""The installed executable: kubectl finds it and runs it as `kubectl jobyard`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jobyard import __version__
from tests.kubectl.conftest import PLUGIN, Cluster, plugin_env

KUBECTL = "/usr/bin/kubectl"


def _path_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env.update(HOME=str(home), PATH=f"{PLUGIN.parent}:/usr/bin:/bin")
    return env


def test_kubectl_plugin_list_finds_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [KUBECTL, "plugin", "list"],
        env=_path_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(PLUGIN) in result.stdout.splitlines()
    assert "warning" not in result.stderr.lower()


def test_kubectl_runs_it_with_its_arguments(cluster: Cluster) -> None:
    cluster.jobs.set_replicas("jobyard-api", 2)
    env = {**plugin_env(cluster.home, cluster.kubeconfig), "PATH": f"{PLUGIN.parent}:/usr/bin:/bin"}
    result = subprocess.run(
        [KUBECTL, "jobyard", "status", "-n", "jobs", "-o", "json", "--context", "viewer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"release": "jobyard"' in result.stdout
    assert {r.user for r in cluster.api.requests} == {"viewer"}
    version = subprocess.run(
        [KUBECTL, "jobyard", "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert version.stdout == f"kubectl jobyard, version {__version__}\n"


def test_without_the_kubernetes_client_it_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['kubernetes'] = None\n"
        "from jobyard.kubectl.main import main\nmain()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr == (
        "kubectl jobyard: needs the kubernetes client: pip install 'jobyard[kubectl]'\n"
    )


def test_help_lists_every_command() -> None:
    result = subprocess.run(
        [str(PLUGIN), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    commands = result.stdout.split("Commands:")[1].split()
    names = [w for w in commands if w.islower() and w.replace("-", "").isalpha()]
    for name in (
        "dead-letters",
        "drain",
        "jobs",
        "logs",
        "pause",
        "rbac",
        "restart",
        "resume",
        "status",
    ):
        assert name in names
