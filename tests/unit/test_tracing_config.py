"""Tracing is configured from the standard OTEL_* variables, and off by default."""

from __future__ import annotations

import pytest

from jobyard.core.errors import ConfigError
from jobyard.observability.tracing import _exporter, exporter_names, tracing_enabled


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, ["otlp"]),
    ],
)
def test_exporters_from_the_environment(env: dict[str, str], names: list[str]) -> None:
    assert exporter_names(env) == names
    assert tracing_enabled(env) is bool(names)


def test_unknown_exporter_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^OTEL_TRACES_EXPORTER: unknown exporter 'zipkin'; "):
        _exporter("zipkin", {})


def test_grpc_protocol_is_refused_with_what_is_supported() -> None:
    with pytest.raises(ConfigError, match=r"^OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' is not supported"):
        _exporter("otlp", {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
