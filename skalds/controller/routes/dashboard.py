"""The dashboard: one HTML shell at ``/`` and ``/dashboard``, its login page, its static files.

Everything the dashboard shows it reads from the public API and the SSE streams, so this module
only serves files from :mod:`skalds.controller.dashboard` (shipped in the wheel; no build step).
Static files are served from a fixed list made at import time, never from a path built out of the
request, so nothing outside the package directory can be reached. Pages carry a strict Content
Security Policy: scripts, styles and connections from this origin only, no framing — also when
an HTML file is fetched by its static path (and :mod:`skalds.controller.hardening` adds the frame
rules to every other HTML response).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from skalds.controller.errors import error_response

STATIC_DIR = Path(__file__).resolve().parent.parent / "dashboard" / "static"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

#: The files that may be served, by name (nested names use "/").
STATIC_FILES: dict[str, Path] = {
    path.relative_to(STATIC_DIR).as_posix(): path
    for path in sorted(STATIC_DIR.rglob("*"))
    if path.is_file() and path.suffix in _MEDIA_TYPES
}

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _page(name: str) -> Response:
    path = STATIC_FILES.get(name)
    if path is None:  # pragma: no cover - a broken install
        return error_response(500, "internal_error", f"dashboard file {name} is missing from the installation")
    return FileResponse(path, media_type=_MEDIA_TYPES[".html"], headers=_PAGE_HEADERS)


@router.get("/")
async def root() -> Response:
    return _page("index.html")


@router.get("/dashboard")
async def dashboard() -> Response:
    return _page("index.html")


@router.get("/dashboard/")
async def dashboard_slash() -> Response:
    return RedirectResponse("/dashboard", status_code=308)


@router.get("/dashboard/login")
async def login_page() -> Response:
    return _page("login.html")


@router.get("/dashboard/static/{name:path}")
async def static_file(name: str) -> Response:
    path = STATIC_FILES.get(name)
    if path is None:
        return error_response(404, "not_found", f"no dashboard file {name!r}")
    if path.suffix == ".html":  # a page under another path is still a page: same policy, no framing
        return FileResponse(path, media_type=_MEDIA_TYPES[".html"], headers=_PAGE_HEADERS)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=headers)
