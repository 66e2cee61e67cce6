"""jobyard.yaml validation: good files load, bad ones name the field, value and rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobyard.core.config import load_config, parse_config
from jobyard.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = "queues:\n  - name: default\n"


def test_sample_config_has_three_queues_and_a_daily_cleanup() -> None:
    cfg = load_config(ROOT / "jobyard.yaml")
    assert cfg.queue_names == ["default", "emails", "reports"]
    cleanup = next(s for s in cfg.schedules if s.task == "maintenance.cleanup")
    assert cleanup.cron is not None and cleanup.cron.split()[2:] == ["*", "*", "*"]


def test_minimal_config_gets_documented_defaults() -> None:
    cfg = parse_config(MINIMAL)
    q = cfg.queue("default")
    assert (q.concurrency, q.soft_time_limit_s, q.time_limit_s) == (2, 300, 360)
    assert cfg.broker.priority_steps == (0, 3, 6, 9)
    # longest hard limit + max retry backoff + 60 s margin
    assert cfg.visibility_timeout_s == 360 + 600 + 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "queues:\n  - name: default\n    concurency: 3\n",
            "queues[0].concurency: unknown key (check its spelling) (got 3)",
        ),
        (
            "queues:\n  - name: Default_Q\n",
            "queues[0].name: String should match pattern",
        ),
        (
            "queues:\n  - name: a\n    soft_time_limit_s: 10\n    time_limit_s: 5\n",
            "soft_time_limit_s (10) must be below time_limit_s (5)",
        ),
        (
            "queues:\n  - name: a\n  - name: a\n",
            "queue names must be unique; repeated: a",
        ),
        ("queues: []\n", "queues: List should have at least 1 item"),
        (
            MINIMAL + "schedules:\n  - name: s\n    task: a.b\n    cron: '61 * * * *'\n",
            "schedules[0].cron: Value error, cron '61 * * * *' does not parse",
        ),
        (
            MINIMAL + "schedules:\n  - name: s\n    task: a.b\n",
            "set exactly one of cron or interval_s",
        ),
        (
            MINIMAL
            + "schedules:\n  - name: s\n    task: a.b\n    interval_s: 5\n    queue: nope\n",
            "schedule 's' names queue 'nope'; configured queues: default",
        ),
        (
            MINIMAL + "broker:\n  visibility_timeout_s: 100\n",
            "broker.visibility_timeout_s (100) must exceed the longest queue time_limit_s plus "
            "broker.max_retry_backoff_s (960)",
        ),
        (
            MINIMAL + "broker:\n  priority_steps: [3, 6]\n",
            "priority_steps must start at 0",
        ),
        ("queues: [\n", "not valid YAML"),
        ("- a\n- b\n", "the top level must be a mapping, got list"),
        (
            MINIMAL + "limits:\n  max_payload_bytes: 'lots'\n",
            "limits.max_payload_bytes: Input should be a valid integer",
        ),
    ],
)
def test_bad_config_names_the_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="cfg.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("cfg.yaml")


def test_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set JOBYARD_CONFIG"):
        load_config(tmp_path / "absent.yaml")
