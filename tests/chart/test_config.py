"""The jobyard.yaml ConfigMap: what the runtime accepts, nothing it rejects, and no drift
between the chart's defaults and schema and the runtime's models."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from jobyard.core.config import (
    BeatConfig,
    BrokerConfig,
    LimitsConfig,
    QueueAlerts,
    QueueConfig,
    ScheduleConfig,
    parse_config,
)
from tests.chart.conftest import MATRIX
from tests.chart.rendering import CHART_DIR, RELEASE, Rendered, load_values, pod_spec

Render = Callable[[str], Rendered]
CHART_ONLY_QUEUE_KEYS = {"worker", "autoscaling"}


def _schema() -> dict[str, Any]:
    return dict(json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8")))


def _chart_values() -> dict[str, Any]:
    return dict(yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8")))


def _defaults(model: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.default_factory is not None:
            value = field.default_factory()  # type: ignore[call-arg]
            out[name] = value.model_dump() if isinstance(value, BaseModel) else value
        elif not field.is_required():
            out[name] = field.default
    return out


class TestRenderedConfig:
    @pytest.mark.parametrize("values_name", MATRIX)
    def test_the_runtime_accepts_the_rendered_config(
        self, rendered: Render, values_name: str
    ) -> None:
        parse_config(rendered(values_name).config_text(), source="rendered jobyard.yaml")

    def test_every_runtime_setting_reaches_the_config(self, rendered: Render) -> None:
        config = parse_config(rendered("rich").config_text())
        values = load_values("rich")
        default = config.queue("default")
        assert (
            default.model_dump()
            == QueueConfig.model_validate(
                {k: v for k, v in values["queues"][0].items() if k not in CHART_ONLY_QUEUE_KEYS}
            ).model_dump()
        )
        reports = config.queue("reports")
        assert reports.max_tasks_per_child is None and reports.max_memory_per_child_kib is None
        assert reports.alerts.backlog_jobs == 500, "queueDefaults.alerts reach every queue"
        assert config.limits.model_dump() == values["config"]["limits"]
        assert config.broker.visibility_timeout_s == 4000
        assert config.broker.max_retry_backoff_s == 300
        assert config.beat.model_dump() == values["config"]["beat"]
        assert [s.name for s in config.schedules] == ["cleanup", "heartbeat-noop"]
        assert config.schedules[1].enabled is False and config.schedules[1].queue == "default"

    def test_chart_only_keys_stay_out_of_the_config(self, rendered: Render) -> None:
        data = yaml.safe_load(rendered("rich").config_text())
        for queue in data["queues"]:
            assert set(queue) <= set(QueueConfig.model_fields), set(queue) - set(
                QueueConfig.model_fields
            )
        assert set(data) <= {"queues", "schedules", "limits", "broker", "beat"}

    def test_empty_sections_keep_the_runtime_defaults(self, rendered: Render) -> None:
        data = yaml.safe_load(rendered("defaults").config_text())
        assert set(data) == {"queues", "schedules"}

    def test_the_config_is_mounted_where_jobyard_config_points(self, rendered: Render) -> None:
        r = rendered("defaults")
        for deployment in r.of_kind("Deployment"):
            if deployment["metadata"]["labels"]["app.kubernetes.io/component"] not in (
                "api",
                "worker",
                "beat",
            ):
                continue
            spec = pod_spec(deployment)
            (c,) = spec["containers"]
            env = {e["name"]: e for e in c["env"]}
            assert env["JOBYARD_CONFIG"]["value"] == "/etc/jobyard/jobyard.yaml"
            mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
            assert mount == {"name": "config", "mountPath": "/etc/jobyard", "readOnly": True}
            volume = next(v for v in spec["volumes"] if v["name"] == "config")
            assert volume["configMap"]["name"] == f"{RELEASE}-config"


class TestChecksums:
    BASE: dict[str, Any] = {
        **load_values("flower"),
        "redis": {
            "users": {
                c: {"username": f"jobyard-{c}", "password": f"fixed-{c}-password"}
                for c in ("api", "worker", "beat", "keda", "flower", "probe")
            }
        },
    }

    def test_pods_roll_when_the_config_changes(
        self, render_with: Callable[[dict[str, Any]], Rendered]
    ) -> None:
        before = render_with(self.BASE)
        after = render_with({**self.BASE, "queueDefaults": {"shutdown_grace_s": 40}})
        for name in (
            f"{RELEASE}-api",
            f"{RELEASE}-beat",
            f"{RELEASE}-worker-default",
            f"{RELEASE}-flower",
        ):
            a = before.get("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
            b = after.get("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
            assert a["checksum/config"] != b["checksum/config"], name
            assert a["checksum/secret"] == b["checksum/secret"], name

    def test_pods_roll_when_the_secret_changes(
        self, render_with: Callable[[dict[str, Any]], Rendered]
    ) -> None:
        before = render_with(self.BASE)
        after = render_with({**self.BASE, "auth": {"apiTokens": ["another-token-0123456789"]}})
        a = before.get("Deployment", f"{RELEASE}-api")["spec"]["template"]["metadata"][
            "annotations"
        ]
        b = after.get("Deployment", f"{RELEASE}-api")["spec"]["template"]["metadata"]["annotations"]
        assert a["checksum/secret"] != b["checksum/secret"]
        assert a["checksum/config"] == b["checksum/config"]

    def test_the_checksum_is_the_sha256_of_the_rendered_config(self, rendered: Render) -> None:
        import hashlib

        r = rendered("rich")
        annotations = r.get("Deployment", f"{RELEASE}-beat")["spec"]["template"]["metadata"][
            "annotations"
        ]
        assert (
            annotations["checksum/config"]
            == hashlib.sha256(r.config_text().rstrip("\n").encode()).hexdigest()
        )

    def test_no_secret_checksum_with_an_existing_secret(self, rendered: Render) -> None:
        annotations = rendered("external-redis-tls").get("Deployment", f"{RELEASE}-api")["spec"][
            "template"
        ]["metadata"]["annotations"]
        assert "checksum/secret" not in annotations and "checksum/config" in annotations


class TestNoDriftWithTheRuntime:
    def test_queue_defaults_equal_the_runtime_defaults(self) -> None:
        defaults = _chart_values()["queueDefaults"]
        runtime = {k: v for k, v in defaults.items() if k not in CHART_ONLY_QUEUE_KEYS}
        expected = _defaults(QueueConfig)
        assert runtime == expected

    def test_the_schema_knows_exactly_the_runtime_queue_fields(self) -> None:
        item = _schema()["properties"]["queues"]["items"]
        assert set(item["properties"]) - CHART_ONLY_QUEUE_KEYS == set(QueueConfig.model_fields)
        assert set(item["properties"]["alerts"]["properties"]) == set(QueueAlerts.model_fields)
        defaults = _schema()["properties"]["queueDefaults"]["properties"]
        assert set(defaults) - CHART_ONLY_QUEUE_KEYS == set(QueueConfig.model_fields) - {"name"}

    @pytest.mark.parametrize(
        ("section", "model"),
        [("limits", LimitsConfig), ("broker", BrokerConfig), ("beat", BeatConfig)],
    )
    def test_the_schema_knows_exactly_the_runtime_section_fields(
        self, section: str, model: type[BaseModel]
    ) -> None:
        props = _schema()["properties"]["config"]["properties"][section]["properties"]
        assert set(props) == set(model.model_fields)

    def test_the_schema_knows_exactly_the_schedule_fields(self) -> None:
        props = _schema()["properties"]["config"]["properties"]["schedules"]["items"]["properties"]
        assert set(props) == set(ScheduleConfig.model_fields)

    def test_queue_name_pattern_is_the_runtimes(self) -> None:
        from jobyard.core.config import NAME_PATTERN, SCHEDULE_NAME_PATTERN

        schema = _schema()["properties"]
        assert schema["queues"]["items"]["properties"]["name"]["pattern"] == NAME_PATTERN
        schedule = schema["config"]["properties"]["schedules"]["items"]["properties"]["name"]
        assert schedule["pattern"] == SCHEDULE_NAME_PATTERN

    def test_default_queues_match_the_sample_config(self) -> None:
        sample = parse_config((CHART_DIR.parents[1] / "jobyard.yaml").read_text(encoding="utf-8"))
        assert [q["name"] for q in _chart_values()["queues"]] == sample.queue_names


def _bounds(model: type[BaseModel], name: str) -> dict[str, float]:
    """The numeric bounds pydantic enforces on a field (also inside `X | None`)."""
    import typing

    import annotated_types as at
    from pydantic.fields import FieldInfo

    field = model.model_fields[name]
    metadata = list(field.metadata)
    for arg in typing.get_args(field.annotation):
        for extra in getattr(arg, "__metadata__", ()):
            metadata.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
    out: dict[str, float] = {}
    for item in metadata:
        for kind, attr, word in (
            (at.Ge, "ge", "minimum"),
            (at.Gt, "gt", "exclusiveMinimum"),
            (at.Le, "le", "maximum"),
            (at.Lt, "lt", "exclusiveMaximum"),
        ):
            if isinstance(item, kind):
                out[word] = getattr(item, attr)
    return out


def _schema_bounds(node: dict[str, Any]) -> dict[str, float]:
    words = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
    return {w: node[w] for w in words if w in node}


@pytest.mark.parametrize(
    ("path", "model"),
    [
        (("queues", "items"), QueueConfig),
        (("queues", "items", "properties", "alerts"), QueueAlerts),
        (("config", "properties", "limits"), LimitsConfig),
        (("config", "properties", "broker"), BrokerConfig),
        (("config", "properties", "beat"), BeatConfig),
    ],
)
def test_schema_bounds_equal_the_runtime_bounds(
    path: tuple[str, ...], model: type[BaseModel]
) -> None:
    """A value the schema lets through is one jobyard accepts at start-up, and vice versa."""
    node: dict[str, Any] = _schema()["properties"]
    for step in path:
        node = node[step]
    for name, prop in node["properties"].items():
        if name in model.model_fields and name not in ("alerts",):
            assert _schema_bounds(prop) == _bounds(model, name), name
