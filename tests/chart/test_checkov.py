"""checkov (kubernetes framework, `--skip-download`) on the rendered manifests of each values
set checked alone: a set's manifests are one file, checked by its own checkov run, so a
NetworkPolicy of one set never covers the pods of another. No failed check outside the
documented skips, and no skip that is not needed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import MATRIX
from tests.chart.rendering import CHART_DIR, ROOT, Rendered, load_values

# Skipped for every values set (each with its reason there).
CONFIG = CHART_DIR / ".checkov.yaml"

# Skipped only for the values sets that ask for it, on top of CONFIG, and why. A values
# set with skips of its own is checked with `checkov -f <set>.yaml --skip-download
# --skip-check <CONFIG's skips and its own>` (a --skip-check replaces the file's list).
NO_NETWORK_POLICY = (
    "CKV2_K8S_6",
    "pods without a NetworkPolicy: networkPolicy.enabled is off by default because its "
    "peers (the ingress controller's and Prometheus' namespaces) are the cluster's; the "
    "network-policy and worker-egress sets and deploy/prod-values.example.yaml turn it on",
)
WRITABLE_ROOT_FILESYSTEM = (
    "CKV_K8S_22",
    "deploy/dev-values.yaml turns off readOnlyRootFilesystem on purpose: Tilt's "
    "live_update writes the synced source into the container",
)


def set_skips(name: str) -> dict[str, str]:
    """The checks skipped for values set `name` only, with their reasons."""
    values = load_values(name)
    skips: dict[str, str] = {}
    if not values.get("networkPolicy", {}).get("enabled", False):
        skips[NO_NETWORK_POLICY[0]] = NO_NETWORK_POLICY[1]
    if values.get("containerSecurityContext", {}).get("readOnlyRootFilesystem", True) is False:
        skips[WRITABLE_ROOT_FILESYSTEM[0]] = WRITABLE_ROOT_FILESYSTEM[1]
    return skips


def checkov_binary() -> str:
    """checkov pins packaging<24 (pytest 9 needs >=24), so it lives in its own venv:
    CHECKOV, else .venv/tools/checkov (made by the Makefile), else PATH."""
    candidates = [
        os.environ.get("CHECKOV", ""),
        str(ROOT / ".venv" / "tools" / "checkov" / "bin" / "checkov"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("checkov")
    if found is None:
        raise AssertionError(
            "checkov not found: python3 -m venv .venv/tools/checkov && "
            ".venv/tools/checkov/bin/pip install 'checkov>=3.2,<4'"
        )
    return found


def _skips() -> list[str]:
    return list(yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["skip-check"])


def _failed(path: Path, *extra: str) -> dict[str, set[str]]:
    proc = subprocess.run(
        [
            checkov_binary(),
            "-f",
            str(path),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--quiet",
            "--compact",
            "-o",
            "json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    reports: Any = json.loads(proc.stdout)
    if isinstance(reports, dict):
        reports = [reports]
    failed: dict[str, set[str]] = {}
    for report in reports:
        results = report.get("results", {})
        for check in results.get("failed_checks", []):
            failed.setdefault(check["check_id"], set()).add(check["resource"])
    return failed


@pytest.fixture(scope="module")
def manifests(
    rendered: Callable[[str], Rendered], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """`manifests(name)`: one file holding the rendered objects of values set `name`."""
    directory = tmp_path_factory.mktemp("manifests")

    def path(name: str) -> Path:
        file = directory / f"{name}.yaml"
        if not file.exists():
            file.write_text(yaml.safe_dump_all(rendered(name).objects), encoding="utf-8")
        return file

    return path


@pytest.fixture(scope="module")
def all_failed(manifests: Callable[[str], Path]) -> Callable[[str], dict[str, set[str]]]:
    """`all_failed(name)`: every failed check of values set `name` alone, nothing skipped."""
    cache: dict[str, dict[str, set[str]]] = {}

    def get(name: str) -> dict[str, set[str]]:
        if name not in cache:
            cache[name] = _failed(manifests(name))
        return cache[name]

    return get


class TestCheckov:
    @pytest.mark.parametrize("values_name", MATRIX)
    def test_each_values_set_alone_fails_only_documented_skips(
        self, all_failed: Callable[[str], dict[str, set[str]]], values_name: str
    ) -> None:
        failed = all_failed(values_name)
        allowed = set(_skips()) | set(set_skips(values_name))
        assert {check: failed[check] for check in set(failed) - allowed} == {}
        # a set's own skip is needed by that set
        assert set(set_skips(values_name)) <= set(failed)

    def test_every_skip_of_the_config_is_needed(
        self, all_failed: Callable[[str], dict[str, set[str]]]
    ) -> None:
        needed = set().union(*(all_failed(name) for name in MATRIX))
        assert set(_skips()) <= needed
        assert not set(_skips()) & {check for name in MATRIX for check in set_skips(name)}

    def test_checkov_itself_applies_the_skips(self, manifests: Callable[[str], Path]) -> None:
        """The commands a user runs pass: with .checkov.yaml for a set that has no skip of
        its own; with every skip on the command line (which replaces the file's list)
        for one that has."""
        assert set_skips("network-policy") == {}
        assert _failed(manifests("network-policy"), "--config-file", str(CONFIG)) == {}
        skips = [*_skips(), *set_skips("defaults")]
        assert len(skips) > len(_skips())
        assert _failed(manifests("defaults"), "--skip-check", ",".join(skips)) == {}
        assert _failed(manifests("defaults"), "--config-file", str(CONFIG)) != {}

    def test_every_skip_has_a_reason(self) -> None:
        lines = CONFIG.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if re.match(r"\s*- CKV", line):
                assert lines[i - 1].strip().startswith("#"), line
        for check, reason in (NO_NETWORK_POLICY, WRITABLE_ROOT_FILESYSTEM):
            assert re.fullmatch(r"CKV2?_K8S_\d+", check) and len(reason) > 40
