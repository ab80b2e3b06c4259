"""``/api/system``: health (for probes), status (what this controller runs), dashboard summary."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from skalds import __version__
from skalds.controller.deps import blocking, get_dispatcher, get_service
from skalds.controller.dispatcher import Dispatcher
from skalds.controller.schemas import ActivityList, DashboardSummary, Timeline
from skalds.controller.service import ControllerService
from skalds.model.task import now_ms
from skalds.utils.logging import mask_secrets

router = APIRouter(prefix="/api/system", tags=["system"])
Service = Depends(get_service)


@router.get("/health", summary="Liveness and backend reachability (503 when a backend fails)")
async def health(service: ControllerService = Service) -> JSONResponse:
    checks = await blocking(service.check_backends)
    ok = all(v == "ok" for v in checks.values())
    body = {
        "status": "ok" if ok else "degraded",
        "version": __version__,
        "mode": service.config.system_controller_mode.value,
        "time": now_ms(),
        "checks": checks,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/status", summary="What this controller runs, its backends and loops")
async def status(
    request: Request, service: ControllerService = Service, dispatcher: Dispatcher | None = Depends(get_dispatcher)
) -> dict[str, Any]:
    summary = await blocking(service.dashboard_summary)
    config = service.config
    started: int = request.app.state.started_at
    return {
        "status": "ok",
        "version": __version__,
        "mode": config.system_controller_mode.value,
        "startedAt": started,
        "uptimeSeconds": round((now_ms() - started) / 1000, 3),
        "backends": {
            "store": mask_secrets(config.resolved_store_url()),
            "bus": mask_secrets(config.resolved_bus_url()),
            "cache": mask_secrets(config.resolved_cache_url()),
        },
        "dispatcher": dispatcher.status() if dispatcher is not None else None,
        "loops": dict(request.app.state.loops),
        "auth": "token" if request.app.state.auth.enforced else "open",
        "summary": summary,
    }


@router.get("/dashboard/summary", response_model=DashboardSummary, summary="Counts for the overview")
async def dashboard_summary(service: ControllerService = Service) -> dict[str, Any]:
    return await blocking(service.dashboard_summary)


@router.get("/activity", response_model=ActivityList, summary="Recent status changes of all tasks, newest first")
async def activity(limit: int = Query(50, ge=1, le=500), service: ControllerService = Service) -> dict[str, Any]:
    return await blocking(service.activity, limit)


@router.get("/timeline", response_model=Timeline, summary="Running and Failed task counts over time")
async def timeline(minutes: int = Query(60, ge=1, le=24 * 60), service: ControllerService = Service) -> dict[str, Any]:
    return await blocking(service.timeline, minutes)
