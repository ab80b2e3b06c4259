"""``/api/auth``: the dashboard's login and logout (the browser keeps the token in a cookie).

``POST /api/auth/login`` checks a token in constant time and, when it is the controller's token,
sets the ``skalds_token`` cookie: HttpOnly (page scripts never read it), SameSite=Strict (no other
site can make the browser send it, which is what protects the state-changing routes from
cross-site requests), ``Secure`` when the request came over HTTPS. These routes are public in the
auth middleware because they check the token themselves; with auth off they just say so.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from skalds.controller.auth import (
    COOKIE_NAME,
    MAX_FAILED_TOKENS,
    AuthDecision,
    TokenThrottle,
    client_address,
    token_matches,
    too_many_requests,
    verdict,
)
from skalds.controller.errors import error_response
from skalds.controller.schemas import ErrorResponse

router = APIRouter(prefix="/api/auth", tags=["auth"])

#: The login form shares the middleware's throttle (see :class:`~skalds.controller.auth.TokenThrottle`):
#: wrong tokens count the same wherever they are tried.
LoginThrottle = TokenThrottle
MAX_FAILED_LOGINS = MAX_FAILED_TOKENS


def _throttle(request: Request) -> TokenThrottle:
    return cast(TokenThrottle, request.app.state.token_throttle)  # set by create_app


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
    throttle, client = _throttle(request), client_address(request.scope)
    wait = throttle.retry_after(client)
    if wait > 0:
        return too_many_requests(client, wait)
    if not token_matches(body.token, decision.token):
        throttle.failed(client, body.token.encode("utf-8", errors="replace"))
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
