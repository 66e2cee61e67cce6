"""The served API bounds what one connection can cost (issue 11.9): slow headers, slow
bodies and idle keep-alive connections are closed on time, and a body over the limit gets
its 413 with every common client, not a connection reset. Real `jobyard api` processes,
real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jobyard.core.config import LimitsConfig
from tests.integration.conftest import WORKER_ENV
from tests.support.processes import wait_until
from tests.support.redis_server import free_port

pytestmark = pytest.mark.integration

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 3.0
KEEPALIVE_TIMEOUT_S = 2
ATTACKERS = 30
LIMIT = LimitsConfig().max_payload_bytes


@pytest.fixture
def api_port(spawn: Any) -> Iterator[int]:
    """A real `jobyard api` with short header, body and keep-alive timeouts."""
    port = free_port()
    spawn(
        "api",
        env={
            **WORKER_ENV,
            "JOBYARD_API_PORT": str(port),
            "JOBYARD_API_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
            "JOBYARD_API_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
            "JOBYARD_API_KEEPALIVE_TIMEOUT_S": str(KEEPALIVE_TIMEOUT_S),
        },
    )

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout_s=60)
    yield port


async def _trickle(port: int, head: bytes, drip: bytes, give_up_s: float) -> tuple[float, bytes]:
    """Send `head`, then one byte of `drip` per second until the server closes the
    connection; (seconds until closed, what the server sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    received = b""
    try:
        writer.write(head)
        for i in range(int(give_up_s)):
            try:
                chunk = await asyncio.wait_for(reader.read(65536), timeout=1.0)
            except TimeoutError:
                writer.write(drip[i % len(drip) : i % len(drip) + 1])
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return time.monotonic() - started, received
    finally:
        writer.close()


async def _attack_and_serve(port: int, head: bytes, drip: bytes) -> list[tuple[float, bytes]]:
    give_up_s = max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + 10
    attack = asyncio.gather(*(_trickle(port, head, drip, give_up_s) for _ in range(ATTACKERS)))
    await asyncio.sleep(0.5)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        served = await http.post("/v1/jobs", json={"task": "jobyard.noop"})
    assert served.status_code == 201, served.text  # served while the attack goes on
    return list(await attack)


def test_slow_headers_are_closed_after_the_header_timeout(api_port: int) -> None:
    head = b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: "
    outcomes = asyncio.run(_attack_and_serve(api_port, head, b"abcdefgh"))
    closed_after = sorted(s for s, _ in outcomes)
    assert closed_after[-1] <= HEADER_TIMEOUT_S + 2, closed_after
    assert closed_after[0] >= HEADER_TIMEOUT_S - 0.5, closed_after


def test_a_silent_connection_is_closed_after_the_header_timeout(api_port: int) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", api_port)) as sock:
        sock.settimeout(HEADER_TIMEOUT_S + 5)
        assert sock.recv(1024) == b""
    assert time.monotonic() - started <= HEADER_TIMEOUT_S + 2


def test_slow_body_gets_408_after_the_body_timeout(api_port: int) -> None:
    body_head = b'{"task": "jobyard.noop", "x": "'
    head = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + body_head
    )
    outcomes = asyncio.run(_attack_and_serve(api_port, head, b"aaaaaaaa"))
    for seconds, received in outcomes:
        assert seconds <= BODY_TIMEOUT_S + 2, seconds
        assert received.startswith(b"HTTP/1.1 408 "), received[:200]
        assert b"application/problem+json" in received
        assert b"api_body_timeout_s" in received or b"JOBYARD_API_BODY_TIMEOUT_S" in received


def test_slow_chunked_body_is_bounded_too(api_port: int) -> None:
    head = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"
    )
    seconds, received = asyncio.run(_trickle(api_port, head, b"1\r\n \r\n", 15))
    assert seconds <= BODY_TIMEOUT_S + 2
    assert received.startswith(b"HTTP/1.1 408 ")


def test_idle_keep_alive_connection_is_closed(api_port: int) -> None:
    with socket.create_connection(("127.0.0.1", api_port)) as sock:
        sock.settimeout(KEEPALIVE_TIMEOUT_S + 5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while not received.endswith(b'{"status":"ok"}'):
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started <= KEEPALIVE_TIMEOUT_S + 1.5


@pytest.mark.parametrize("mib", [1, 8])
def test_body_over_the_limit_is_413_for_urllib(api_port: int, mib: int) -> None:
    # urllib sends `Connection: close` and reads nothing before its whole body is sent:
    # a server that closes right after its 413 resets the connection under it (from
    # about 2.5 MiB on loopback, once the socket buffers are full).
    body = json.dumps({"task": "jobyard.noop", "x": "a" * (mib * 1024 * 1024)}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{api_port}/v1/jobs",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 413
    assert caught.value.headers["content-type"] == "application/problem+json"
    problem = json.loads(caught.value.read())
    assert problem["status"] == 413


def test_body_over_the_limit_is_413_for_httpx(api_port: int) -> None:
    big = {"task": "jobyard.noop", "x": "a" * (1024 * 1024)}
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as http:
        r = http.post("/v1/jobs", json=big)
        assert r.status_code == 413
        assert r.json()["status"] == 413

        def chunks() -> Iterator[bytes]:
            for _ in range(64):
                yield b"b" * 16384

        r = http.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        # The connection is still usable afterwards.
        assert http.get("/healthz").status_code == 200


def _raw_413(port: int, head: bytes, body: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        sock.sendall(head)
        sock.sendall(body)  # the whole body, as naive clients do, before reading
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        return received


def test_body_over_the_limit_is_413_for_a_raw_socket(api_port: int) -> None:
    size = 8 * 1024 * 1024
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    assert _raw_413(api_port, head, b"c" * size).startswith(b"HTTP/1.1 413 ")
    chunked = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"4000\r\n" + b"d" * 0x4000 + b"\r\n"
    body = piece * (size // 0x4000) + b"0\r\n\r\n"
    assert _raw_413(api_port, chunked, body).startswith(b"HTTP/1.1 413 ")


def test_a_huge_body_is_not_read_forever(api_port: int) -> None:
    """Past a bound the rest of a refused body is not read: the connection is closed."""
    declared = 512 * 1024 * 1024
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    sent = 0
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", api_port)) as sock:
        sock.settimeout(10)
        sock.sendall(head)
        block = b"e" * 65536
        with pytest.raises(OSError):  # reset or broken pipe once the server closed
            while sent < declared:
                sock.sendall(block)
                sent += len(block)
    assert sent < 64 * 1024 * 1024, sent
    assert time.monotonic() - started < BODY_TIMEOUT_S + 5
