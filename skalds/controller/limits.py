"""Reject request bodies above a size limit (413) before anything parses them.

A pure ASGI middleware: it checks ``Content-Length`` first, then counts the bytes actually
received (chunked uploads have no length), buffering at most the limit. The app then reads the
buffered body as usual. A client that stops sending its body for ``read_timeout`` seconds gets
408 and its connection is closed: a half-sent body must not hold a connection forever.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skalds.controller.errors import error_response


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "payload_too_large", f"request body larger than {self.max_bytes} bytes (SKALDS_MAX_BODY_BYTES)"
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._reject(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        first: Message | None = None
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout)
            except TimeoutError:
                response = error_response(
                    408,
                    "request_timeout",
                    f"the request body stalled for {self.read_timeout:g} s (SKALDS_REQUEST_TIMEOUT); send it whole",
                )
                response.headers["Connection"] = "close"
                await response(scope, receive, send)
                return
            if message["type"] != "http.request":
                first = message  # a disconnect: hand it on as is
                break
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                if first is not None:
                    return first
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
