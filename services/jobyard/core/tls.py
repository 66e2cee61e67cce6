"""TLS to Redis: `rediss://` verifies the server's certificate unless the URL opts out.

redis-py (the API's, beat's and workers' own clients) verifies `rediss://` by default.
kombu (Celery's broker connection) does not: a `rediss://` URL without SSL options gets
`ssl_cert_reqs=CERT_NONE` with only a warning. jobyard hands kombu explicit options
(Celery's `broker_use_ssl`) read from the same URL, so both verify alike:

- `ssl_cert_reqs`: `required` (the default), `optional` or `none` (an explicit opt-out);
- `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`: paths, as redis-py reads them.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qsl, urlsplit

CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "cert_required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "cert_optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
    "cert_none": ssl.CERT_NONE,
}
"""Accepted `ssl_cert_reqs` values (case-insensitive), as redis-py and kombu spell them."""

PATH_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def broker_ssl_options(url: str) -> dict[str, Any] | None:
    """Celery's `broker_use_ssl` for `url`: None unless it is `rediss://`.

    Raises ValueError for an `ssl_cert_reqs` value that is not one of :data:`CERT_REQS`.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = dict(parse_qsl(parts.query))
    given = query.get("ssl_cert_reqs", "required")
    try:
        options: dict[str, Any] = {"ssl_cert_reqs": CERT_REQS[given.lower()]}
    except KeyError:
        raise ValueError(
            f"ssl_cert_reqs={given!r} is not one of required, optional, none"
        ) from None
    options.update({key: query[key] for key in PATH_OPTIONS if key in query})
    return options
