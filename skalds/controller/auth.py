"""Bearer-token authentication of the controller (SPEC §7), secure by default.

Why a token at all: the controller can create tasks, i.e. run code paths on every node of the fleet,
so anyone who can reach its port must prove they may. Why secure by default: a controller bound
beyond loopback with no ``SKALDS_API_TOKEN`` would otherwise be an open remote control; instead
:func:`decide_token` makes a random token, which the app prints once to stderr (so the operator
sees it) and registers with the log masker (so no later log line shows it). On loopback only local
processes can connect, so the controller may run open and says so in its log.

The check is one pure ASGI middleware (:class:`TokenAuth`) in front of every route — default deny,
so routes added later (the dashboard) are covered without anyone remembering to add a dependency.
Only ``GET /api/system/health`` stays public: probes must not need a secret. A request proves itself
with ``Authorization: Bearer <token>`` or, for browsers (dashboard, ``EventSource``, which cannot
set headers), a ``skalds_token`` cookie. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from skalds.controller.errors import error_response
from skalds.utils.logging import logger, register_secret

#: Paths anyone may call (liveness probes).
PUBLIC_PATHS: frozenset[str] = frozenset({"/api/system/health"})
#: Cookie that carries the token for browsers.
COOKIE_NAME = "skalds_token"
#: Name of the security schemes in the OpenAPI document.
BEARER_SCHEME = "bearerAuth"
COOKIE_SCHEME = "cookieAuth"


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` exposes the controller only to this machine.

    ``localhost``, the whole ``127.0.0.0/8`` and ``::1`` are loopback. Everything else — wildcard
    addresses (``0.0.0.0``, ``::``, empty), other addresses and host names that would need a DNS
    lookup to judge — counts as exposed: when in doubt, require a token.
    """
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AuthDecision:
    """What the controller enforces: ``token`` is None when it runs open."""

    token: str | None
    generated: bool
    reason: str

    @property
    def enforced(self) -> bool:
        return self.token is not None


def decide_token(
    host: str, configured: str | None, *, make_token: Callable[[], str] = lambda: secrets.token_urlsafe(32)
) -> AuthDecision:
    """The token to enforce for a controller bound to ``host`` with ``SKALDS_API_TOKEN=configured``."""
    if configured:
        return AuthDecision(configured, False, "SKALDS_API_TOKEN is set")
    if is_loopback(host):
        return AuthDecision(None, False, f"bound to loopback address {host}")
    return AuthDecision(make_token(), True, f"bound to {host or 'all interfaces'} without SKALDS_API_TOKEN")


def _presented_tokens(scope: Scope) -> Iterable[bytes]:
    """Candidate tokens of a request: the bearer credential, then the cookie."""
    cookie_header = b""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credential = value.partition(b" ")
            if scheme.lower() == b"bearer" and credential.strip():
                yield credential.strip()
        elif name == b"cookie":
            cookie_header += (b"; " if cookie_header else b"") + value
    if cookie_header:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie_header.decode("latin-1"))
        except CookieError:
            return
        morsel = jar.get(COOKIE_NAME)
        if morsel is not None and morsel.value:
            yield morsel.value.encode("latin-1", errors="replace")


class TokenAuth:
    """Reject requests without the right token (401, the app's error shape, ``WWW-Authenticate``)."""

    def __init__(self, app: ASGIApp, token: str | None, public_paths: frozenset[str] = PUBLIC_PATHS) -> None:
        self.app = app
        self.expected = token.encode("utf-8") if token else None
        self.public_paths = public_paths

    def allowed(self, scope: Scope) -> bool | None:
        """True / False for a good / wrong token, None when the request presents none."""
        assert self.expected is not None
        seen = False
        ok = False
        for candidate in _presented_tokens(scope):
            seen = True
            ok |= hmac.compare_digest(candidate, self.expected)  # every candidate compared: no early exit
        return ok if seen else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.expected is None or scope["type"] not in ("http", "websocket") or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        verdict = self.allowed(scope)
        if verdict:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # no JSON body possible before accept: refuse the handshake
            await send({"type": "websocket.close", "code": 1008})
            return
        if verdict is None:
            message, challenge = "authentication required: send Authorization: Bearer <token>", "Bearer"
        else:
            message, challenge = "invalid token", 'Bearer error="invalid_token"'
        response = error_response(401, "unauthorized", message)
        response.headers["WWW-Authenticate"] = challenge
        await response(scope, receive, send)


def add_security_to_openapi(schema: dict[str, Any], enforced: bool, public_paths: frozenset[str]) -> None:
    """Declare the bearer (and cookie) schemes; require them everywhere but the public paths."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(
        {
            BEARER_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "SKALDS_API_TOKEN (or the token the controller printed at start)",
            },
            COOKIE_SCHEME: {"type": "apiKey", "in": "cookie", "name": COOKIE_NAME},
        }
    )
    if not enforced:
        return
    schema["security"] = [{BEARER_SCHEME: []}, {COOKIE_SCHEME: []}]
    for path, operations in schema.get("paths", {}).items():
        if path in public_paths:
            for operation in operations.values():
                if isinstance(operation, dict):
                    operation["security"] = []


def announce(decision: AuthDecision) -> None:
    """Tell the operator how the API is protected; a generated token is printed once, to stderr.

    The token goes straight to stderr, not through the logger: the masking logger would hide it,
    and the operator must see it. It is registered as a secret first, so no log line shows it.
    """
    if decision.token is not None:
        register_secret(decision.token)
    if decision.generated:
        sys.stderr.write(
            f"\nskalds controller: {decision.reason}; generated an API token for this run:\n\n"
            f"    SKALDS_API_TOKEN={decision.token}\n\n"
            "Send it as 'Authorization: Bearer <token>' (or the skalds_token cookie). "
            "Set SKALDS_API_TOKEN to choose a stable one.\n\n"
        )
        sys.stderr.flush()
        logger.warning(f"API token required ({decision.reason}); the generated token was printed to stderr")
    elif decision.enforced:
        logger.info("API token required (SKALDS_API_TOKEN is set)")
    else:
        logger.warning(f"API runs without authentication ({decision.reason}); set SKALDS_API_TOKEN to require one")
