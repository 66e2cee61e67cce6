"""uvicorn's HTTP protocol with a bounded cost per connection.

uvicorn parses a request's line and headers before the ASGI app is called and has no
timeout for them, nor for a request's body: a client sending a byte a second holds a
connection (and, for a body, a request task) as long as it likes. This protocol
(`uvicorn.run(http=...)`, built by :func:`bounded_protocol`) adds:

- a **header timeout**: from the connection, or from the first byte of a kept-alive
  connection's next request, to the end of the headers; then the connection is closed;
- a **body timeout**: from the end of the headers to the end of the body; then the
  client gets a 408 problem (or, when an answer has already started, the connection is
  closed) and the app's `receive()` says the client went away;
- a **lingering close**: when the app answers before the body has arrived (413 for a
  body over the limit) and the connection is to close (a client that sent
  `Connection: close`, as `urllib` does), the rest of the body is read and discarded,
  up to `discard_limit_bytes` and the body timeout, before closing, so the client reads
  the answer instead of a connection reset. A kept-alive connection discards the same
  way, within the same bounds.

Idle time between requests is uvicorn's `timeout_keep_alive`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from jobyard.api.problems import problem_response

DISCARD_LIMIT_FLOOR_BYTES = 16 * 1024 * 1024
"""The least :func:`bounded_protocol` reads and discards of a refused body."""


def _timeout_response(body_timeout_s: float) -> bytes:
    """The whole HTTP/1.1 408 answer, problem document included."""
    response = problem_response(
        408,
        "request-timeout",
        "Request Timeout",
        f"the request body did not arrive within {body_timeout_s:g} s "
        "(JOBYARD_API_BODY_TIMEOUT_S); send it faster or split it",
    )
    head = b"".join(name + b": " + value + b"\r\n" for name, value in response.raw_headers)
    return STATUS_LINE[408] + head + b"connection: close\r\n\r\n" + response.body


class _LingeringTransport:
    """The connection's transport as uvicorn sees it: `close()` while the request's
    body is still arriving half-closes instead (the answer is sent, then FIN), and the
    protocol closes for real once the body is in or a bound is reached."""

    def __init__(self, transport: asyncio.Transport, protocol: BoundedHttpToolsProtocol):
        self._transport = transport
        self._protocol = protocol
        self.lingering = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        if not self._protocol.receiving_body:
            self._transport.close()
            return
        self.lingering = True
        if self._transport.can_write_eof():
            self._transport.write_eof()
        self._transport.resume_reading()  # uvicorn may have paused it (flow control)

    def close_now(self) -> None:
        self.lingering = False
        self._transport.close()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body timeouts and a lingering close.

    Configure a subclass with :func:`bounded_protocol`; these defaults match the
    settings' defaults.
    """

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    discard_limit_bytes: int = DISCARD_LIMIT_FLOOR_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._lingering: _LingeringTransport | None = None
        self._discarded_bytes = 0
        self.receiving_body = False
        """Between the end of a request's headers and the end of its body."""

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # (uvloop's transports are not `asyncio.Transport` instances, but act as one)
        self._lingering = _LingeringTransport(transport, self)
        super().connection_made(self._lingering)  # type: ignore[arg-type]
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # a kept-alive connection's next request
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel(self._header_timer)
        self._header_timer = None
        self.receiving_body = True
        self._discarded_bytes = 0
        self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_timed_out)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is not None and (cycle.response_complete or cycle.disconnected):
            self._discarded_bytes += len(body)
            if self._discarded_bytes > self.discard_limit_bytes:
                self._close_now()
                return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self.receiving_body = False
        self._cancel(self._body_timer)
        self._body_timer = None
        if self._lingering is not None and self._lingering.lingering:
            self._close_now()
            return
        super().on_message_complete()

    # Timers

    def _arm_header_timer(self) -> None:
        self._cancel(self._header_timer)
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._close_now)

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_started and not cycle.disconnected:
            # The app sees the client gone (its receive() and send() stop); the client
            # gets the answer.
            cycle.disconnected = True
            cycle.message_event.set()
            if self._lingering is not None and not self._lingering.is_closing():
                self._lingering.write(_timeout_response(self.body_timeout_s))
        self._close_now()

    def _close_now(self) -> None:
        self._cancel_timers()
        self.receiving_body = False
        if self._lingering is not None:
            self._lingering.close_now()

    def _cancel_timers(self) -> None:
        self._cancel(self._header_timer)
        self._cancel(self._body_timer)
        self._header_timer = self._body_timer = None

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()


def bounded_protocol(
    *, header_timeout_s: float, body_timeout_s: float, max_payload_bytes: int
) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to pass as `uvicorn.run(http=...)`: a refused body is discarded
    up to 4 times the payload limit (at least :data:`DISCARD_LIMIT_FLOOR_BYTES`)."""
    return type(
        "JobyardHttpProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "header_timeout_s": header_timeout_s,
            "body_timeout_s": body_timeout_s,
            "discard_limit_bytes": max(4 * max_payload_bytes, DISCARD_LIMIT_FLOOR_BYTES),
        },
    )
