"""``/api/auth``: the dashboard's login and logout (the browser keeps the token in a cookie).

``POST /api/auth/login`` checks a token in constant time and, when it is the controller's token,
sets the ``skalds_token`` cookie: HttpOnly (page scripts never read it), SameSite=Strict (no other
site can make the browser send it, which is what protects the state-changing routes from
cross-site requests), ``Secure`` when the request came over HTTPS. These routes are public in the
auth middleware because they check the token themselves; with auth off they just say so.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from skalds.controller.auth import COOKIE_NAME, AuthDecision, token_matches, verdict
from skalds.controller.errors import error_response
from skalds.controller.schemas import ErrorResponse

router = APIRouter(prefix="/api/auth", tags=["auth"])

#: Wrong tokens one client address may try within :data:`THROTTLE_WINDOW_S` before being refused.
MAX_FAILED_LOGINS = 10
THROTTLE_WINDOW_S = 60.0


class LoginThrottle:
    """Failed logins per client address in a sliding window; a client over the limit is refused
    (429) until its oldest failure leaves the window, even with the right token — so guessing a
    short token through the login form takes years, not minutes. Bounded in memory."""

    def __init__(self, limit: int = MAX_FAILED_LOGINS, window: float = THROTTLE_WINDOW_S, clients: int = 10_000):
        self.limit, self.window, self.clients = limit, window, clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        failures = self._failures.get(client)
        if failures is None:
            return 0.0
        now = time.monotonic()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return 0.0
        return failures[0] + self.window - now if len(failures) >= self.limit else 0.0

    def failed(self, client: str) -> None:
        failures = self._failures.setdefault(client, deque(maxlen=self.limit))
        failures.append(time.monotonic())
        self._failures.move_to_end(client)
        while len(self._failures) > self.clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def _throttle(request: Request) -> LoginThrottle:
    throttle = getattr(request.app.state, "login_throttle", None)
    if throttle is None:
        throttle = request.app.state.login_throttle = LoginThrottle()
    return cast(LoginThrottle, throttle)


class LoginRequest(BaseModel):
    token: str = Field(..., min_length=1, max_length=4096, description="SKALDS_API_TOKEN")


class SessionInfo(BaseModel):
    auth: str = Field(..., description='"token" when the controller requires one, else "open"')
    authenticated: bool


def _decision(request: Request) -> AuthDecision:
    decision: AuthDecision = request.app.state.auth
    return decision


def _session(request: Request) -> dict[str, Any]:
    decision = _decision(request)
    if decision.token is None:
        return {"auth": "open", "authenticated": True}
    presented = verdict(request.scope, decision.token.encode("utf-8"))
    return {"auth": "token", "authenticated": bool(presented)}


@router.get("/session", response_model=SessionInfo, summary="Whether a token is required and this request has it")
async def session(request: Request) -> dict[str, Any]:
    return _session(request)


@router.post(
    "/login",
    response_model=SessionInfo,
    responses={
        401: {"model": ErrorResponse, "description": "Wrong token"},
        429: {"model": ErrorResponse, "description": "Too many wrong tokens from this address; see Retry-After"},
    },
    summary="Check a token and keep it in an HttpOnly cookie for the dashboard",
)
async def login(body: LoginRequest, request: Request) -> JSONResponse:
    decision = _decision(request)
    if decision.token is None:
        return JSONResponse({"auth": "open", "authenticated": True})
    throttle, client = _throttle(request), request.client.host if request.client else "?"
    wait = throttle.retry_after(client)
    if wait > 0:
        refused = error_response(
            429, "too_many_requests", f"too many wrong tokens from {client}; try again in {math.ceil(wait)} s"
        )
        refused.headers["Retry-After"] = str(math.ceil(wait))
        return refused
    if not token_matches(body.token, decision.token):
        throttle.failed(client)
        return error_response(401, "unauthorized", "invalid token")
    throttle.succeeded(client)
    response = JSONResponse({"auth": "token", "authenticated": True}, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        COOKIE_NAME,
        decision.token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", response_model=SessionInfo, summary="Forget the dashboard's token cookie")
async def logout(request: Request) -> JSONResponse:
    auth = "open" if _decision(request).token is None else "token"
    response = JSONResponse({"auth": auth, "authenticated": auth == "open"}, headers={"Cache-Control": "no-store"})
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response
