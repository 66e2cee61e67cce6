"""The prefork pool keeps the event loop's timer heap to the entries still pending."""

from __future__ import annotations

import time

from kombu.asynchronous.timer import Timer

from jobyard.worker.pool import compact_timer


def test_cancelled_entries_are_dropped_and_the_rest_still_fire_in_order() -> None:
    timer = Timer()
    fired: list[int] = []
    entries = [timer.call_after(0.0001 * (i + 1), fired.append, (i,)) for i in range(1000)]
    for i, entry in enumerate(entries):
        if i % 10:  # a job ended: Celery cancels its time-limit timers
            timer.cancel(entry)
    assert len(timer) == 1000
    assert compact_timer(timer) == 900
    assert len(timer) == 100
    assert compact_timer(timer) == 0
    timer.call_after(0.3, fired.append, (-1,))  # scheduled after the compaction
    schedule = iter(timer)
    deadline = time.monotonic() + 10
    while len(fired) < 101 and time.monotonic() < deadline:
        wait_s, entry = next(schedule)
        if entry is not None:
            entry()
        elif wait_s:
            time.sleep(wait_s)
    assert fired == [*range(0, 1000, 10), -1]
