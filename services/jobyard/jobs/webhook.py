"""`webhook.deliver`: POST a signed JSON body to a URL, retrying what can succeed later.

What a receiver gets::

    POST <url>
    Content-Type: application/json
    User-Agent: jobyard/<version>
    X-Jobyard-Delivery: <job id>          (the same on every retry: dedupe on it)
    X-Jobyard-Timestamp: <unix seconds>   (of this attempt)
    X-Jobyard-Signature: v1=<hex>[, v1=<hex>]
    X-Jobyard-Event: <event>              (when the job names one)

The signature is the hex HMAC-SHA256, with the endpoint's secret, of (see
:func:`signed_payload`)::

    "v1" LF <timestamp> LF <delivery id> LF <url> LF <raw body>

so a signed request is valid only for its own receiver URL, delivery id and time: a body
signed for one URL (say, the enqueuer's own) does not verify at another. While a secret
is rotated, one `v1=` per valid secret is sent (current first). docs/webhooks.md has the
receiver's recipe; :func:`verify_signature` is the reference implementation.

Secrets: a URL whose host matches an endpoint of `webhooks.endpoints` in jobyard.yaml (or
a job naming `endpoint`) is signed with that endpoint's secrets from
`JOBYARD_WEBHOOK_SECRETS_FILE`; any other with `JOBYARD_WEBHOOK_SECRET`. With `sign` true
(the default) and no secret, the job fails permanently rather than send unsigned; `sign:
false` sends without the signature header on purpose.

Where: only to destinations the egress policy allows (`core.egress`): internal addresses
are refused at enqueue (422) and at delivery (permanent failure, nothing sent) unless
`egress.allow` lists them. Each attempt is bounded as a whole by
`JOBYARD_WEBHOOK_DEADLINE_S`, each network operation by `JOBYARD_WEBHOOK_TIMEOUT_S`.

Outcomes: 2xx succeeds; connection errors, timeouts, 5xx and 429 are retried (429 and 503
honour `Retry-After`); any other status (3xx: redirects are not followed; 4xx) fails at
once without retry. A job's error names the method, the URL without userinfo or query,
the status and a fixed reason: nothing the receiver sent (body, headers) is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import http
import json
import os
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
)

from jobyard import __version__
from jobyard.core.config import NAME_PATTERN, JobyardConfig
from jobyard.core.context import JobContext
from jobyard.core.egress import EgressDeniedError, EgressPolicy, OutboundUrl
from jobyard.core.registry import PermanentError, RetryableError, RetryPolicy, job
from jobyard.core.webhook_secrets import default_secrets, endpoint_secrets
from jobyard.jobs._http import header_problem, header_value_problem, parse_retry_after

if TYPE_CHECKING:
    # Imported where a delivery runs: a worker that never delivers webhooks does not pay
    # httpx's import (about 9 MiB and 40 ms per process).
    import httpx

SIGNATURE_SCHEME = "v1"
MAX_EXTRA_HEADERS = 32
DRAIN_BYTES = 64 * 1024
"""At most this much of a 2xx answer's body is read (and discarded) to keep the
connection for the next delivery; a longer one closes it."""

WEBHOOK_RETRY = RetryPolicy(
    max_attempts=8, backoff_s=4.0, backoff_max_s=600.0, retry_on=(RetryableError,)
)
"""Eight attempts over roughly eight minutes (4, 8, ... 256 s, with jitter)."""


def _header_value(value: str) -> str:
    problem = header_value_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _known_endpoint(value: str | None, info: ValidationInfo) -> str | None:
    config = info.context.get("config") if isinstance(info.context, dict) else None
    if value is not None and isinstance(config, JobyardConfig):
        names = [e.name for e in config.webhooks.endpoints]
        if value not in names:
            raise ValueError(
                f"unknown endpoint {value!r}; webhooks.endpoints in jobyard.yaml: "
                f"{', '.join(names) or 'none'}"
            )
    return value


class WebhookArgs(BaseModel):
    """Arguments of `webhook.deliver`."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    url: OutboundUrl
    """Where to POST: an absolute http:// or https:// URL. Redirects are not followed.
    Loopback, private, link-local and other internal addresses are refused unless
    `egress.allow` in jobyard.yaml lists them."""
    body: dict[str, JsonValue]
    """The JSON object sent as the request body (compact, keys in the order given)."""
    headers: Annotated[
        dict[str, Annotated[str, AfterValidator(_header_value)]],
        Field(max_length=MAX_EXTRA_HEADERS),
    ] = Field(default_factory=dict)
    """Extra request headers. Values: visible ASCII, spaces and tabs, no leading or trailing
    whitespace. Hop-by-hop headers, Host, Content-Length, Expect, Content-Type, User-Agent
    and X-Jobyard-* are set by jobyard and refused here."""
    event: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")] | None = None
    """An event name sent as `X-Jobyard-Event`, e.g. `invoice.paid`."""
    sign: bool = True
    """Sign the request. When true and no secret is configured for the URL the job fails
    permanently instead of sending unsigned; false sends without a signature."""
    endpoint: Annotated[
        Annotated[str, Field(pattern=NAME_PATTERN)] | None, AfterValidator(_known_endpoint)
    ] = None
    """Sign with this endpoint's secrets (`webhooks.endpoints` in jobyard.yaml) whatever
    the URL's host; by default the endpoint whose `hosts` match the URL, else
    `JOBYARD_WEBHOOK_SECRET`."""

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


def signed_url(url: str) -> str:
    """The URL as signed: the job's `url` (normalised) without userinfo and fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, ""))


def shown_url(url: str) -> str:
    """The URL as errors show it: scheme, host, port and path (no userinfo, no query)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def signed_payload(timestamp: int | str, delivery_id: str, url: str, body: bytes) -> bytes:
    """The bytes the signature covers: `v1 LF timestamp LF delivery id LF url LF body`.

    None of timestamp, delivery id and URL can hold a line feed, so the fields cannot be
    shifted into one another.
    """
    head = f"{SIGNATURE_SCHEME}\n{timestamp}\n{delivery_id}\n{url}\n"
    if head.count("\n") != 4:
        raise ValueError("timestamp, delivery id and url must not contain line feeds")
    return head.encode("utf-8") + body


def signature(
    secret: str | bytes, timestamp: int | str, delivery_id: str, url: str, body: bytes
) -> str:
    """One `X-Jobyard-Signature` entry: `v1=` + hex HMAC-SHA256 of :func:`signed_payload`."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, signed_payload(timestamp, delivery_id, url, body), hashlib.sha256)
    return f"{SIGNATURE_SCHEME}={mac.hexdigest()}"


def signature_header(
    secrets: tuple[str, ...], timestamp: int | str, delivery_id: str, url: str, body: bytes
) -> str:
    """The `X-Jobyard-Signature` value: one `v1=` entry per secret, comma-separated."""
    return ", ".join(signature(s, timestamp, delivery_id, url, body) for s in secrets)


def verify_signature(
    secret: str | bytes,
    timestamp: str | int,
    delivery_id: str,
    url: str,
    body: bytes,
    header: str,
    tolerance_s: float = 300,
    *,
    now_s: float | None = None,
) -> bool:
    """Whether a delivery is authentic, fresh and meant for `url`.

    `timestamp`, `delivery_id` and `header` are the `X-Jobyard-Timestamp`,
    `X-Jobyard-Delivery` and `X-Jobyard-Signature` values, `body` the raw request body,
    `url` the receiver's own URL as registered with jobyard (never one taken from the
    request). False when the timestamp is not an integer or is more than `tolerance_s`
    away from now (a replay), or no listed `v1=` signature matches (`header` lists one per
    secret while a secret is rotated).
    """
    ts_text = str(timestamp).strip()
    if not ts_text.isdigit() or "\n" in delivery_id or "\n" in url:
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - int(ts_text)) > tolerance_s:
        return False
    expected = signature(secret, ts_text, delivery_id, url, body)
    return any(hmac.compare_digest(expected, part.strip()) for part in header.split(","))


def encode_body(body: dict[str, JsonValue]) -> bytes:
    """The exact bytes sent (and signed)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def secrets_for(ctx: JobContext, args: WebhookArgs) -> tuple[str, tuple[str, ...]]:
    """Which secrets sign this delivery: (where they come from, the secrets).

    Raises PermanentError when an endpoint applies but its secrets are not available.
    """
    webhooks = ctx.config.webhooks
    endpoint = (
        webhooks.endpoint(args.endpoint)
        if args.endpoint is not None and args.endpoint in [e.name for e in webhooks.endpoints]
        else None
    )
    if args.endpoint is not None and endpoint is None:
        raise PermanentError(
            f"endpoint {args.endpoint!r} is not configured (webhooks.endpoints in jobyard.yaml)"
        )
    if endpoint is None and args.url.host is not None:
        endpoint = webhooks.endpoint_for_host(args.url.host)
    if endpoint is None:
        return "JOBYARD_WEBHOOK_SECRET", default_secrets(ctx.settings.webhook_secret)
    source = f"endpoint {endpoint.name!r} in JOBYARD_WEBHOOK_SECRETS_FILE"
    path = ctx.settings.webhook_secrets_file
    if path is None:
        return source, ()
    return source, endpoint_secrets(path).get(endpoint.name, ())


_clients: dict[tuple[int, EgressPolicy, float], httpx.Client] = {}
_clients_lock = threading.Lock()


def _client(policy: EgressPolicy, timeout_s: float) -> httpx.Client:
    """One pooled, egress-guarded client per process (a forked child makes its own)."""
    from jobyard.core.egress_http import guarded_client

    key = (os.getpid(), policy, timeout_s)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = guarded_client(policy, timeout_s)
    return client


def _drain(response: httpx.Response) -> None:
    """Read a little of a 2xx body so the connection can be reused; errors do not matter."""
    import httpx

    total = 0
    try:
        for chunk in response.iter_raw():
            total += len(chunk)
            if total > DRAIN_BYTES:
                break
    except httpx.HTTPError:
        pass


def _status_reason(status: int) -> str:
    if 300 <= status < 400:
        return "redirects are not followed"
    if status == 429:
        return "rate limited, will retry"
    if status >= 500:
        return "server error, will retry"
    if 400 <= status < 500:
        return "refused by the receiver, not retried"
    return "unexpected status, not retried"


def _phrase(status: int) -> str:
    try:
        return f" {http.HTTPStatus(status).phrase}"
    except ValueError:
        return ""


@job("webhook.deliver", args=WebhookArgs, queue="default", retry=WEBHOOK_RETRY, idempotent=True)
def deliver(ctx: JobContext, args: WebhookArgs) -> dict[str, Any]:
    """POST a signed JSON body to a URL; retries connection errors, timeouts, 5xx and 429.

    Result: `{"status": <HTTP status>, "delivery_id": <job id>, "duration_ms": <float>}`.
    """
    source, secrets = secrets_for(ctx, args) if args.sign else ("", ())
    if args.sign and not secrets:
        raise PermanentError(
            f"{source} is not set (or empty), so the webhook cannot be signed; "
            "set it, or pass sign=false to send unsigned"
        )
    url = str(args.url)
    where = shown_url(url)
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
        headers["X-Jobyard-Signature"] = signature_header(
            secrets, timestamp, ctx.job_id, signed_url(url), body
        )

    import httpx

    from jobyard.core.egress_http import attempt_deadline

    timeout_s = ctx.settings.webhook_timeout_s
    deadline_s = ctx.settings.webhook_deadline_s
    client = _client(ctx.config.egress.policy, timeout_s)
    started = time.monotonic()
    try:
        with (
            attempt_deadline(deadline_s),
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            status = response.status_code
            if 200 <= status < 300:
                _drain(response)
                duration_ms = round((time.monotonic() - started) * 1000, 1)
                return {"status": status, "delivery_id": ctx.job_id, "duration_ms": duration_ms}
            detail = f"POST {where} answered {status}{_phrase(status)}: {_status_reason(status)}"
            if status == 429 or status >= 500:
                delay_s = None
                if status in (429, 503):
                    delay_s = parse_retry_after(response.headers.get("retry-after"))
                raise RetryableError(detail, delay_s=delay_s)
            raise PermanentError(detail)
    except EgressDeniedError as exc:
        raise PermanentError(f"POST {where} refused before connecting: {exc}") from None
    except httpx.TimeoutException as exc:
        if time.monotonic() - started >= deadline_s:
            raise RetryableError(
                f"POST {where} did not complete within the {deadline_s:g} s deadline "
                "(JOBYARD_WEBHOOK_DEADLINE_S)"
            ) from exc
        raise RetryableError(
            f"POST {where} timed out after {timeout_s:g} s ({type(exc).__name__})"
        ) from exc
    except httpx.ConnectError as exc:
        raise RetryableError(f"POST {where} failed: {exc or type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise RetryableError(f"POST {where} failed: {type(exc).__name__}") from exc
