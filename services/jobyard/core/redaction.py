"""Secrets kept out of what people read: API answers, job errors, logs, configuration errors.

One set of rules, applied wherever a value leaves for a person or a log pipeline:

- a name that says it holds a secret (`token`, `secret`, `password`, `passwd`, `api_key`,
  `apikey`, `authorization`, `cookie`, `credential`, `private_key`, `signature`, any case,
  `-` or `_`) has its whole value replaced by :data:`MASK`, however deeply it is nested;
- in free text: URL userinfo (`rediss://:pw@host` -> `rediss://***@host`), credentials
  after an HTTP auth scheme (`Bearer abc` -> `Bearer ***`), secret-named query parameters
  (`?token=abc` -> `?token=***`) and secret-named assignments (`password=abc`,
  `"api_token": "abc"`).

What is stored for running a job (its message, the record's `args`, which retries
republish) keeps the real values: Redis is inside the trust boundary. What a reader gets
back is redacted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

_SECRET_WORDS = (
    "token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "apikey",
    "api_key",
    "api-key",
    "authorization",
    "cookie",
    "credential",
    "private_key",
    "private-key",
    "signature",
)
_SECRET_NAME = re.compile("|".join(re.escape(w) for w in _SECRET_WORDS), re.IGNORECASE)

# Every pattern runs in time linear in the text: no unbounded repetition before a literal
# that may be absent (a 50 kB word must not cost seconds: logs and errors pass through here).
_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.\-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]{0,31}://)[^/?#@\s\"'<>]+@"
)
_AUTH_SCHEME = re.compile(
    r"(?P<scheme>\b(?:Bearer|Basic|Digest|Token|Negotiate))[ \t]+[A-Za-z0-9._~+/=\-]{3,}",
    re.IGNORECASE,
)
_NAME_TOKEN = re.compile(r"[A-Za-z0-9_.\-]+")
_VALUE_AFTER_NAME = re.compile(
    r"[\"']?[ \t]*[:=][ \t]*(?P<quote>[\"']?)"
    r"(?!\*\*\*)(?!(?:Bearer|Basic|Digest|Token|Negotiate)[ \t]+\*\*\*)"  # already masked
    r"(?P<value>[^\s\"',;}&#]+)",
    re.IGNORECASE,
)
_TRIGGERS = ("://", "bearer", "basic", "digest", "token", "negotiate", *_SECRET_WORDS)


def is_secret_name(name: str) -> bool:
    """Whether a header, argument or setting called `name` holds a secret."""
    return bool(_SECRET_NAME.search(name))


def _mask_assignments(text: str) -> str:
    """Mask the value after every secret-named `name=`, `name: `, `"name": ` (and `?name=`)."""
    out: list[str] = []
    done = 0
    for name in _NAME_TOKEN.finditer(text):
        if name.start() < done or not is_secret_name(name.group()):
            continue
        found = _VALUE_AFTER_NAME.match(text, name.end())
        if found is None:
            continue
        out.append(text[done : found.start("value")])
        out.append(MASK)
        done = found.end("value")
    out.append(text[done:])
    return "".join(out)


def redact_text(text: str) -> str:
    """`text` with credentials in URLs, auth headers, query strings and assignments masked."""
    lowered = text.lower()
    if not any(t in lowered for t in _TRIGGERS):
        return text  # the common case (a log line without any credential-like part)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m['scheme']} {MASK}", text)
    return _mask_assignments(text)


def redact_value(value: Any, name: str | None = None) -> Any:
    """A copy of `value` (JSON-like) with secrets masked; `name` is the key it sits under."""
    if name is not None and is_secret_name(name) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value
