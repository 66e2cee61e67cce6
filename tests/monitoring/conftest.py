"""Fixtures of the monitoring tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.monitoring.prometheus_server import PrometheusServer, running_prometheus


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus with an empty TSDB: its query API is the PromQL parser."""
    workdir: Path = tmp_path_factory.mktemp("prometheus")
    with running_prometheus(workdir) as server:
        yield server
