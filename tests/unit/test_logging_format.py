"""Log formats and filters: JSON lines, console lines, Celery duplicates, trace ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from celery.app import trace as celery_trace
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from jobyard.core.settings import Settings
from jobyard.observability import tracing
from jobyard.observability.logging import (
    CeleryDuplicateFilter,
    ConsoleFormatter,
    JsonFormatter,
    TraceIdFilter,
    configure_logging,
    rfc3339,
)

# 2025-01-02T03:04:05.678Z
TS = 1735787045.678


def record(
    msg: str = "job succeeded", *args: object, name: str = "jobyard.jobs", **extra: object
) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args or None, None)
    rec.created = TS
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(TS) == "2025-01-02T03:04:05.678Z"


@pytest.mark.parametrize(
    "ts",
    [0.0, 1.0, TS, 1735787045.9994, 1735787045.9999996, 1735787045.0005, 690808566.8709998],
)
def test_rfc3339_agrees_with_datetime_across_second_boundaries(ts: float) -> None:
    # The per-second prefix is cached: a stale prefix or a millisecond rounding that
    # differs from datetime's would show here (each case after a different second).
    rfc3339(ts - 1.5)
    expected = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert rfc3339(ts) == expected


def test_configure_logging_keeps_celerys_per_task_info_lines_from_being_built(
    restore_root: None,
) -> None:
    configure_logging(Settings(), "worker", stream=io.StringIO())
    # Celery decides once per tracer whether to build its "succeeded" line (with a repr of
    # the result): at WARNING it never does.
    assert not logging.getLogger("celery.app.trace").isEnabledFor(logging.INFO)
    assert not logging.getLogger("celery.worker.strategy").isEnabledFor(logging.INFO)
    assert logging.getLogger("celery.app.trace").isEnabledFor(logging.ERROR)


def test_json_line_carries_the_job_fields() -> None:
    line = JsonFormatter("worker").format(
        record(
            job_id="j1",
            task="obs.ok",
            queue="default",
            attempt=2,
            duration_s=0.25,
            trace_id="ab" * 16,
            error=None,
        )
    )
    assert "\n" not in line
    assert json.loads(line) == {
        "ts": "2025-01-02T03:04:05.678Z",
        "level": "info",
        "logger": "jobyard.jobs",
        "event": "job succeeded",
        "component": "worker",
        "job_id": "j1",
        "task": "obs.ok",
        "queue": "default",
        "attempt": 2,
        "duration_s": 0.25,
        "trace_id": "ab" * 16,
    }


def test_json_line_formats_arguments_and_exceptions_on_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        rec = record("failed %d times", 3, exc_info=None)
        rec.exc_info = sys.exc_info()
    line = JsonFormatter("api").format(rec)
    assert line.count("\n") == 0
    data = json.loads(line)
    assert data["event"] == "failed 3 times"
    assert data["exc_type"] == "ValueError"
    assert data["exc"].endswith("ValueError: bad\nvalue")


def test_console_line_is_readable() -> None:
    line = ConsoleFormatter("worker").format(
        record(
            job_id="j1", task="obs.ok", queue="default", attempt=1, duration_s=0.0123, zone="a b"
        )
    )
    assert line == (
        "03:04:05.678 INFO    jobyard.jobs             job succeeded  "
        'job_id=j1 task=obs.ok queue=default attempt=1 duration_s=0.012 zone="a b"'
    )


@pytest.mark.parametrize(
    ("name", "msg", "kept"),
    [
        ("celery.app.trace", celery_trace.LOG_SUCCESS, False),
        ("celery.app.trace", celery_trace.LOG_FAILURE, False),
        ("celery.app.trace", celery_trace.LOG_RETRY, False),
        ("celery.worker.strategy", celery_trace.LOG_RECEIVED, False),
        ("celery.worker.request", "Hard time limit (%ss) exceeded for %s[%s]", False),
        ("celery.app.trace", "Process cleanup failed: %r", True),
        ("celery.apps.worker", "%s ready.", True),
        ("jobyard.jobs", celery_trace.LOG_SUCCESS, True),
    ],
)
def test_celery_duplicates_are_dropped(name: str, msg: str, kept: bool) -> None:
    assert CeleryDuplicateFilter().filter(record(msg, name=name)) is kept


def test_trace_id_comes_from_the_current_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    outside = record()
    TraceIdFilter().filter(outside)
    assert not hasattr(outside, "trace_id")
    with tracer.start_as_current_span("run") as span:
        inside = record()
        TraceIdFilter().filter(inside)
        given = record(trace_id="given")
        TraceIdFilter().filter(given)
    assert inside.trace_id == trace.format_trace_id(span.get_span_context().trace_id)
    assert given.trace_id == "given"


def test_configure_logging_installs_one_handler_and_is_idempotent(restore_root: None) -> None:
    stream = io.StringIO()
    settings = Settings(log_level="WARNING")
    configure_logging(settings, "beat", stream=stream)
    configure_logging(settings, "beat", stream=stream)
    root = logging.getLogger()
    assert len(root.handlers) == 1
    assert root.level == logging.WARNING
    logging.getLogger("jobyard.test").info("hidden")
    logging.getLogger("jobyard.test").warning("shown %s", "here", extra={"queue": "q"})
    (line,) = stream.getvalue().splitlines()
    data = json.loads(line)
    assert (data["event"], data["component"], data["queue"]) == ("shown here", "beat", "q")


def test_console_format_setting(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="console"), "worker", stream=stream)
    logging.getLogger("jobyard.test").info("hello")
    assert stream.getvalue().endswith(" INFO    jobyard.test             hello\n")


def test_traceparent_parsing() -> None:
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert tracing.trace_id_from_traceparent(f"00-{tid}-00f067aa0ba902b7-01") == tid
    assert tracing.trace_id_from_traceparent(f"00-{'0' * 32}-00f067aa0ba902b7-01") is None
    assert tracing.trace_id_from_traceparent("garbage") is None
    assert tracing.trace_id_from_traceparent(None) is None


def test_billiard_pool_errors_are_json_lines_too(restore_root: None) -> None:
    from billiard.util import get_logger

    pool_logger = get_logger()
    saved = (list(pool_logger.handlers), pool_logger.level)
    stream = io.StringIO()
    try:
        configure_logging(Settings(), "worker", stream=stream)
        pool_logger.warning("chatter")
        pool_logger.error("Pool process %r error: %r", "w", "boom")
    finally:
        pool_logger.handlers[:] = saved[0]
        pool_logger.setLevel(saved[1])
    (line,) = stream.getvalue().splitlines()
    data = json.loads(line)
    assert (data["logger"], data["event"]) == ("multiprocessing", "Pool process 'w' error: 'boom'")
