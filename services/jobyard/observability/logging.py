"""Log configuration shared by every component: JSON lines by default, console for people.

Every entry point calls :func:`configure_logging` once, first thing. JSON mode writes one
object per line to stderr::

    {"ts": "2025-01-02T03:04:05.678Z", "level": "info", "logger": "jobyard.jobs",
     "event": "job succeeded", "component": "worker", "job_id": "...", "task": "...",
     "queue": "default", "attempt": 1, "duration_s": 0.012, "trace_id": "..."}

Fields passed with ``extra=`` become keys of the object; `trace_id` is added from the
current OpenTelemetry span when one is recording. `JOBYARD_LOG_FORMAT=console` renders the
same records as aligned text (what `jobyard dev` uses).

Celery's own per-task lines (received, succeeded, failed, retry, ignored, time limits)
repeat the job lifecycle events of `jobyard.worker.signals.logs` and are dropped, in both
formats; every other Celery line is kept, and the shutdown notices Celery prints are
logged instead.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from jobyard.core.redaction import redact_text, redact_value
from jobyard.core.settings import Settings

LogFormat = Literal["json", "console"]

JOB_FIELDS = (
    "job_id",
    "task",
    "queue",
    "attempt",
    "duration_s",
    "trace_id",
    "error",
    "retry_in_s",
)
"""Fields of job lifecycle events, in the order the console format shows them."""

_RESERVED = frozenset(
    set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__)
    | {"message", "asctime", "taskName", "component"}
)

_HANDLER_NAME = "jobyard"

_CELERY_DUPLICATES: dict[str, frozenset[str]] = {}


def _celery_duplicates() -> dict[str, frozenset[str]]:
    """Logger name -> message templates of Celery's per-task lines (read from Celery)."""
    if not _CELERY_DUPLICATES:
        from celery.app import trace

        _CELERY_DUPLICATES.update(
            {
                "celery.app.trace": frozenset(
                    {
                        trace.LOG_SUCCESS,
                        trace.LOG_FAILURE,
                        trace.LOG_RETRY,
                        trace.LOG_IGNORED,
                        trace.LOG_REJECTED,
                    }
                ),
                "celery.worker.strategy": frozenset({trace.LOG_RECEIVED}),
                "celery.worker.request": frozenset(
                    {
                        "Hard time limit (%ss) exceeded for %s[%s]",
                        "Soft time limit (%ss) exceeded for %s[%s]",
                    }
                ),
            }
        )
    return _CELERY_DUPLICATES


class CeleryDuplicateFilter(logging.Filter):
    """Drops Celery's per-task lines that jobyard's job events already say."""

    def filter(self, record: logging.LogRecord) -> bool:
        templates = _celery_duplicates().get(record.name)
        return templates is None or record.msg not in templates


class TraceIdFilter(logging.Filter):
    """Adds `trace_id` from the current OpenTelemetry span, unless the record has one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", None) is None:
            from jobyard.observability.tracing import current_trace_id

            trace_id = current_trace_id()
            if trace_id is not None:
                record.trace_id = trace_id
        return True


_second_prefix: list[Any] = [None, ""]


def rfc3339(ts: float) -> str:
    """`2025-01-02T03:04:05.678Z` (UTC, milliseconds)."""
    second = int(ts)
    micros = round((ts - second) * 1_000_000)  # as datetime rounds
    if micros >= 1_000_000:
        second, micros = second + 1, 0
    if _second_prefix[0] != second:
        # Formatting the date and time once per second, not once per record.
        _second_prefix[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second_prefix[1]}.{micros // 1000:03d}Z"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller attached with ``extra=`` (and the trace id filter), redacted."""
    return {
        k: redact_value(v, k)
        for k, v in record.__dict__.items()
        if k not in _RESERVED and v is not None
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": redact_text(record.getMessage()),
            "component": self.component,
        }
        out.update(extra_fields(record))
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["exc"] = redact_text("".join(traceback.format_exception(*record.exc_info)).rstrip())
        elif record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False, separators=(",", ":"))


class ConsoleFormatter(logging.Formatter):
    """`03:04:05.678 INFO  jobyard.jobs  job succeeded  job_id=... duration_s=0.012`."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        fields = extra_fields(record)
        ordered = [k for k in JOB_FIELDS if k in fields] + sorted(
            k for k in fields if k not in JOB_FIELDS
        )
        pairs = " ".join(f"{k}={_console_value(fields[k])}" for k in ordered)
        line = f"{ts} {record.levelname:<7} {record.name:<24} {redact_text(record.getMessage())}"
        if pairs:
            line += f"  {pairs}"
        if record.exc_info and record.exc_info[0] is not None:
            line += "\n" + redact_text(self.formatException(record.exc_info))
        return line


def _console_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def configure_logging(
    settings: Settings,
    component: str,
    *,
    stream: TextIO | None = None,
    log_format: LogFormat | None = None,
) -> logging.Handler:
    """Send every log record of this process to one stderr handler; returns it.

    Idempotent: a second call replaces the handler. Celery is told not to configure
    logging itself (its `setup_logging` signal gets a receiver), and uvicorn's loggers
    propagate to the root.
    """
    fmt: LogFormat = log_format or settings.log_format
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter(component) if fmt == "json" else ConsoleFormatter(component))
    handler.addFilter(CeleryDuplicateFilter())
    handler.addFilter(TraceIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Libraries that log every request/connection at INFO; and Celery's per-task INFO
    # lines, which jobyard's job events replace: at WARNING Celery does not even build
    # them (it decides once, when it builds a task's tracer).
    for name in ("httpx", "httpcore", "urllib3", "celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # No formatter here shows the caller's file and line, thread or process: skip
    # collecting them for every record (the switches the logging docs name for speed).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.captureWarnings(True)
    _keep_celery_off_logging()
    _billiard_errors_to(handler)
    return handler


def _billiard_errors_to(handler: logging.Handler) -> None:
    """billiard's pool logs its process errors to a logger that does not propagate."""
    from billiard.util import get_logger

    pool_logger = get_logger()
    pool_logger.handlers[:] = [handler]
    pool_logger.setLevel(logging.ERROR)


def _celery_say(msg: str, f: object = None) -> None:
    """Stands in for Celery's `safe_say` (shutdown notices it prints from signal handlers)."""
    logging.getLogger("celery.apps.worker").warning(str(msg).strip())


def _keep_celery_off_logging() -> None:
    from celery.apps import worker
    from celery.signals import setup_logging

    setup_logging.connect(_celery_setup_logging, weak=False, dispatch_uid="jobyard.logging")
    # The worker's shutdown notices are printed, not logged: route them to the log so
    # every line stays one record.
    worker.safe_say = _celery_say


def _celery_setup_logging(**_: Any) -> None:
    """Receiver of Celery's `setup_logging`: its presence stops Celery configuring logs."""
