"""HTTP details for `webhook.deliver`: which extra headers a caller may set, `Retry-After`."""

from __future__ import annotations

import email.utils
import re
import time
from datetime import UTC

HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
"""An RFC 9110 field name (a `token`)."""

RESERVED_HEADERS = frozenset(
    {
        # hop-by-hop (RFC 9110 section 7.6.1) and connection management
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        # framing and routing, which the HTTP client owns
        "host",
        "content-length",
        "expect",
        # jobyard's own
        "content-type",
        "user-agent",
    }
)
"""Header names (lower-case) a caller may not set; `X-Jobyard-*` is reserved as well."""

RESERVED_PREFIX = "x-jobyard-"

HEADER_VALUE = re.compile(r"^([\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?)?$")
"""An RFC 9110 field value jobyard sends: visible ASCII, SP and HTAB inside, no leading
or trailing whitespace (obsolete non-ASCII octets are refused)."""


def header_value_problem(value: str) -> str | None:
    """Why `value` cannot be sent as a header value, or None."""
    if HEADER_VALUE.fullmatch(value):
        return None
    return (
        "a header value may hold only visible ASCII characters, spaces and tabs, with no "
        "leading or trailing whitespace (no control characters, no non-ASCII)"
    )


def header_problem(name: str, value: str) -> str | None:
    """Why the extra header `name: value` is refused, or None when it is allowed."""
    if not HEADER_NAME.match(name):
        return f"header name {name!r} is not a valid HTTP field name"
    lower = name.lower()
    if lower in RESERVED_HEADERS or lower.startswith(RESERVED_PREFIX):
        return (
            f"header {name!r} cannot be set: hop-by-hop headers, Host, Content-Length, Expect, "
            "Content-Type, User-Agent and X-Jobyard-* are set by jobyard"
        )
    if header_value_problem(value) is not None:
        return f"header {name!r}: {header_value_problem(value)}"
    return None


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value (delay-seconds or an HTTP-date).

    None when the header is absent or unreadable; a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = time.time() if now_s is None else now_s
    return max(0.0, when.timestamp() - now)
