"""Refuse request bodies over `limits.max_payload_bytes` with 413, before any route runs.

Both the declared `Content-Length` and the bytes actually received count, so a chunked
body without a length cannot get past the limit. The (small, bounded) body is buffered and
replayed to the app.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobyard.api.problems import problem_response
from jobyard.core.config import LimitsConfig

_DEFAULT_LIMIT_BYTES = LimitsConfig().max_payload_bytes


def _limit_bytes(scope: Scope) -> int:
    runtime = getattr(scope["app"].state, "runtime", None) if "app" in scope else None
    return runtime.config.limits.max_payload_bytes if runtime else _DEFAULT_LIMIT_BYTES


class BodySizeLimit:
    """ASGI middleware enforcing the payload limit from the app's runtime config."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = _limit_bytes(scope)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await problem_response(
                    400,
                    "bad-request",
                    "Bad Request",
                    f"Content-Length must be a non-negative integer, got {declared!r}",
                )(scope, receive, send)
                return
            if int(declared) > limit:
                await self._too_large(limit, scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await self._too_large(limit, scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        await problem_response(
            413,
            "payload-too-large",
            "Payload too large",
            f"the request body exceeds limits.max_payload_bytes ({limit} bytes)",
        )(scope, receive, send)
