"""Fixtures of the fault suite: a cluster per test, and the session's fault report.

The report (`faults-report.md` and `faults-report.json`) is written in pytest's base
temporary directory (`--basetemp` chooses it) and printed in the terminal summary, with or
without `-s`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.ledger import REPORT, Report

_written: list[Path] = []


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh redis-server and room for jobyard processes; everything stops at the end."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="session")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Report]:
    yield REPORT
    if REPORT.rows:
        _written.extend(REPORT.write(tmp_path_factory.getbasetemp()))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT.rows:
        return
    terminalreporter.section("fault report")
    terminalreporter.write(REPORT.markdown())
    for path in _written:
        terminalreporter.write_line(f"written to {path}")
