"""The Tiltfile, executed by a real Starlark interpreter (starlark-go, the Go Starlark Tilt
is built on) with Tilt's builtins stubbed to record their calls.

What is real: parsing and executing every statement, control flow included (context
guard, the monitoring flag, loops). What is stubbed: Tilt's builtins (they record their
arguments and return plain values); `load("ext://...")` lines are dropped and the names
they bind are stubbed; `config.X(...)`/`os.X(...)` module calls are rewritten to plain
function names (the Python bindings cannot expose Tilt's module objects). The tests then
check that every path and value the Tiltfile names exists and agrees with the chart and
the Dockerfile.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlark_go import EvalError, Starlark, configure_starlark

ROOT = Path(__file__).resolve().parents[2]
TILTFILE = ROOT / "Tiltfile"

# Tilt runs Starlark with top-level if/for, sets and recursion allowed.
configure_starlark(allow_set=True, allow_global_reassign=True, allow_recursion=True)


class TiltFailError(Exception):
    pass


@dataclass
class Recorder:
    context: str
    flags: dict[str, bool]
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    def called(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(a, k) for n, a, k in self.calls if n == name]

    def builtins(self) -> dict[str, Callable[..., Any]]:
        def record(
            name: str, result: Callable[..., Any] = lambda *a, **k: None
        ) -> Callable[..., Any]:
            def stub(*args: Any, **kwargs: Any) -> Any:
                self.calls.append((name, _plain(args), _plain(kwargs)))
                return result(*args, **kwargs)

            return stub

        def fail(message: str) -> None:
            raise TiltFailError(message)

        def read_yaml(path: str, default: Any = None) -> Any:
            self.calls.append(("read_yaml", (path,), {}))
            return yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))

        names = [
            "version_settings",
            "allow_k8s_contexts",
            "helm_repo",
            "helm_resource",
            "local_resource",
            "docker_build_with_restart",
            "fall_back_on",
            "k8s_yaml",
            "k8s_resource",
            "config__define_bool",
        ]
        stubs = {name: record(name) for name in names}
        stubs.update(
            k8s_context=record("k8s_context", lambda: self.context),
            config__parse=record("config__parse", lambda: dict(self.flags)),
            helm=record("helm", lambda *a, **k: "<rendered chart>"),
            sync=record("sync", lambda src, dest: f"sync:{src}->{dest}"),
            link=record("link", lambda url, name="": url),
            read_yaml=read_yaml,
            fail=fail,
        )
        return stubs


def _plain(value: Any) -> Any:
    """A deep copy in plain Python types (the bindings' values must not be kept)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def source() -> str:
    text = TILTFILE.read_text(encoding="utf-8")
    text = re.sub(r'^load\("ext://[^"]+",[^)]*\)\n', "", text, flags=re.M)
    return re.sub(r"\b(config|os)\.(\w+)\(", r"\1__\2(", text)


# The bindings keep borrowed references to the Python callables given as globals: they
# must outlive the interpreter, or a call lands on freed memory.
_KEEP_ALIVE: list[Any] = []


def run(context: str = "kind-jobyard", **flags: bool) -> Recorder:
    recorder = Recorder(context=context, flags=dict(flags))
    stubs = recorder.builtins()
    interpreter = Starlark(globals=stubs)
    _KEEP_ALIVE.append((stubs, interpreter))
    interpreter.exec(source(), filename="Tiltfile")
    return recorder


class TestGuards:
    def test_version_settings_first(self) -> None:
        tilt = run()
        assert tilt.calls[0] == ("version_settings", [], {"constraint": ">=0.33.0"})

    @pytest.mark.parametrize("context", ["kind-jobyard", "k3d-dev", "docker-desktop"])
    def test_local_contexts_are_allowed(self, context: str) -> None:
        assert run(context).called("allow_k8s_contexts") == [([context], {})]

    @pytest.mark.parametrize(
        "context", ["gke_prod_europe-west1_main", "arn:aws:eks:eu-west-1:1:cluster/prod", "kind"]
    )
    def test_any_other_context_stops_tilt(self, context: str) -> None:
        with pytest.raises(
            EvalError, match=f"refusing to deploy to kubectl context '{re.escape(context)}'"
        ):
            run(context)

    def test_loaded_extensions_are_the_ones_stubbed(self) -> None:
        loads = re.findall(
            r'^load\("(ext://[^"]+)", (.*)\)$', TILTFILE.read_text(encoding="utf-8"), flags=re.M
        )
        assert loads == [
            ("ext://helm_resource", '"helm_repo", "helm_resource"'),
            ("ext://restart_process", '"docker_build_with_restart"'),
        ]


class TestImage:
    def test_narrow_context_and_dockerfile(self) -> None:
        ((args, kwargs),) = run().called("docker_build_with_restart")
        assert args == ["jobyard", "."]
        assert (ROOT / kwargs["dockerfile"]).is_file()
        assert kwargs["target"] == "dev"
        assert f"FROM runtime AS {kwargs['target']}" in (ROOT / kwargs["dockerfile"]).read_text(
            encoding="utf-8"
        )
        assert kwargs["entrypoint"] == ["jobyard"]
        for path in kwargs["only"]:
            assert (ROOT / path).exists(), path
        assert sorted(kwargs["only"]) == ["README.md", "pyproject.toml", "services/"]

    def test_live_update_syncs_only_the_package_into_the_installed_copy(self) -> None:
        tilt = run()
        ((_, kwargs),) = tilt.called("docker_build_with_restart")
        syncs = [s for s in kwargs["live_update"] if str(s).startswith("sync:")]
        assert syncs == ["sync:services/jobyard->/opt/jobyard/lib/python3.12/site-packages/jobyard"]
        assert (ROOT / "services" / "jobyard" / "__init__.py").is_file()
        dockerfile = (ROOT / "services" / "Dockerfile").read_text(encoding="utf-8")
        version = re.search(r"ARG PYTHON_IMAGE=python:(3\.\d+)[.-]", dockerfile)
        assert version and f"/lib/python{version.group(1)}/" in syncs[0]
        ((fallback, _),) = tilt.called("fall_back_on")
        assert all((ROOT / p).is_file() for p in fallback[0])


class TestCharts:
    def test_the_chart_with_the_dev_values(self) -> None:
        ((args, kwargs),) = run().called("helm")
        assert args == ["charts/jobyard"]
        assert (ROOT / args[0] / "Chart.yaml").is_file()
        assert kwargs["values"] == ["deploy/dev-values.yaml"]
        assert all((ROOT / v).is_file() for v in kwargs["values"])
        dev = yaml.safe_load((ROOT / "deploy" / "dev-values.yaml").read_text(encoding="utf-8"))
        assert dev["image"]["repository"] == "jobyard", "the image docker_build_with_restart builds"
        assert dev["keda"]["crdInstalled"] is True, "Tilt renders offline"

    def test_monitoring_flag_adds_kube_prometheus_stack_and_its_values(self) -> None:
        plain = run()
        assert [a[0] for a, _ in plain.called("helm_resource")] == ["keda"]
        tilt = run(monitoring=True)
        assert [a[0] for a, _ in tilt.called("helm_resource")] == ["keda", "kube-prometheus-stack"]
        ((_, kwargs),) = tilt.called("helm")
        assert kwargs["values"] == ["deploy/dev-values.yaml", "deploy/dev-monitoring-values.yaml"]

    @pytest.mark.parametrize("monitoring", [False, True])
    def test_third_party_values_files_exist(self, monitoring: bool) -> None:
        for _args, kwargs in run(monitoring=monitoring).called("helm_resource"):
            flags = kwargs["flags"]
            values = flags[flags.index("--values") + 1]
            assert (ROOT / values).is_file(), values
            assert kwargs["resource_deps"] and kwargs["namespace"]


class TestResources:
    def _resources(self, **flags: bool) -> dict[str, dict[str, Any]]:
        return {a[0]: k for a, k in run(**flags).called("k8s_resource")}

    def test_a_resource_per_workload_of_the_dev_release(self) -> None:
        from tests.chart.rendering import CHART_DIR, load_values, render

        workloads = {
            o["metadata"]["name"]
            for o in render(CHART_DIR, load_values("deploy-dev")).objects
            if o["kind"] in ("Deployment", "StatefulSet")
        }
        named = set(self._resources()) - {"uncategorized"}
        assert named == workloads

    def test_port_forwards_to_api_and_flower(self) -> None:
        resources = self._resources()
        assert resources["jobyard-api"]["port_forwards"] == ["8000:8000"]
        assert resources["jobyard-flower"]["port_forwards"] == ["5555:5555"]
        assert resources["uncategorized"]["resource_deps"] == ["keda"]

    def test_grafana_port_forward_with_monitoring(self) -> None:
        tilt = run(monitoring=True)
        ((args, kwargs),) = tilt.called("local_resource")
        assert args == ["grafana"]
        assert "port-forward svc/kube-prometheus-stack-grafana 3000:80" in kwargs["serve_cmd"]
        assert kwargs["resource_deps"] == ["kube-prometheus-stack"]
        assert not run().called("local_resource")

    def test_every_resource_is_labelled(self) -> None:
        tilt = run(monitoring=True)
        for name in ("k8s_resource", "helm_resource", "helm_repo", "local_resource"):
            for args, kwargs in tilt.called(name):
                assert kwargs.get("labels"), (name, args)
