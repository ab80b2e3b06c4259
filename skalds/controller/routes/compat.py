"""0.3.x compatibility: what clients of Skalds 0.3.x (its React web dashboard among them) ask for
under names or shapes our API spells differently, and a built dashboard served from a directory.

The API routes here only translate: the work is :class:`ControllerService`'s, as for our own routes.

* ``GET /api/tasks/`` (trailing slash): the 0.3.x list — ``lifecycleStatus``, ``className``,
  ``executor`` and ``id`` (part of the id or name) as filters, newest first. Our ``/api/tasks``
  takes ``status``, ``type`` and ``q``; a 0.3.x client sending its names there would silently get
  an unfiltered page, so the slash form is theirs.
* ``GET /api/tasks/classnames``: the class names of the stored tasks, sorted (the 0.3.x filter list).
* ``GET /api/skalds/``: the same list as ``/api/skalds`` (without the redirect a slash would cost).
* ``PUT /api/tasks/{id}/status`` with a 0.3.x body ``{"lifecycleStatus": "Cancelled" | "Created"}``
  answers the 0.3.x ``{"success", "message", "data": {"taskId", "status"}}``; a body with our
  ``status`` is handled by our route's function, unchanged.

These routes are matched before ours (:func:`install`), since ``/api/tasks/classnames`` would
otherwise be read as a task id. With ``SKALDS_DASHBOARD_DIR`` set, the files of that directory are
served at ``/dashboard`` (any other path under it without a file extension gets its
``index.html``, for a client-side router), from a list made at start-up like ours, under the same
Content Security Policy; ``/dashboard/login`` and ``/dashboard/static/`` stay ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError

from skalds.controller.deps import blocking, get_dispatcher, get_service
from skalds.controller.dispatcher import Dispatcher
from skalds.controller.errors import ApiError, error_response
from skalds.controller.routes import tasks
from skalds.controller.routes.dashboard import CSP
from skalds.controller.schemas import SkaldList, StatusUpdate, TaskPage
from skalds.controller.service import MAX_PAGE_SIZE, ControllerService

#: What a 0.3.x status body may ask for.
LEGACY_TARGETS = ("Created", "Cancelled")

router = APIRouter(tags=["0.3.x compatibility"])
Service = Depends(get_service)
MaybeDispatcher = Depends(get_dispatcher)


@router.get(
    "/api/tasks/",
    response_model=TaskPage,
    summary="List tasks, 0.3.x filters (newest first)",
    description="As `GET /api/tasks` with the query names of Skalds 0.3.x.",
)
async def list_tasks_03x(
    page: int = Query(1, ge=1, le=tasks.MAX_PAGE),
    page_size: int = Query(20, alias="pageSize", ge=1, le=MAX_PAGE_SIZE),
    lifecycle_status: str | None = Query(None, alias="lifecycleStatus", description="status, or several by commas"),
    class_name: str | None = Query(None, alias="className"),
    executor: str | None = Query(None, description="skald id"),
    task_id: str | None = Query(None, alias="id", max_length=200, description="part of the id or name"),
    service: ControllerService = Service,
) -> dict[str, Any]:
    return await blocking(
        service.list_tasks, page, page_size, lifecycle_status, class_name, executor, task_id, "-createDateTime"
    )


@router.get("/api/tasks/classnames", response_model=list[str], summary="Class names of the stored tasks")
async def task_classnames(service: ControllerService = Service) -> list[str]:
    counts = await blocking(service.store.counts)  # one GROUP BY, as the metrics' gauge
    return sorted({class_name for _, class_name in counts if class_name})


@router.get("/api/skalds/", response_model=SkaldList, summary="Every known skald (as `GET /api/skalds`)")
async def list_skalds_03x(service: ControllerService = Service) -> dict[str, Any]:
    return await blocking(service.list_skalds)


@router.put("/api/tasks/{task_id}/status", include_in_schema=False)  # documented by our route
async def set_status_either(
    task_id: str,
    body: Any = Body(...),
    service: ControllerService = Service,
    dispatcher: Dispatcher | None = MaybeDispatcher,
) -> Any:
    if not (isinstance(body, dict) and "lifecycleStatus" in body and "status" not in body):
        try:
            ours = StatusUpdate.model_validate(body)
        except ValidationError as exc:  # reported exactly as FastAPI reports our route's body
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from None
        return await tasks.set_status(task_id, ours, service, dispatcher)
    target = body["lifecycleStatus"]
    if target not in LEGACY_TARGETS:
        allowed = " or ".join(LEGACY_TARGETS)
        raise ApiError(
            422,
            "invalid_request",
            f"lifecycleStatus {target!r} cannot be requested; use {allowed} (or our `status`, which also pauses)",
            [{"field": "body.lifecycleStatus", "message": f"must be {allowed}"}],
        )
    await tasks.set_status(task_id, StatusUpdate(status=target), service, dispatcher)
    return {
        "success": True,
        "message": f"Task status updated to {target}",
        "data": {"taskId": task_id, "status": target},
    }


# ---- a dashboard served from a directory ---------------------------------------------------
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
_PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_FILE_HEADERS = {"Cache-Control": "no-cache"}


def dashboard_files(directory: Path) -> dict[str, Path]:
    """The servable files under ``directory`` by relative name; fixed at start-up, so no request
    path ever reaches the file system (nothing outside the directory, no symlink out of it)."""
    root = directory.resolve()
    return {
        path.relative_to(root).as_posix(): path
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in _MEDIA_TYPES and path.resolve().is_relative_to(root)
    }


def dashboard_router(directory: Path) -> tuple[APIRouter, APIRouter]:
    """Routes for ``/dashboard`` and ``/dashboard/`` (matched before ours) and for the rest of
    ``/dashboard/…`` (matched after ours, so our login page and its static files stay)."""
    files = dashboard_files(directory)
    index = files["index.html"]

    def page() -> Response:
        return FileResponse(index, media_type=_MEDIA_TYPES[".html"], headers=_PAGE_HEADERS)

    first, last = APIRouter(include_in_schema=False), APIRouter(include_in_schema=False)

    @first.get("/dashboard")
    @first.get("/dashboard/")
    async def dashboard_index() -> Response:
        return page()

    @last.get("/dashboard/{name:path}")
    async def dashboard_file(name: str) -> Response:
        path = files.get(name)
        if path is None:
            if "." in name.rsplit("/", 1)[-1]:
                return error_response(404, "not_found", f"no dashboard file {name!r}")
            return page()  # a route of the dashboard's own router (e.g. /dashboard/tasks)
        headers = _PAGE_HEADERS if path.suffix == ".html" else _FILE_HEADERS
        return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=headers)

    return first, last


def _in_front(app: FastAPI, router: APIRouter) -> None:
    before = len(app.router.routes)
    app.include_router(router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added


def install(app: FastAPI, dashboard_dir: str | None = None) -> None:
    """Add the 0.3.x routes to ``app`` (after all of ours are included)."""
    _in_front(app, router)
    if dashboard_dir:
        first, last = dashboard_router(Path(dashboard_dir))
        _in_front(app, first)
        app.include_router(last)
