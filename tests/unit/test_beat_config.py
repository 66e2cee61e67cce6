"""The `beat:` config section and beat's start-up checks of the schedules."""

from __future__ import annotations

import pytest

from jobyard.beat.validation import validate_schedules
from jobyard.core.config import parse_config
from jobyard.core.errors import ConfigError
from jobyard.core.registry import Registry, job, load_job_modules
from jobyard.jobs.noop import NoopArgs, noop

QUEUES = "queues:\n  - name: default\n  - name: emails\n"


def test_beat_defaults() -> None:
    beat = parse_config(QUEUES).beat
    assert (beat.lease_ttl_s, beat.tick_s, beat.restore_interval_s, beat.missed_grace_s) == (
        10,
        1,
        10,
        60,
    )


@pytest.mark.parametrize(
    ("beat", "expected"),
    [
        (
            "  lease_ttl_s: 3\n  tick_s: 1.5\n",
            "beat: Value error, tick_s (1.5) must be at most a third of lease_ttl_s (3)",
        ),
        (
            "  tick_s: 1\n  missed_grace_s: 1.5\n",
            "beat: Value error, missed_grace_s (1.5) must be at least twice tick_s (1)",
        ),
        ("  lease_ttl_s: 0.5\n", "beat.lease_ttl_s: Input should be greater than or equal to 1"),
        ("  tick_s: 0\n", "beat.tick_s: Input should be greater than or equal to 0.05"),
        ("  lease_ttl: 3\n", "beat.lease_ttl: unknown key (check its spelling) (got 3)"),
    ],
)
def test_bad_beat_section_names_the_field(beat: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(QUEUES + "beat:\n" + beat, source="jobyard.yaml")
    assert f"jobyard.yaml: {expected}" in str(err.value)


def test_three_ticks_fit_in_the_lease() -> None:
    beat = parse_config(QUEUES + "beat:\n  lease_ttl_s: 3\n  tick_s: 1\n").beat
    assert (beat.lease_ttl_s, beat.tick_s) == (3, 1)


def _check(schedules: str) -> None:
    config = parse_config(QUEUES + "schedules:\n" + schedules)
    validate_schedules(config, load_job_modules([]), "jobyard.yaml")


def test_valid_schedules_pass() -> None:
    _check(
        "  - name: a\n    task: jobyard.noop\n    interval_s: 2\n"
        "  - name: b\n    task: jobyard.noop\n    cron: '0 3 * * *'\n    queue: emails\n"
    )


def test_unknown_task_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigError) as err:
        _check("  - name: a\n    task: reports.nightly\n    interval_s: 60\n")
    assert str(err.value).startswith(
        "jobyard.yaml: schedules[0].task: unknown task 'reports.nightly'; registered tasks: "
    )
    assert "jobyard.noop" in str(err.value)


def test_bad_args_name_each_field_under_the_schedule() -> None:
    with pytest.raises(ConfigError) as err:
        _check(
            "  - name: ok\n    task: jobyard.noop\n    interval_s: 60\n"
            "  - name: bad\n    task: jobyard.noop\n    interval_s: 60\n"
            "    args: {colour: red}\n"
        )
    assert str(err.value) == (
        "jobyard.yaml: schedules[1].args.colour: unknown key (check its spelling) (got 'red')"
    )


def test_interval_shorter_than_two_ticks_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        _check("  - name: fast\n    task: jobyard.noop\n    interval_s: 1\n")
    assert str(err.value) == (
        "jobyard.yaml: schedules[0].interval_s: 1 s is shorter than twice beat.tick_s (1 s); "
        "raise it or lower beat.tick_s"
    )


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        _check(
            "  - name: a\n    task: nope.never\n    interval_s: 60\n    enabled: false\n"
            "  - name: b\n    task: jobyard.noop\n    interval_s: 60\n    args: {x: 1}\n"
        )
    lines = str(err.value).splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "schedules[0].task",
        "schedules[1].args.x",
    ]


def test_a_task_whose_default_queue_is_not_configured_needs_a_queue() -> None:
    registry = Registry()
    job("reports.nightly", args=NoopArgs, queue="reports", registry=registry)(noop)
    config = parse_config(
        QUEUES + "schedules:\n  - name: n\n    task: reports.nightly\n    interval_s: 60\n"
    )
    with pytest.raises(ConfigError) as err:
        validate_schedules(config, registry, "jobyard.yaml")
    assert str(err.value) == (
        "jobyard.yaml: schedules[0].queue: task 'reports.nightly' goes to queue 'reports' by "
        "default, which is not configured; set queue to one of: default, emails"
    )
    fixed = parse_config(
        QUEUES
        + "schedules:\n  - name: n\n    task: reports.nightly\n    interval_s: 60\n"
        + "    queue: emails\n"
    )
    validate_schedules(fixed, registry, "jobyard.yaml")
