"""A local HTTP server that records webhook deliveries and answers from a script.

With `secrets`, each delivery is verified as a receiver would: by the recipe published in
docs/webhooks.md (its Python block, run as documented), against the receiver's own URL.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"

Verifier = Callable[[list[str], str, Mapping[str, str], bytes], bool]


def documented_verifier() -> Verifier:
    """`verify_jobyard_webhook` from the Python block of docs/webhooks.md, as published."""
    text = DOCS.read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.DOTALL) if "def verify" in b]
    assert len(blocks) == 1, "docs/webhooks.md must hold exactly one receiver recipe"
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], str(DOCS), "exec"), namespace)  # our own docs, run as published
    return cast(Verifier, namespace["verify_jobyard_webhook"])


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay_s: float = 0.0
    """Wait this long before answering (to provoke a client timeout)."""
    drip_s: float = 0.0
    """Send the answer one byte at a time, this long apart (a slow-dripping server)."""


@dataclass(frozen=True)
class Delivery:
    """One request as received."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes
    received_at: float
    verified: bool | None = None
    """With receiver secrets: whether the documented recipe accepts the delivery."""


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Receiver:
    """Answers the scripted `answers` in order, then 200 `ok` for ever."""

    def __init__(
        self,
        answers: list[Answer] | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        secrets: list[str] | None = None,
        path: str = "/hooks/test",
    ) -> None:
        self.answers = list(answers or [])
        self.deliveries: list[Delivery] = []
        self.secrets = secrets
        self._verify = documented_verifier() if secrets is not None else None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = None
                if receiver._verify is not None and receiver.secrets is not None:
                    verified = receiver._verify(receiver.secrets, receiver.url, headers, body)
                with receiver._lock:
                    receiver.deliveries.append(
                        Delivery("POST", self.path, headers, body, time.time(), verified)
                    )
                    answer = receiver.answers.pop(0) if receiver.answers else Answer()
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                if answer.drip_s:
                    self._drip(answer)
                    return
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def _drip(self, answer: Answer) -> None:
                head = f"HTTP/1.1 {answer.status} OK\r\nContent-Length: {len(answer.body)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in answer.headers.items())
                self.close_connection = True
                try:
                    for byte in (head + "\r\n").encode() + answer.body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(answer.drip_s)
                except OSError:
                    pass  # the client gave up: what a deadline is for

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}{path}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
