"""values.yaml and values.schema.json agree, the schema is strict at every level, and bad
values fail with a message that names the value and what is allowed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.rendering import CHART_DIR, render_error

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
KEDA = {"keda": {"crdInstalled": True}}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref:
        return dict(SCHEMA["$defs"][ref.rsplit("/", 1)[1]])
    return node


def _objects(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    node = _resolve(node)
    if node.get("type") == "object" or "object" in node.get("type", []):
        yield path, node
        for key, child in node.get("properties", {}).items():
            yield from _objects(child, f"{path}.{key}")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            yield from _objects(extra, f"{path}.*")
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        yield from _objects(node["items"], f"{path}[]")


def _value_paths(
    value: Any, schema: dict[str, Any], path: str
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Every key of `value` with the schema node that covers it (None: no entry)."""
    schema = _resolve(schema)
    if isinstance(value, dict) and "properties" in schema:
        for key, child in value.items():
            sub = schema["properties"].get(key)
            yield f"{path}.{key}", sub
            if sub is not None:
                yield from _value_paths(child, sub, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from _value_paths(item, schema["items"], f"{path}[{i}]")


class TestSchemaCompleteness:
    def test_every_key_in_values_yaml_has_a_schema_entry(self) -> None:
        missing = [p for p, node in _value_paths(VALUES, SCHEMA, "") if node is None]
        assert missing == []

    def test_every_schema_property_is_in_values_yaml(self) -> None:
        """The schema documents nothing values.yaml does not show (and comment)."""

        def walk(value: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
            schema = _resolve(schema)
            if not isinstance(value, dict) or "properties" not in schema:
                return
            for key, child in schema["properties"].items():
                if key not in value:
                    yield f"{path}.{key}"
                elif value[key] != {}:  # empty sections keep jobyard's own defaults
                    yield from walk(value[key], child, f"{path}.{key}")

        assert list(walk(VALUES, SCHEMA, "")) == []

    def test_every_object_level_forbids_unknown_keys(self) -> None:
        loose = []
        for path, node in _objects(SCHEMA, ""):
            if "x-kubernetes-object" in node:
                continue  # passed through to Kubernetes, validated there (test_validation)
            if "x-free-form" in node:
                continue  # a job's arguments: its argument model validates them
            if "additionalProperties" not in node or node["additionalProperties"] is True:
                loose.append(path)
        assert loose == []

    def test_passthrough_objects_are_only_kubernetes_api_types(self) -> None:
        kinds = {
            node["x-kubernetes-object"]
            for _, node in _objects(SCHEMA, "")
            if "x-kubernetes-object" in node
        }
        assert kinds == {
            "Affinity",
            "Toleration",
            "TopologySpreadConstraint",
            "EnvVar",
            "NetworkPolicyPeer",
        }
        free_form = [p for p, node in _objects(SCHEMA, "") if "x-free-form" in node]
        assert free_form == [".config.schedules[].args"]

    def test_every_key_in_values_yaml_is_commented(self) -> None:
        """Every setting (a key with a value on its line) has a comment above it, unless it
        sits in a block documented as a whole ("# -- ..." above a key whose value spans
        several lines: a securityContext, resources, the example queues). Section keys
        (plain maps of settings) need none."""
        undocumented = []
        stack: list[tuple[int, bool]] = []  # (indent, documented as a whole)
        previous = ""
        block_start = ""  # first line of the comment block above the current line
        skip_deeper_than: int | None = None
        for line in (CHART_DIR / "values.yaml").read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            indent = len(line) - len(line.lstrip())
            if not stripped:
                previous = block_start = ""
                continue
            if stripped.startswith("#"):
                if not previous.startswith("#"):
                    block_start = stripped
                previous = stripped
                continue
            if skip_deeper_than is not None and indent > skip_deeper_than:
                continue
            skip_deeper_than = None
            match = re.match(r"([A-Za-z_][\w.-]*):(.*)$", stripped)
            if match is None:  # a list item of a default
                skip_deeper_than = indent - 1
                previous = stripped
                continue
            while stack and stack[-1][0] >= indent:
                stack.pop()
            covered = any(documented for _, documented in stack)
            inline = match.group(2).strip()
            if inline:
                if not covered and not previous.startswith("#"):
                    undocumented.append(match.group(1))
            else:
                stack.append((indent, previous.startswith("#") and block_start.startswith("# --")))
            previous = stripped
        assert undocumented == []


BAD_VALUES = [
    pytest.param(
        {"queues": [{"name": "Reports_Q"}]},
        "at '/queues/0/name': 'Reports_Q' does not match pattern",
        id="queue-name-not-dns-label",
    ),
    pytest.param({"queues": [{"name": "a" * 41}]}, "/queues/0/name", id="queue-name-too-long"),
    pytest.param(
        {"queues": [{"name": "q", "concurrency": "four"}]},
        "at '/queues/0/concurrency': got string, want integer",
        id="wrong-type",
    ),
    pytest.param(
        {"queues": [{"name": "q", "replicas": 3}]},
        "at '/queues/0': additional properties 'replicas' not allowed",
        id="unknown-queue-key",
    ),
    pytest.param(
        {"api": {"replica": 3}},
        "at '/api': additional properties 'replica' not allowed",
        id="unknown-key",
    ),
    pytest.param({"queues": []}, "/queues", id="no-queue"),
    pytest.param(
        {"queues": [{"name": "q", "min_replicas": -1}]}, "/queues/0/min_replicas", id="negative-min"
    ),
    pytest.param({"auth": {"apiTokens": ["short"]}}, "/auth/apiTokens/0", id="short-token"),
    pytest.param(
        {"otel": {"env": {"JOBYARD_X": "1"}}},
        "'JOBYARD_X' does not match pattern '^OTEL_[A-Z0-9_]+$'",
        id="otel-env-name",
    ),
    pytest.param(
        {"config": {"schedules": [{"name": "s", "task": "t"}]}},
        "/config/schedules/0",
        id="schedule-without-trigger",
    ),
    pytest.param(
        {"config": {"broker": {"priority_steps": [0, 12]}}},
        "/config/broker/priority_steps/1",
        id="priority-step-range",
    ),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES)
def test_schema_rejects_bad_values_naming_the_field(
    chart_dir: Path, values: dict[str, Any], message: str
) -> None:
    error = render_error(chart_dir, {**KEDA, **values})
    assert "values don't meet the specifications of the schema" in error
    assert message in error


BAD_COMBINATIONS = [
    pytest.param(
        {
            "queues": [
                {
                    "name": "q",
                    "soft_time_limit_s": 100,
                    "time_limit_s": 150,
                    "worker": {"terminationGracePeriodSeconds": 90},
                }
            ]
        },
        "queues[0] (q): worker.terminationGracePeriodSeconds (90) must be above "
        "soft_time_limit_s + shutdown_grace_s (100 + 30 = 130)",
        id="grace-below-soft-limit",
    ),
    pytest.param(
        {
            "queues": [
                {
                    "name": "q",
                    "soft_time_limit_s": 100,
                    "time_limit_s": 150,
                    "worker": {"terminationGracePeriodSeconds": 130},
                }
            ]
        },
        "worker.terminationGracePeriodSeconds (130) must be above "
        "soft_time_limit_s + shutdown_grace_s",
        id="grace-equal-to-floor",
    ),
    pytest.param(
        {"queues": [{"name": "q", "min_replicas": 5, "max_replicas": 2}]},
        "queues[0] (q): min_replicas (5) must not exceed max_replicas (2)",
        id="min-above-max",
    ),
    pytest.param(
        {"queues": [{"name": "q", "soft_time_limit_s": 400}]},
        "queues[0] (q): soft_time_limit_s (400) must be below time_limit_s (360)",
        id="soft-above-hard",
    ),
    pytest.param(
        {"queues": [{"name": "q", "autoscaling": {"cooldownPeriod": 100}}]},
        "queues[0] (q): autoscaling.cooldownPeriod (100) must be above the grace period (360 s)",
        id="cooldown-below-grace",
    ),
    pytest.param(
        {"queues": [{"name": "q"}, {"name": "q"}]},
        'queues[1]: queue name "q" is used twice',
        id="duplicate-queue",
    ),
    pytest.param(
        {
            "queues": [
                {"name": "q", "max_replicas": 2, "autoscaling": {"fallback": {"replicas": 3}}}
            ]
        },
        "autoscaling.fallback.replicas (3) must not exceed max_replicas (2)",
        id="fallback-above-max",
    ),
    pytest.param(
        {"redis": {"bundled": {"enabled": False}}},
        "redis.host is required when redis.bundled.enabled is false",
        id="no-redis-host",
    ),
    pytest.param(
        {"redis": {"host": "r", "bundled": {"enabled": False}}},
        "redis.users.api.password is required when redis.auth is true",
        id="no-redis-password",
    ),
    pytest.param(
        {"redis": {"host": "r"}},
        "redis.host is set and redis.bundled.enabled is true",
        id="two-redis",
    ),
    pytest.param(
        {"flower": {"enabled": True}},
        "flower.basicAuth (user:password) is required when flower.enabled",
        id="flower-without-auth",
    ),
    pytest.param(
        {"monitoring": {"serviceMonitor": {"enabled": True}}},
        "need the Prometheus Operator (API monitoring.coreos.com/v1)",
        id="monitoring-without-crd",
    ),
    pytest.param(
        {
            "fullnameOverride": "a-very-long-release-name-for-jobyard",
            "queues": [{"name": "x" * 30}],
        },
        "is 74 characters, Kubernetes allows 63",
        id="name-too-long",
    ),
    pytest.param(
        {"api": {"hpa": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
        "api.hpa.minReplicas (5) must not exceed api.hpa.maxReplicas (2)",
        id="api-hpa-min-above-max",
    ),
]


@pytest.mark.parametrize(("values", "message"), BAD_COMBINATIONS)
def test_inconsistent_values_fail_the_render_with_a_clear_message(
    chart_dir: Path, values: dict[str, Any], message: str
) -> None:
    error = render_error(chart_dir, {**KEDA, **values})
    assert message in error
