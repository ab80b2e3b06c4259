"""Bearer-token authentication of the controller's API, secure by default.

Why a token at all: the controller can create tasks, i.e. run code paths on every node of the fleet,
so anyone who can reach its port must prove they may. Why secure by default: a controller bound
beyond loopback with no ``SKALDS_API_TOKEN`` would otherwise be an open remote control; instead
:func:`decide_token` makes a random token, which the app prints once to stderr (so the operator
sees it) and registers with the log masker (so no later log line shows it). On loopback only local
processes can connect, so the controller may run open and says so in its log.

The check is one pure ASGI middleware (:class:`TokenAuth`) in front of every route — default deny,
so routes added later are covered without anyone remembering to add a dependency. Public are only
``GET /api/system/health`` (probes must not need a secret), the dashboard's login page with its
static assets (the same files for everyone, shipped in the wheel; no data) and ``/api/auth/*``,
which checks the token itself. A request proves itself with ``Authorization: Bearer <token>`` or,
for browsers (dashboard, ``EventSource``, which cannot set headers), the ``skalds_token`` cookie
that ``POST /api/auth/login`` sets (HttpOnly, SameSite=Strict). Tokens are compared in constant
time. A browser asking for a dashboard page without a valid token is redirected to the login page
instead of getting the JSON 401.

Guessing is throttled (:class:`TokenThrottle`): every wrong token — bearer, cookie or login form —
counts against the client's address, and an address with :data:`MAX_FAILED_TOKENS` distinct wrong
tokens within :data:`THROTTLE_WINDOW_S` is refused (429, ``Retry-After``) until the oldest leaves
the window, the right token included, so the answer never tells a guess that hit. The address is
the TCP peer's: ``X-Forwarded-For`` is never read for this (the controller runs uvicorn without
proxy headers), since any client can write it. One wrong token sent again (a stale cookie, a
misconfigured client retrying) counts once: it is not a guess.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import itertools
import math
import secrets
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from skalds.controller.errors import error_response
from skalds.utils.logging import logger, register_secret

#: The dashboard's login page.
LOGIN_PATH = "/dashboard/login"
#: Paths anyone may call: liveness probes, the login page, and the auth endpoints (they check the
#: token themselves).
PUBLIC_PATHS: frozenset[str] = frozenset(
    {"/api/system/health", LOGIN_PATH, "/api/auth/login", "/api/auth/logout", "/api/auth/session"}
)
#: Path prefixes anyone may read: the dashboard's static files (code and styles, no data).
PUBLIC_PREFIXES: tuple[str, ...] = ("/dashboard/static/",)
#: Cookie that carries the token for browsers.
COOKIE_NAME = "skalds_token"
#: Name of the security schemes in the OpenAPI document.
BEARER_SCHEME = "bearerAuth"
COOKIE_SCHEME = "cookieAuth"
#: Distinct wrong tokens one client address may send within :data:`THROTTLE_WINDOW_S` before it
#: is refused; with the window, guessing even a short token takes years, not minutes.
MAX_FAILED_TOKENS = 10
THROTTLE_WINDOW_S = 60.0
#: Shorter configured tokens are accepted, with a warning: they can be guessed offline or by a
#: patient client spread over many addresses.
MIN_TOKEN_LENGTH = 16


class TokenThrottle:
    """Wrong tokens per client address in a sliding window. Bounded in memory: at most
    ``clients`` addresses (the least recently failing are forgotten first), ``limit`` entries
    each; only keyed hashes of the wrong tokens are kept."""

    def __init__(self, limit: int = MAX_FAILED_TOKENS, window: float = THROTTLE_WINDOW_S, clients: int = 10_000):
        self.limit, self.window, self.clients = limit, window, clients
        self._failures: OrderedDict[str, OrderedDict[bytes, float]] = OrderedDict()
        self._key = secrets.token_bytes(16)
        self._unnamed = itertools.count()

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        failures = self._failures.get(client)
        if failures is None:
            return 0.0
        now = time.monotonic()
        while failures and next(iter(failures.values())) <= now - self.window:
            failures.popitem(last=False)
        if not failures:
            del self._failures[client]
            return 0.0
        return next(iter(failures.values())) + self.window - now if len(failures) >= self.limit else 0.0

    def failed(self, client: str, credential: bytes | None = None) -> None:
        """Count a wrong token from ``client``; the same ``credential`` again only renews its time
        (None: count it as a new one)."""
        if credential is None:
            digest = next(self._unnamed).to_bytes(8, "big")
        else:
            digest = hashlib.blake2b(credential, key=self._key, digest_size=16).digest()
        failures = self._failures.setdefault(client, OrderedDict())
        failures.pop(digest, None)
        failures[digest] = time.monotonic()  # kept in time order: the oldest first
        while len(failures) > self.limit:
            failures.popitem(last=False)
        self._failures.move_to_end(client)
        while len(self._failures) > self.clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures (a person who logged in after a typo starts afresh)."""
        self._failures.pop(client, None)


def client_address(scope: Scope) -> str:
    """The TCP peer of a request (never a forwarded-for header)."""
    client = scope.get("client")
    return str(client[0]) if client else "?"


def too_many_requests(client: str, wait: float) -> JSONResponse:
    """The 429 for a throttled client, with ``Retry-After``."""
    seconds = max(math.ceil(wait), 1)
    response = error_response(
        429, "too_many_requests", f"too many wrong tokens from {client}; try again in {seconds} s"
    )
    response.headers["Retry-After"] = str(seconds)
    return response


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


def verdict(scope: Scope, expected: bytes) -> bool | None:
    """True / False when a request presents the / a wrong token, None when it presents none."""
    return _judge(list(_presented_tokens(scope)), expected)


def _judge(candidates: list[bytes], expected: bytes) -> bool | None:
    ok = False
    for candidate in candidates:
        ok |= hmac.compare_digest(candidate, expected)  # every candidate compared: no early exit
    return ok if candidates else None


def token_matches(presented: str | bytes, expected: str) -> bool:
    """Whether ``presented`` is the token, compared in constant time."""
    candidate = presented.encode("utf-8", errors="replace") if isinstance(presented, str) else presented
    return hmac.compare_digest(candidate, expected.encode("utf-8"))


def is_dashboard_page(path: str) -> bool:
    """Paths that serve the dashboard's HTML shell (where a browser is sent to log in instead)."""
    return path in ("/", "/dashboard") or (path.startswith("/dashboard/") and not path.startswith(PUBLIC_PREFIXES))


def _wants_html(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return b"text/html" in value.lower()
    return False


class TokenAuth:
    """Reject requests without the right token (401, the app's error shape, ``WWW-Authenticate``);
    send browsers that ask for a dashboard page to the login page instead."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        public_paths: frozenset[str] = PUBLIC_PATHS,
        public_prefixes: tuple[str, ...] = PUBLIC_PREFIXES,
        throttle: TokenThrottle | None = None,
    ) -> None:
        self.app = app
        self.expected = token.encode("utf-8") if token else None
        self.public_paths = public_paths
        self.public_prefixes = public_prefixes
        self.throttle = throttle if throttle is not None else TokenThrottle()

    def is_public(self, path: str) -> bool:
        if path in self.public_paths:
            return True
        # A prefix grants nothing beyond itself: no dot-segments, no encoded tricks.
        return path.startswith(self.public_prefixes) and ".." not in path and "%" not in path and "\\" not in path

    def allowed(self, scope: Scope) -> bool | None:
        """True / False for a good / wrong token, None when the request presents none."""
        assert self.expected is not None
        return verdict(scope, self.expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.expected is None or scope["type"] not in ("http", "websocket") or self.is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        assert self.expected is not None
        candidates = list(_presented_tokens(scope))
        client = client_address(scope)
        if candidates and scope["type"] == "http":
            wait = self.throttle.retry_after(client)
            if wait > 0:  # refused unchecked: the answer must not tell a guess that hit
                await too_many_requests(client, wait)(scope, receive, send)
                return
        result = _judge(candidates, self.expected)
        if result:
            await self.app(scope, receive, send)
            return
        if result is False:
            self.throttle.failed(client, b"\x00".join(candidates))
        if scope["type"] == "websocket":  # no JSON body possible before accept: refuse the handshake
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope.get("method") in ("GET", "HEAD") and is_dashboard_page(scope["path"]) and _wants_html(scope):
            redirect = RedirectResponse(LOGIN_PATH, status_code=303, headers={"Cache-Control": "no-store"})
            if result is False:  # a stale cookie: drop it
                redirect.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
            await redirect(scope, receive, send)
            return
        if result is None:
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
    if decision.token is not None and not decision.generated and len(decision.token) < MIN_TOKEN_LENGTH:
        logger.warning(
            f"SKALDS_API_TOKEN is only {len(decision.token)} characters long; use at least {MIN_TOKEN_LENGTH} "
            "random ones (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
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
