"""HTTP hardening of the controller: pure ASGI middlewares that run before any route.

Why each exists (see ``docs/security.md``, "Hostile input and HTTP hardening"):

* :class:`SecurityHeaders` — every response says ``X-Content-Type-Options: nosniff``; every HTML
  response (the dashboard, its static pages, the OpenAPI UI) also forbids framing with
  ``X-Frame-Options: DENY`` and ``frame-ancestors 'none'`` merged into its Content Security
  Policy, so no other site can lay a page of the controller under a decoy and steal clicks.
* :class:`LoopbackHostOnly` — a controller without a token trusts whoever can reach its loopback
  port. A browser tricked by DNS rebinding reaches that port under the attacker's host name, so in
  that mode only loopback host names are answered.
* :class:`JsonBodiesOnly` — a body sent to ``/api`` must say ``Content-Type: application/json``.
  Browsers send ``text/plain`` or no type cross-site without a CORS preflight; requiring JSON
  keeps another site from creating or changing tasks through a visitor's browser. URLs carrying a
  NUL character are refused here too: no id, filter or name may contain one, and PostgreSQL
  cannot even compare against one.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skalds.controller.errors import error_response

#: What every HTML response adds to (or puts into) its Content-Security-Policy.
FRAME_ANCESTORS = "frame-ancestors 'none'"
#: Methods whose body the API reads.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def with_frame_ancestors(csp: str) -> str:
    """``csp`` with ``frame-ancestors 'none'``, unless it already names its frame ancestors."""
    directives = [d.strip() for d in csp.split(";") if d.strip()]
    if any(d.split()[0].lower() == "frame-ancestors" for d in directives):
        return "; ".join(directives)
    return "; ".join([*directives, FRAME_ANCESTORS])


class SecurityHeaders:
    """``nosniff`` on every response; no framing of any HTML response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self.decorate(list(message.get("headers", ())))
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def decorate(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        names = {name.lower() for name, _ in headers}
        content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
        if b"x-content-type-options" not in names:
            headers.append((b"x-content-type-options", b"nosniff"))
        if not content_type.lower().startswith(b"text/html"):
            return headers
        out = [(n, v) for n, v in headers if n.lower() not in (b"x-frame-options", b"content-security-policy")]
        out.append((b"x-frame-options", b"DENY"))
        policies = [v.decode("latin-1") for n, v in headers if n.lower() == b"content-security-policy"]
        for policy in policies or [""]:
            out.append((b"content-security-policy", with_frame_ancestors(policy).encode("latin-1")))
        return out


def is_loopback_name(host: str) -> bool:
    """Whether ``host`` (a Host header's name, port removed) can only mean this machine."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name part of a Host header: ``[::1]:8000`` → ``[::1]``, ``localhost:80`` → ``localhost``."""
    header = header.strip()
    if header.startswith("["):
        end = header.find("]")
        return header[: end + 1] if end > 0 else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class LoopbackHostOnly:
    """Without a token, answer only requests addressed to a loopback name (DNS rebinding)."""

    def __init__(self, app: ASGIApp, bound_host: str) -> None:
        self.app = app
        self.bound = bound_host.strip().lower()

    def allowed(self, header: bytes | None) -> bool:
        if header is None:  # HTTP/1.0 without Host: no browser sends that
            return True
        name = host_name(header.decode("latin-1")).lower()
        return is_loopback_name(name) or (bool(self.bound) and name.strip("[]") == self.bound.strip("[]"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"host")
        if self.allowed(header):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        shown = (header or b"").decode("latin-1")[:100]
        response = error_response(
            403,
            "host_not_allowed",
            f"Host {shown!r} is not a loopback name: a controller without SKALDS_API_TOKEN answers only "
            "requests to localhost, *.localhost, 127.0.0.1 or [::1] (set SKALDS_API_TOKEN to serve other names)",
        )
        await response(scope, receive, send)


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    kind, _, subtype = media.partition(b"/")
    return kind == b"application" and (subtype == b"json" or subtype.endswith(b"+json"))


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    if length is not None:
        return length.strip() not in (b"", b"0")
    return _header(scope, b"transfer-encoding") is not None


class JsonBodiesOnly:
    """415 for a body on ``/api`` that is not declared JSON; 422 for a NUL anywhere in the URL."""

    def __init__(self, app: ASGIApp, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
            response = error_response(
                422, "invalid_request", "the URL contains a NUL character (%00), which no id, filter or name may hold"
            )
            await response(scope, receive, send)
            return
        if scope["path"].startswith(self.prefix) and scope["method"] in _BODY_METHODS and _has_body(scope):
            content_type = _header(scope, b"content-type")
            if content_type is None or not _is_json(content_type):
                shown = "none" if content_type is None else repr(content_type.decode("latin-1")[:100])
                response = error_response(
                    415,
                    "unsupported_media_type",
                    f"the request body must be JSON sent with Content-Type: application/json (got {shown})",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
