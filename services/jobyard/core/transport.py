"""kombu's Redis transport, refusing malformed queue entries instead of dying on them.

Anything can be LPUSHed into a queue list. kombu parses every entry it pops as a JSON
envelope; an entry that is not JSON, or JSON that is not an envelope, raises out of the
worker's event loop and Celery stops the whole worker ("Unrecoverable error", seen here):
one stray entry would stop a worker and cut short the jobs it runs. jobyard's transport
logs such an entry and drops it (it cannot be a job: jobyard writes only well-formed
envelopes); in a worker, `jobyard.worker.delivery` refuses it before it gets here and
files it as a dead letter. A well-formed envelope the worker must not run (pickle
content, an unknown task, missing headers) is Celery's to refuse, see
`jobyard.worker.consumer`.

Selected with Celery's `broker_transport` for `redis://` and `rediss://` URLs. kombu then
takes TLS settings only from `broker_use_ssl`, which `jobyard.core.tls` derives from the
URL (never kombu's silent `CERT_NONE` default).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

log = logging.getLogger("jobyard.transport")

TRANSPORT_ALIAS = "jobyard-redis"
"""Celery's `broker_transport` value (kombu's documented way to name a custom transport;
it is also the scheme of the broker URL in Celery's logs)."""
TRANSPORT_ALIASES.setdefault(TRANSPORT_ALIAS, "jobyard.core.transport:Transport")

_SHOWN_CHARS = 200


def envelope_problem(payload: Any) -> str | None:
    """Why `payload` (a decoded queue entry) is not a kombu envelope; None if it is one."""
    if not isinstance(payload, dict):
        return f"not a JSON object but {type(payload).__name__}"
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return "no 'properties' object"
    if not isinstance(properties.get("delivery_tag"), str):
        return "no 'properties.delivery_tag' string"
    if not isinstance(properties.get("delivery_info", {}), dict):
        return "'properties.delivery_info' is not an object"
    headers = payload.get("headers")
    if headers is not None and not isinstance(headers, dict):
        return "'headers' is not an object"
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        return "'body' is not a string"
    if body and properties.get("body_encoding") == "base64":
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return "'body' is not valid base64"
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _not_json(exc: json.JSONDecodeError | UnicodeDecodeError) -> kombu_redis.Empty:
    entry = exc.doc if isinstance(exc, json.JSONDecodeError) else exc.object
    log.error(
        "dropped a queue entry that is not JSON (not a job message): %s",
        _shown(entry),
        extra={"reason": "not JSON"},
    )
    return kombu_redis.Empty()


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    def _brpop_read(self, **options: Any) -> Any:
        try:
            return super()._brpop_read(**options)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _not_json(exc) from exc

    def _decode_entry(self, entry: bytes | str) -> Any:
        """A popped queue entry as JSON; an entry that is not JSON is logged and dropped
        (raises kombu's `Empty`, as a poll that found nothing)."""
        try:
            return json.loads(entry.decode() if isinstance(entry, bytes) else entry)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _not_json(exc) from exc


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with :class:`Channel`, dropping malformed entries."""

    Channel = Channel

    def _deliver(self, message: Any, queue: str) -> Any:
        problem = envelope_problem(message)
        if problem is not None:
            log.error(
                "dropped a malformed entry of queue %s (%s; not a job message): %s",
                queue,
                problem,
                _shown(message),
                extra={"queue": queue, "reason": problem},
            )
            return None
        return super()._deliver(message, queue)
