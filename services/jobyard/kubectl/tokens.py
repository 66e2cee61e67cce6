"""Which bearer token the plugin sends to the jobyard API, and where it came from.

In order: `--api-token` (or JOBYARD_API_TOKEN); else, when the API Deployment takes its
tokens from a Secret (JOBYARD_API_TOKENS / JOBYARD_ADMIN_TOKENS), the first token of that
Secret key, if RBAC lets the operator `get` that Secret; else none. Reads use an API token,
writes (retry, purge) an admin token when admin tokens are configured.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from jobyard.kubectl.errors import ForbiddenError, NotFoundError
from jobyard.kubectl.kube import Kube, Obj
from jobyard.kubectl.rbac import GET_SECRETS
from jobyard.kubectl.release import Release

API_TOKENS_ENV = "JOBYARD_API_TOKENS"
ADMIN_TOKENS_ENV = "JOBYARD_ADMIN_TOKENS"


@dataclass(frozen=True)
class Token:
    """The token to send (None: none), and why none could be found when that matters."""

    value: str | None
    hint: str | None = None


def _api_env(release: Release) -> dict[str, Obj]:
    if release.api is None:
        return {}
    containers = release.api["spec"]["template"]["spec"].get("containers") or []
    chosen = next((c for c in containers if c.get("name") == "api"), None)
    if chosen is None and containers:
        chosen = containers[0]
    return {e["name"]: e for e in (chosen or {}).get("env") or []}


def resolve(kube: Kube, release: Release, explicit: str | None, *, write: bool) -> Token:
    """The token for a read (or, `write`, a retry/purge) request."""
    if explicit:
        return Token(explicit)
    env = _api_env(release)
    names = [ADMIN_TOKENS_ENV, API_TOKENS_ENV] if write else [API_TOKENS_ENV]
    entry = next((env[n] for n in names if n in env), None)
    if entry is None:
        return Token(None)
    if "value" in entry:
        return Token(_first(str(entry["value"])))
    ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
    if not ref:
        return Token(None, f"{entry['name']} of {release.api_name} is not from a Secret")
    secret, key = str(ref["name"]), str(ref["key"])
    try:
        data = kube.read(
            GET_SECRETS, kube.core.read_namespaced_secret, secret, kube.namespace, name=secret
        )
    except ForbiddenError:
        return Token(
            None,
            f"you may not read Secret {secret!r} (key {key!r}) to find the token yourself; "
            "the chart's operator role can (kubectlPlugin.rbac.readTokenSecret)",
        )
    except NotFoundError:
        return Token(None, f"the Secret {secret!r} does not exist")
    encoded = (data.get("data") or {}).get(key)
    if not encoded:
        return Token(None)
    try:
        return Token(_first(base64.b64decode(encoded).decode("utf-8")))
    except (binascii.Error, UnicodeDecodeError):
        return Token(None, f"key {key!r} of Secret {secret!r} is not valid base64 text")


def _first(tokens: str) -> str | None:
    found = [t.strip() for t in tokens.split(",") if t.strip()]
    return found[0] if found else None
