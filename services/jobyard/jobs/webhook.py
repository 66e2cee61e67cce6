"""`webhook.deliver`: POST a signed JSON body to a URL, retrying what can succeed later.

What a receiver gets::

    POST <url>
    Content-Type: application/json
    User-Agent: jobyard/<version>
    X-Jobyard-Delivery: <job id>          (the same on every retry: dedupe on it)
    X-Jobyard-Timestamp: <unix seconds>   (of this attempt)
    X-Jobyard-Signature: sha256=<hex>     (HMAC-SHA256 of "<timestamp>." + raw body)
    X-Jobyard-Event: <event>              (when the job names one)

A receiver checks the signature with :func:`verify_signature` (or the same few lines in
its own language) over the raw body bytes, before parsing them.

Signing: with `sign` true (the default) and no (or an empty) `JOBYARD_WEBHOOK_SECRET`, the
job fails permanently rather than send an unsigned request; `sign: false` sends without
the signature header on purpose.

Outcomes: 2xx succeeds; connection errors, timeouts, 5xx and 429 are retried (429 and 503
honour `Retry-After`); any other status (3xx: redirects are not followed; 4xx) fails at
once without retry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, JsonValue, field_validator

from jobyard import __version__
from jobyard.core.context import JobContext
from jobyard.core.registry import PermanentError, RetryableError, RetryPolicy, job
from jobyard.jobs._http import header_problem, parse_retry_after

if TYPE_CHECKING:
    # Imported where a delivery runs: a worker that never delivers webhooks does not pay
    # httpx's import (about 9 MiB and 40 ms per process).
    import httpx

SIGNATURE_PREFIX = "sha256="
MAX_EXTRA_HEADERS = 32
SNIPPET_CHARS = 200
"""How much of an error response's body goes into the job's error message."""

WEBHOOK_RETRY = RetryPolicy(
    max_attempts=8, backoff_s=4.0, backoff_max_s=600.0, retry_on=(RetryableError,)
)
"""Eight attempts over roughly eight minutes (4, 8, ... 256 s, with jitter)."""


class WebhookArgs(BaseModel):
    """Arguments of `webhook.deliver`."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    url: HttpUrl
    """Where to POST: an absolute http:// or https:// URL. Redirects are not followed."""
    body: dict[str, JsonValue]
    """The JSON object sent as the request body (compact, keys in the order given)."""
    headers: Annotated[dict[str, str], Field(max_length=MAX_EXTRA_HEADERS)] = Field(
        default_factory=dict
    )
    """Extra request headers. Hop-by-hop headers, Host, Content-Length, Expect,
    Content-Type, User-Agent and X-Jobyard-* are set by jobyard and refused here."""
    event: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")] | None = None
    """An event name sent as `X-Jobyard-Event`, e.g. `invoice.paid`."""
    sign: bool = True
    """Sign with `JOBYARD_WEBHOOK_SECRET`. When true and no (or an empty) secret is configured
    the job fails permanently instead of sending unsigned; false sends without a signature."""

    @field_validator("headers")
    @classmethod
    def _headers_allowed(cls, value: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        for name, header_value in value.items():
            problem = header_problem(name, header_value)
            if problem:
                raise ValueError(problem)
            if name.lower() in seen:
                raise ValueError(f"header {name!r} is given twice (names are case-insensitive)")
            seen.add(name.lower())
        return value


def signature(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The `X-Jobyard-Signature` value: `sha256=` + hex HMAC-SHA256 of `<timestamp>.<body>`."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str | int,
    body: bytes,
    header: str,
    tolerance_s: float = 300,
    *,
    now_s: float | None = None,
) -> bool:
    """Whether a delivery is authentic and fresh.

    `timestamp` and `header` are the `X-Jobyard-Timestamp` and `X-Jobyard-Signature`
    values, `body` the raw request body. False when the timestamp is not an integer or is
    more than `tolerance_s` away from now (a replay), or no listed signature matches
    (`header` may list several, comma-separated, while a secret is rotated).
    """
    ts_text = str(timestamp).strip()
    if not ts_text.isdigit():
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - int(ts_text)) > tolerance_s:
        return False
    expected = signature(secret, ts_text, body)
    return any(hmac.compare_digest(expected, part.strip()) for part in header.split(","))


def encode_body(body: dict[str, JsonValue]) -> bytes:
    """The exact bytes sent (and signed)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_clients: dict[tuple[int, float], httpx.Client] = {}
_clients_lock = threading.Lock()


def _client(timeout_s: float) -> httpx.Client:
    """One pooled client per process (a forked child makes its own) and timeout."""
    import httpx

    key = (os.getpid(), timeout_s)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = httpx.Client(
                timeout=httpx.Timeout(timeout_s), follow_redirects=False
            )
    return client


def _snippet(response: httpx.Response) -> str:
    """The start of an error response's body, on one line (empty if it cannot be read)."""
    import httpx

    raw = b""
    try:
        for chunk in response.iter_bytes():
            raw += chunk
            if len(raw) >= SNIPPET_CHARS * 4:
                break
    except httpx.HTTPError:
        pass
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    return text[:SNIPPET_CHARS] + ("..." if len(text) > SNIPPET_CHARS else "")


@job("webhook.deliver", args=WebhookArgs, queue="default", retry=WEBHOOK_RETRY, idempotent=True)
def deliver(ctx: JobContext, args: WebhookArgs) -> dict[str, Any]:
    """POST a signed JSON body to a URL; retries connection errors, timeouts, 5xx and 429.

    Result: `{"status": <HTTP status>, "delivery_id": <job id>, "duration_ms": <float>}`.
    """
    configured = ctx.settings.webhook_secret
    secret = configured.get_secret_value() if configured else ""
    if args.sign and not secret:
        raise PermanentError(
            "JOBYARD_WEBHOOK_SECRET is not set (or empty), so the webhook cannot be signed; "
            "set it, or pass sign=false to send unsigned"
        )
    url = str(args.url)
    body = encode_body(args.body)
    timestamp = str(int(time.time()))
    headers = {
        **args.headers,
        "Content-Type": "application/json",
        "User-Agent": f"jobyard/{__version__}",
        "X-Jobyard-Delivery": ctx.job_id,
        "X-Jobyard-Timestamp": timestamp,
    }
    if args.event is not None:
        headers["X-Jobyard-Event"] = args.event
    if args.sign:
        headers["X-Jobyard-Signature"] = signature(secret, timestamp, body)

    import httpx

    timeout_s = ctx.settings.webhook_timeout_s
    started = time.monotonic()
    try:
        with _client(timeout_s).stream("POST", url, content=body, headers=headers) as response:
            duration_ms = round((time.monotonic() - started) * 1000, 1)
            status = response.status_code
            if 200 <= status < 300:
                return {"status": status, "delivery_id": ctx.job_id, "duration_ms": duration_ms}
            answer = f"POST {url} answered {status} {response.reason_phrase}".rstrip()
            snippet = _snippet(response)
            detail = f"{answer}: {snippet}" if snippet else answer
            if status == 429 or status >= 500:
                delay_s = None
                if status in (429, 503):
                    delay_s = parse_retry_after(response.headers.get("retry-after"))
                raise RetryableError(detail, delay_s=delay_s)
            if 300 <= status < 400:
                location = response.headers.get("location", "none")
                detail += f" (redirects are not followed; Location: {location})"
            raise PermanentError(detail)
    except httpx.TimeoutException as exc:
        raise RetryableError(
            f"POST {url} timed out after {timeout_s:g} s ({type(exc).__name__})"
        ) from exc
    except httpx.TransportError as exc:
        raise RetryableError(f"POST {url} failed: {exc or type(exc).__name__}") from exc
