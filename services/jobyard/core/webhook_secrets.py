"""Webhook signing secrets: the default one(s) and the per-endpoint file.

- `JOBYARD_WEBHOOK_SECRET`: the secret for URLs that match no configured endpoint; two
  comma-separated secrets (`current,previous`) while rotating.
- `JOBYARD_WEBHOOK_SECRETS_FILE`: a JSON object `{"<endpoint name>": ["current",
  "previous"], ...}` with one or two non-empty secrets per endpoint of `webhooks.endpoints`
  in `jobyard.yaml`.

Both are checked at start; errors name the variable, the file and the key, never a secret.
The file is read again when it changes (a rotated Kubernetes Secret is picked up without
a restart).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from pydantic import SecretStr

from jobyard.core.errors import ConfigError

MAX_SECRETS = 2
"""Secrets valid at once: the current one and, while rotating, the previous one."""


def default_secrets(value: SecretStr | None) -> tuple[str, ...]:
    """The secrets of `JOBYARD_WEBHOOK_SECRET` (empty when unset or empty)."""
    if value is None:
        return ()
    raw = value.get_secret_value()
    if not raw.strip():
        return ()
    parts = [p.strip() for p in raw.split(",")]
    if any(not p for p in parts) or len(parts) > MAX_SECRETS:
        raise ConfigError(
            "JOBYARD_WEBHOOK_SECRET: give one secret, or two comma-separated ones while "
            f"rotating (current,previous); got {len(parts)} part(s), "
            f"{sum(1 for p in parts if not p)} of them empty"
        )
    return tuple(parts)


def read_secrets_file(path: Path) -> dict[str, tuple[str, ...]]:
    """Read and check the per-endpoint secrets file; ConfigError names the file and key."""
    where = f"JOBYARD_WEBHOOK_SECRETS_FILE ({path})"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only: the document itself holds secrets.
        raise ConfigError(
            f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f'{where}: must be a JSON object {{"<endpoint>": ["current", "previous"]}}, '
            f"got {type(data).__name__}"
        )
    out: dict[str, tuple[str, ...]] = {}
    for key, value in data.items():
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, list)
            or not 1 <= len(value) <= MAX_SECRETS
            or not all(isinstance(s, str) and s.strip() for s in value)
        ):
            raise ConfigError(
                f"{where}: key {key!r}: must be a list of 1 or {MAX_SECRETS} non-empty "
                "strings (current first, then the previous one while rotating)"
            )
        out[key] = tuple(s.strip() for s in value)
    return out


def check_endpoints(path: Path, secrets: dict[str, tuple[str, ...]], names: list[str]) -> None:
    """Every key is a configured endpoint and every endpoint has secrets."""
    where = f"JOBYARD_WEBHOOK_SECRETS_FILE ({path})"
    unknown = sorted(set(secrets) - set(names))
    if unknown:
        raise ConfigError(
            f"{where}: key(s) {', '.join(map(repr, unknown))} name no endpoint of "
            f"webhooks.endpoints in jobyard.yaml (configured: {', '.join(names) or 'none'})"
        )
    missing = [n for n in names if n not in secrets]
    if missing:
        raise ConfigError(
            f"{where}: no secrets for endpoint(s) {', '.join(map(repr, missing))} of "
            "webhooks.endpoints in jobyard.yaml"
        )


_cache: dict[Path, tuple[tuple[int, int], dict[str, tuple[str, ...]]]] = {}
_cache_lock = threading.Lock()


def endpoint_secrets(path: Path) -> dict[str, tuple[str, ...]]:
    """The file's secrets, read again only when its modification time or size changed."""
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (0, -1)
    with _cache_lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    secrets = read_secrets_file(path)
    with _cache_lock:
        _cache[path] = (stamp, secrets)
    return secrets
