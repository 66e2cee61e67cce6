"""Real beat processes' /metrics: leader 1, standby 0, schedules counted as enqueued."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobyard import __version__
from tests.support.obs_scrape import free_port, promtool_check, samples, try_scrape, value
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

CONFIG = """
queues:
  - name: default
schedules:
  - name: often
    task: jobyard.noop
    interval_s: 1
beat:
  lease_ttl_s: 3
  tick_s: 0.25
"""


def leader_value(url: str) -> float | None:
    text = try_scrape(url)
    return None if text is None else value(samples(text), "jobyard_beat_leader")


def test_leader_and_standby_and_sent_runs(spawn: Any, config_path: Path) -> None:
    config_path.write_text(CONFIG)
    first_port, second_port = free_port(), free_port()
    first = spawn("beat", env={"JOBYARD_BEAT_METRICS_PORT": str(first_port)})
    first_url = f"http://127.0.0.1:{first_port}/metrics"
    wait_until(lambda: leader_value(first_url) == 1, timeout_s=30, interval_s=0.1)
    spawn("beat", env={"JOBYARD_BEAT_METRICS_PORT": str(second_port)})
    second_url = f"http://127.0.0.1:{second_port}/metrics"
    wait_until(lambda: leader_value(second_url) == 0, timeout_s=30, interval_s=0.1)
    assert leader_value(first_url) == 1

    def sent() -> float:
        text = try_scrape(first_url) or ""
        n = value(
            samples(text), "jobyard_jobs_enqueued_total", queue="default", task="jobyard.noop"
        )
        return n or 0

    wait_until(lambda: sent() >= 2, timeout_s=30, interval_s=0.1)
    text = try_scrape(first_url)
    assert text is not None
    assert value(samples(text), "jobyard_build_info", component="beat", version=__version__) == 1
    result = promtool_check(text)
    assert result.returncode == 0, result.stdout + result.stderr
    # The leader stops: the standby takes over and says so.
    first.stop()
    wait_until(lambda: leader_value(second_url) == 1, timeout_s=30, interval_s=0.1)
