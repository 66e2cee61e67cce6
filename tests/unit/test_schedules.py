"""next_run_at / latest_due_at / decide: cron edges, intervals, never-run, missed runs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery.schedules import crontab

from jobyard.core.config import ScheduleConfig
from jobyard.core.schedules import (
    MISSED_GRACE_S,
    Decision,
    Verdict,
    decide,
    latest_due_at,
    next_run_at,
)


def ts(*parts: int) -> float:
    """Unix time of a UTC date and time."""
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def every(interval_s: float, missed: str = "run-once") -> ScheduleConfig:
    return ScheduleConfig(name="s", task="jobyard.noop", interval_s=interval_s, missed=missed)


def cron(expr: str, missed: str = "run-once") -> ScheduleConfig:
    return ScheduleConfig(name="s", task="jobyard.noop", cron=expr, missed=missed)


def simulate(
    schedule: ScheduleConfig,
    last: float | None,
    start: float,
    end: float,
    tick_s: float,
    grace_s: float = MISSED_GRACE_S,
) -> list[tuple[Decision, float]]:
    """Run beat's tick loop on decide() alone; return every non-WAIT verdict."""
    out: list[tuple[Decision, float]] = []
    now = start
    while now <= end:
        v = decide(schedule, last, now, grace_s=grace_s)
        if v.decision is not Decision.WAIT:
            out.append((v.decision, v.due_at))
            last = v.due_at
        now += tick_s
    return out


# --- interval schedules -----------------------------------------------------------------


def test_interval_never_run_is_due_at_once() -> None:
    assert next_run_at(every(30), None, 1000.0) == 1000.0
    assert decide(every(30), None, 1000.0) == Verdict(Decision.SEND, 1000.0, 1000.0)


def test_interval_waits_until_exactly_one_interval_after_the_last_due_time() -> None:
    assert decide(every(10), 1000.0, 1009.999) == Verdict(Decision.WAIT, 1010.0)
    v = decide(every(10), 1000.0, 1010.0)
    assert v == Verdict(Decision.SEND, 1010.0, 1010.0)
    assert not v.merged


def test_interval_runs_stay_on_their_grid_when_ticks_are_late() -> None:
    # Ticks every 0.7 s: each run is sent at the first tick after it falls due, but the
    # recorded due times stay exactly 2 s apart.
    sent = simulate(every(2), 100.0, 100.0, 111.0, tick_s=0.7)
    assert sent == [(Decision.SEND, t) for t in (102.0, 104.0, 106.0, 108.0, 110.0)]


def test_interval_catch_up_is_one_run_then_the_next_regular_one() -> None:
    # Beat was down from 1000 to 1105: nine runs (1010..1090) missed, 1100 due.
    v = decide(every(10), 1000.0, 1105.0)
    assert v == Verdict(Decision.SEND, 1100.0, 1010.0)
    assert v.merged
    # The next ticks wait for 1110: no burst of the missed runs.
    sent = simulate(every(10), 1000.0, 1105.0, 1131.0, tick_s=0.5)
    assert sent == [(Decision.SEND, t) for t in (1100.0, 1110.0, 1120.0, 1130.0)]


def test_interval_skip_drops_a_missed_run_and_resumes_on_the_grid() -> None:
    hourly = every(3600, missed="skip")
    # Last run at 0; the 3600 run was missed by 120 s (> 60 s grace).
    v = decide(hourly, 0.0, 3720.0)
    assert v == Verdict(Decision.SKIP, 3600.0, 3600.0)
    assert decide(hourly, 3600.0, 3720.0) == Verdict(Decision.WAIT, 7200.0)
    sent = simulate(hourly, 0.0, 3720.0, 7201.0, tick_s=1.0)
    assert sent == [(Decision.SKIP, 3600.0), (Decision.SEND, 7200.0)]


def test_interval_skip_still_sends_the_run_that_is_on_time() -> None:
    # Down for 1000 s with a 10 s interval: the run due 5 s ago is on time; the older
    # ones are dropped (merged into it), not skipped one by one.
    v = decide(every(10, missed="skip"), 0.0, 1005.0)
    assert v == Verdict(Decision.SEND, 1000.0, 10.0)


@pytest.mark.parametrize(
    ("now", "expected"),
    [(3660.0, Decision.SEND), (3660.001, Decision.SKIP)],
)
def test_skip_grace_boundary(now: float, expected: Decision) -> None:
    assert decide(every(3600, missed="skip"), 0.0, now, grace_s=60).decision is expected


def test_run_once_sends_however_late_the_run_is() -> None:
    assert decide(every(3600), 0.0, 3600.0 + 86_400 * 3 + 5) == Verdict(
        Decision.SEND, 3600.0 * 73, 3600.0
    )


def test_custom_grace() -> None:
    assert decide(every(10, missed="skip"), 0.0, 13.0, grace_s=2).decision is Decision.SKIP
    assert decide(every(10, missed="skip"), 0.0, 12.0, grace_s=2).decision is Decision.SEND


def test_latest_due_interval() -> None:
    assert latest_due_at(every(10), None, 55.0) == 55.0
    assert latest_due_at(every(10), 0.0, 9.99) is None
    assert latest_due_at(every(10), 0.0, 10.0) == 10.0
    assert latest_due_at(every(10), 0.0, 99.99) == 90.0
    assert latest_due_at(every(3), 0.1, 0.1 + 3 * 7) == pytest.approx(0.1 + 21)


# --- cron schedules ---------------------------------------------------------------------


def test_cron_never_run_starts_counting_now_and_fires_at_the_next_fire_time() -> None:
    now = ts(2024, 5, 1, 10, 7, 30)
    assert decide(cron("*/15 * * * *"), None, now) == Verdict(Decision.START, now)
    assert next_run_at(cron("*/15 * * * *"), None, now) == ts(2024, 5, 1, 10, 15)
    assert latest_due_at(cron("*/15 * * * *"), None, now) is None
    # After START beat stores `now`; the first run is the next fire time, not earlier.
    sent = simulate(cron("*/15 * * * *"), now, now, ts(2024, 5, 1, 10, 31), tick_s=1.0)
    assert sent == [
        (Decision.SEND, ts(2024, 5, 1, 10, 15)),
        (Decision.SEND, ts(2024, 5, 1, 10, 30)),
    ]


@pytest.mark.parametrize(
    ("expr", "last", "expected"),
    [
        # on a fire time: the next one, never the same
        ("*/15 * * * *", ts(2024, 5, 1, 10, 0), ts(2024, 5, 1, 10, 15)),
        ("* * * * *", ts(2024, 5, 1, 10, 0), ts(2024, 5, 1, 10, 1)),
        # seconds past a fire time
        ("* * * * *", ts(2024, 5, 1, 10, 0, 59), ts(2024, 5, 1, 10, 1)),
        # end of hour, day, year
        ("* * * * *", ts(2024, 12, 31, 23, 59), ts(2025, 1, 1, 0, 0)),
        ("30 * * * *", ts(2024, 5, 1, 23, 30), ts(2024, 5, 2, 0, 30)),
        ("59 23 31 12 *", ts(2024, 12, 31, 23, 59), ts(2025, 12, 31, 23, 59)),
        # short months and leap days
        ("0 0 31 * *", ts(2024, 1, 31, 0, 0), ts(2024, 3, 31, 0, 0)),
        ("0 0 29 2 *", ts(2023, 3, 1, 0, 0), ts(2024, 2, 29, 0, 0)),
        ("0 0 29 2 *", ts(2024, 2, 29, 0, 0), ts(2028, 2, 29, 0, 0)),
        # day of week (0 = Sunday), weekdays only
        ("0 0 * * 0", ts(2024, 6, 1, 23, 59, 59), ts(2024, 6, 2, 0, 0)),
        ("0 12 * * 1-5", ts(2024, 6, 7, 12, 0), ts(2024, 6, 10, 12, 0)),
        ("0 10 * * 1", ts(2024, 1, 1, 10, 0), ts(2024, 1, 8, 10, 0)),
        ("0 10 * * 1", ts(2024, 1, 1, 9, 59), ts(2024, 1, 1, 10, 0)),
        # day of month AND day of week (Celery semantics): the next Friday the 13th
        ("0 0 13 * 5", ts(2024, 1, 1, 0, 0), ts(2024, 9, 13, 0, 0)),
        # lists and ranges of hours
        ("30 9-11 * * *", ts(2024, 5, 1, 11, 30), ts(2024, 5, 2, 9, 30)),
        ("5,35 */6 * * *", ts(2024, 5, 1, 6, 35), ts(2024, 5, 1, 12, 5)),
    ],
)
def test_cron_next_run(expr: str, last: float, expected: float) -> None:
    got = next_run_at(cron(expr), last, last + 1)
    assert got == expected, (_utc(got), _utc(expected))


def test_cron_catch_up_after_downtime_is_one_run_at_the_latest_fire_time() -> None:
    five = cron("*/5 * * * *")
    last, now = ts(2024, 5, 1, 10, 0), ts(2024, 5, 1, 12, 3, 20)
    v = decide(five, last, now)
    assert v == Verdict(Decision.SEND, ts(2024, 5, 1, 12, 0), ts(2024, 5, 1, 10, 5))
    assert decide(five, v.due_at, now) == Verdict(Decision.WAIT, ts(2024, 5, 1, 12, 5))


def test_cron_skip_after_downtime_sends_nothing_and_resumes_at_the_next_fire_time() -> None:
    hourly = cron("0 * * * *", missed="skip")
    last, now = ts(2024, 5, 1, 9, 0), ts(2024, 5, 1, 10, 5)
    assert decide(hourly, last, now) == Verdict(
        Decision.SKIP, ts(2024, 5, 1, 10, 0), ts(2024, 5, 1, 10, 0)
    )
    sent = simulate(hourly, last, now, ts(2024, 5, 1, 11, 0, 1), tick_s=1.0)
    assert sent == [(Decision.SKIP, ts(2024, 5, 1, 10, 0)), (Decision.SEND, ts(2024, 5, 1, 11, 0))]


def test_cron_sent_on_time_at_the_first_tick_after_the_fire_time() -> None:
    v = decide(
        cron("* * * * *", missed="skip"), ts(2024, 5, 1, 10, 0), ts(2024, 5, 1, 10, 1, 0, 400_000)
    )
    assert v == Verdict(Decision.SEND, ts(2024, 5, 1, 10, 1), ts(2024, 5, 1, 10, 1))
    assert not v.merged


def test_cron_latest_due_after_a_year_down() -> None:
    every_minute = cron("* * * * *")
    last, now = ts(2023, 5, 1, 10, 0), ts(2024, 5, 1, 10, 0, 42)
    assert latest_due_at(every_minute, last, now) == ts(2024, 5, 1, 10, 0)
    assert latest_due_at(cron("0 0 29 2 *"), ts(2019, 1, 1), ts(2024, 12, 1)) == ts(2024, 2, 29)
    assert latest_due_at(every_minute, last, last + 59.9) is None


# --- cron against a brute-force reference ----------------------------------------------

FIELDS = [
    ["*", "0", "*/15", "5,35", "59", "0-10", "30"],
    ["*", "0", "23", "9-17", "*/6", "12"],
    ["*", "1", "31", "15", "29", "1,15", "28-31", "30"],
    ["*", "2", "1-3", "12", "*/2", "2,4"],
    ["*", "0", "1", "6", "1-5", "0,6", "3"],
]


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _reference_fires(expr: str, after: float, count: int) -> list[float]:
    """The next `count` fire times after `after`, found by walking days and minutes."""
    c: Any = crontab.from_string(expr)
    t = _utc(after).replace(second=0, microsecond=0) + timedelta(minutes=1)
    out: list[float] = []
    for _ in range(366 * 9):
        date_matches = (
            t.month in c.month_of_year
            and t.day in c.day_of_month
            and (t.isoweekday() % 7) in c.day_of_week
        )
        if date_matches:
            m = t
            while m.date() == t.date():
                if m.hour in c.hour and m.minute in c.minute:
                    out.append(m.timestamp())
                    if len(out) == count:
                        return out
                m += timedelta(minutes=1)
        t = (t + timedelta(days=1)).replace(hour=0, minute=0)
    return out


def _random_cases(n: int, seed: int) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    cases: list[tuple[str, float]] = []
    lo, hi = ts(2023, 1, 1), ts(2026, 12, 31)
    while len(cases) < n:
        expr = " ".join(rng.choice(f) for f in FIELDS)
        try:
            cron(expr)
        except ValueError:
            continue  # e.g. day 31 in February only: refused at load
        start = rng.uniform(lo, hi)
        if rng.random() < 0.3:
            start = float(int(start) // 60 * 60)
        if len(_reference_fires(expr, start, 3)) < 3:
            continue  # e.g. Feb 29 on a Wednesday: too rare for the reference's horizon
        cases.append((expr, start))
    return cases


@pytest.mark.parametrize(("expr", "start"), _random_cases(150, seed=7))
def test_cron_agrees_with_brute_force(expr: str, start: float) -> None:
    fires = _reference_fires(expr, start, 3)
    sched = cron(expr)
    assert next_run_at(sched, start, start) == fires[0], expr
    assert next_run_at(sched, fires[0], start) == fires[1], expr
    # Between the 2nd and 3rd fire times, the latest due one is the 2nd.
    now = fires[1] + (fires[2] - fires[1]) / 2
    assert latest_due_at(sched, start, now) == fires[1], expr
    assert latest_due_at(sched, start, fires[1]) == fires[1], expr
    assert latest_due_at(sched, start, fires[0] - 0.5) is None, expr
