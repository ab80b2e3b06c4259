"""The API's one error shape, and how every failure maps onto it.

Every error response of the controller is::

    {"error": {"code": "<machine-readable>", "message": "<what to fix>", "details": [...]}}

``details`` is present only when there is a list to give (one entry per invalid field, with its
path). Bad input is never a 500: the service raises domain errors only (:mod:`skalds.errors`:
:class:`~skalds.errors.InvalidRequest` and its kinds carry the per-field ``details``), and they,
the store's errors and FastAPI's request validation all land here; :data:`DOMAIN_ERRORS` is the
one table of their statuses and codes. :class:`ApiError` is for what only HTTP knows (routes,
middlewares).

A backend that cannot serve is never a 500 either: every driver turns its own connection, timeout
and disk errors (psycopg / sqlite3 ``OperationalError``, redis ``ConnectionError`` /
``TimeoutError``, pymongo ``ConnectionFailure``, ``KafkaException``, ``OSError``) into
:class:`~skalds.errors.BackendUnavailable` (:mod:`skalds.backends.guard`), which
:func:`from_exception` maps to 503 ``backend_unavailable`` with a ``Retry-After`` header; the
message names the backend (and, for a full disk, the file). A 503 from a create means nothing was
stored — unless the request carried an ``Idempotency-Key`` or an ``id``, a retry is then safe
either way (see ``docs/outages.md``).

===========================  ======  ==========================================================
code                         status  when
===========================  ======  ==========================================================
``not_found``                404     no such task / skald / route
``task_exists``              409     ``POST /api/tasks`` with an id that is taken (a retry of a
                                    create with a client-chosen id)
``illegal_transition``       409     the state machine forbids the status change
``task_ended``               409     new attachments for a task that ended for good (Finished,
                                    Cancelled, or Failed with no retry to come): nothing would
                                    run them; retry the task first. Nothing is stored
``deadline_passed``          409     resume / retry of a task whose deadline has passed (it would
                                    be cancelled at once); ``PUT /api/tasks/{id}/deadline``
                                    sets a later one, or none
``conflict``                 409     a concurrent writer won (retry)
``invalid_request``          422     body / query / path fail validation (malformed JSON too),
                                    or a number too large for the store (``page=2**63``), a
                                    task id outside ``[A-Za-z0-9._:@-]{1,128}``, a NUL character
                                    in a string field or anywhere in the URL
``unknown_class``            422     a class that must be known is not (a create of a class no
                                    online skald advertises is stored with a warning instead)
``unknown_dependency``       422     dependencies name tasks that do not exist
``invalid_attachments``      422     attachments fail the class's JSON schema or name a key its
                                    model does not take, nest deeper than 64 levels or hold a
                                    NUL character
``idempotency_key_reused``   422     an ``Idempotency-Key`` sent again with a different body
``payload_too_large``        413     the body is larger than ``SKALDS_MAX_BODY_BYTES``
``unsupported_media_type``   415     a body sent to ``/api`` without ``Content-Type: application/json``
``host_not_allowed``         403     no token is set and the Host header is not a loopback name
                                    (DNS rebinding; see ``docs/security.md``)
``too_many_requests``        429     too many wrong tokens from this client address, as bearer,
                                    cookie or at ``/api/auth/login`` (``Retry-After``)
``request_timeout``          408     the request body stalled longer than ``SKALDS_REQUEST_TIMEOUT``
``backend_unavailable``      503     a backend cannot serve right now: server unreachable or
                                    timed out, disk full (``Retry-After: 1``)
``internal_error``           500     a bug; the message is generic, details go to the log
===========================  ======  ==========================================================
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from skalds.controller.schemas import MAX_ATTACHMENT_DEPTH
from skalds.errors import (
    BackendUnavailable,
    Conflict,
    DeadlinePassed,
    IdempotencyKeyReused,
    IllegalTransition,
    InvalidAttachments,
    InvalidRequest,
    SkaldNotFound,
    TaskEnded,
    TaskExists,
    TaskNotFound,
    UnknownDependency,
    UnknownWorkerClass,
)
from skalds.utils.logging import logger, mask_secrets


class ApiError(Exception):
    """A failure the API reports as ``{"error": {...}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def unprocessable(code: str, message: str, details: list[dict[str, Any]] | None = None) -> ApiError:
    return ApiError(422, code, message, details)


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    # Messages can quote exception text, and exception text can quote a DSN with its password.
    error: dict[str, Any] = {"code": code, "message": mask_secrets(message)}
    if details is not None:
        error["details"] = [
            {**d, "message": mask_secrets(d["message"])} if isinstance(d.get("message"), str) else d for d in details
        ]
    return {"error": error}


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    response = JSONResponse(error_body(code, message, details), status_code=status)
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


#: Seconds a client is asked to wait before retrying after a 503.
RETRY_AFTER_S = 1
#: Seconds between two log lines about the same unavailable backend.
_LOG_EVERY_S = 10.0
_logged: dict[str, float] = {}


def _log_unavailable(request: Request, message: str) -> None:
    """Log a 503's cause, once per distinct message every :data:`_LOG_EVERY_S` (an outage answers
    many requests the same way)."""
    now = time.monotonic()
    if _logged.get(message, 0.0) > now:
        return
    if len(_logged) > 100:
        _logged.clear()
    _logged[message] = now + _LOG_EVERY_S
    logger.warning(f"{request.method} {request.url.path}: 503 backend_unavailable: {message}")


#: Each domain error the API reports: its status and code, a subclass before its base.
DOMAIN_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (TaskNotFound, 404, "not_found"),
    (SkaldNotFound, 404, "not_found"),
    (TaskExists, 409, "task_exists"),
    (TaskEnded, 409, "task_ended"),
    (DeadlinePassed, 409, "deadline_passed"),
    (IllegalTransition, 409, "illegal_transition"),
    (Conflict, 409, "conflict"),
    (UnknownWorkerClass, 422, "unknown_class"),
    (InvalidAttachments, 422, "invalid_attachments"),
    (UnknownDependency, 422, "unknown_dependency"),
    (IdempotencyKeyReused, 422, "idempotency_key_reused"),
    (InvalidRequest, 422, "invalid_request"),
    (BackendUnavailable, 503, "backend_unavailable"),
)


def from_exception(exc: Exception) -> ApiError | None:
    """The API error for a known exception, or None for a bug."""
    if isinstance(exc, ApiError):
        return exc
    for cls, status, code in DOMAIN_ERRORS:
        if isinstance(exc, cls):
            details = exc.details if isinstance(exc, InvalidRequest) else None
            return ApiError(status, code, str(exc), details)
    return None


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        where, rest = parts[0], parts[1:]
        return f"{where}.{'.'.join(rest)}" if rest else where
    return ".".join(parts)


def validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for e in exc.errors():
        loc = tuple(e.get("loc", ()))
        if e.get("type") == "json_invalid":  # loc is ("body", character position)
            reason = (e.get("ctx") or {}).get("error", "invalid JSON")
            at = f" at character {loc[1]}" if len(loc) > 1 else ""
            details.append({"field": "body", "message": f"malformed JSON{at}: {reason}"})
        else:
            details.append({"field": _field_path(loc), "message": str(e.get("msg", ""))})
    return details


#: FastAPI's detail when reading the body as JSON fails other than by a syntax error (a
#: RecursionError on deep nesting, a UnicodeDecodeError).
_UNPARSABLE_BODY = "There was an error parsing the body"


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through the one error shape."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        err = from_exception(exc)
        if err is None:  # pragma: no cover - only registered for known types
            return await on_unexpected(request, exc)
        if err.status == 503:
            _log_unavailable(request, err.message)
        return error_response(err.status, err.code, err.message, err.details)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = validation_details(exc)
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5]) or "invalid request"
        # Attachments no store could keep (too deep, NUL) are reported like attachments that
        # break their class's schema, when nothing else is wrong.
        types = {e.get("type") for e in exc.errors()}
        code = "invalid_attachments" if types == {"invalid_attachments"} else "invalid_request"
        return error_response(422, code, summary, details)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 400 and message == _UNPARSABLE_BODY:  # FastAPI's words for bytes json.loads gave up on
            return error_response(
                422,
                "invalid_request",
                "the body could not be read as JSON: it is not UTF-8, or it nests objects and arrays hundreds "
                f"of levels deep (attachments may nest at most {MAX_ATTACHMENT_DEPTH})",
                [{"field": "body", "message": "unreadable JSON"}],
            )
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        response = error_response(exc.status_code, code, message)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        err = from_exception(exc)
        if err is not None:
            return error_response(err.status, err.code, err.message, err.details)
        logger.opt(exception=exc).error(f"{request.method} {request.url.path} failed")
        return error_response(500, "internal_error", "internal error; see the controller's log")

    handled: list[type[Exception]] = [ApiError, *(known for known, _, _ in DOMAIN_ERRORS)]
    for cls in handled:
        app.add_exception_handler(cls, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
