"""An httpx client that connects only where the egress policy allows, within a deadline.

The check sits where the connection is made: httpcore asks the network backend for a TCP
connection to `(host, port)`; :class:`GuardedBackend` resolves the host once
(:func:`jobyard.core.egress.checked_addresses`), refuses the whole connection when any
address is denied, and connects to a checked address itself. The URL, the `Host` header,
TLS SNI and certificate verification all keep the original host name, and the connection
pool stays keyed by it. No proxy from the environment is used (it would be the address
checked, not the target).

:func:`attempt_deadline` bounds a whole request (resolution, connect, TLS, send, headers,
body) by a wall-clock deadline: every socket operation gets at most the time left, so a
server dripping one byte per read cannot hold the caller past it.

Imported only where requests are made (httpx costs ~40 ms and ~9 MiB per process).
"""

from __future__ import annotations

import contextlib
import contextvars
import ssl
import time
import typing
from collections.abc import Iterator

import httpcore
import httpx

from jobyard.core.egress import EgressPolicy, checked_addresses

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "jobyard_egress_deadline", default=None
)


@contextlib.contextmanager
def attempt_deadline(seconds: float) -> Iterator[float]:
    """Within the block, every connection step and read ends by `seconds` from now.

    Yields the deadline (a `time.monotonic()` value). Past it, the step under way raises
    an httpcore timeout (an `httpx.TimeoutException` from the client).
    """
    deadline = time.monotonic() + seconds
    token = _DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _DEADLINE.reset(token)


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """`timeout` capped by the time left before the current deadline."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the attempt's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connected stream whose every read and write ends by the current deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """TCP connections only to addresses `policy` allows, resolved once per connection."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Resolve `host` once, check every address (raises
        :class:`~jobyard.core.egress.EgressDeniedError`), connect to the first that answers."""
        try:
            addresses = checked_addresses(
                host, port, self.policy, _bounded(timeout, httpcore.ConnectTimeout)
            )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=_bounded(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return _DeadlineStream(stream)
        assert failure is not None  # checked_addresses never returns an empty list
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not an egress destination")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with :class:`GuardedBackend` under its connection pool."""

    def __init__(self, policy: EgressPolicy, *, verify: ssl.SSLContext | bool = True) -> None:
        super().__init__(verify=verify, trust_env=False)
        limits = httpx.Limits()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )


def guarded_client(
    policy: EgressPolicy, timeout_s: float, *, verify: ssl.SSLContext | bool = True
) -> httpx.Client:
    """A client that never follows redirects, ignores proxy variables and `.netrc`, and
    connects only to addresses `policy` allows."""
    return httpx.Client(
        transport=GuardedTransport(policy, verify=verify),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
    )
