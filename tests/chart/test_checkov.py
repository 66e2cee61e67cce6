"""checkov (kubernetes framework) on the rendered manifests of every values set: no failed
check outside the documented skip list, and no skip that is not needed."""

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
from tests.chart.rendering import CHART_DIR, ROOT, Rendered

CONFIG = CHART_DIR / ".checkov.yaml"
# deploy/dev-values.yaml turns off readOnlyRootFilesystem on purpose (Tilt's live_update
# writes the synced source into the container): checkov judges every other values set.
CHECKED = [name for name in MATRIX if not name.startswith("deploy-dev")]


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


def _failed(directory: Path, *extra: str) -> dict[str, set[str]]:
    proc = subprocess.run(
        [
            checkov_binary(),
            "-d",
            str(directory),
            "--framework",
            "kubernetes",
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
) -> Path:
    directory = tmp_path_factory.mktemp("manifests")
    for name in CHECKED:
        (directory / f"{name}.yaml").write_text(
            yaml.safe_dump_all(rendered(name).objects), encoding="utf-8"
        )
    return directory


class TestCheckov:
    def test_no_failed_check_outside_the_skip_list(self, manifests: Path) -> None:
        assert _failed(manifests, "--config-file", str(CONFIG)) == {}

    def test_every_skip_is_needed(self, manifests: Path) -> None:
        assert set(_failed(manifests)) == set(_skips())

    def test_every_skip_has_a_reason(self) -> None:
        lines = CONFIG.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if re.match(r"\s*- CKV", line):
                assert lines[i - 1].strip().startswith("#"), line
