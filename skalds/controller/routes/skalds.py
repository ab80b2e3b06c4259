"""``/api/skalds``: the fleet as the state cache describes it (online = heartbeat lease present)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from skalds.controller.deps import blocking, get_service
from skalds.controller.routes.tasks import MAX_PAGE
from skalds.controller.schemas import ErrorResponse, SkaldItem, SkaldList, TaskPage
from skalds.controller.service import MAX_PAGE_SIZE, ControllerService

router = APIRouter(
    prefix="/api/skalds",
    tags=["skalds"],
    responses={404: {"model": ErrorResponse, "description": "Not found"}, 422: {"model": ErrorResponse}},
)
Service = Depends(get_service)


@router.get("", response_model=SkaldList, summary="Every known skald, online or not")
async def list_skalds(service: ControllerService = Service) -> dict[str, Any]:
    return await blocking(service.list_skalds)


@router.get("/{skald_id}", response_model=SkaldItem, summary="One skald")
async def get_skald(skald_id: str, service: ControllerService = Service) -> dict[str, Any]:
    return await blocking(service.get_skald, skald_id)


@router.get("/{skald_id}/status", summary="Whether a skald is online")
async def skald_status(skald_id: str, service: ControllerService = Service) -> dict[str, Any]:
    item = await blocking(service.get_skald, skald_id)
    return {k: item[k] for k in ("id", "status", "lastHeartbeat", "heartbeat")}


@router.get("/{skald_id}/tasks", response_model=TaskPage, summary="Tasks the store gives this skald")
async def skald_tasks(
    skald_id: str,
    page: int = Query(1, ge=1, le=MAX_PAGE),
    page_size: int = Query(20, alias="pageSize", ge=1, le=MAX_PAGE_SIZE),
    service: ControllerService = Service,
) -> dict[str, Any]:
    return await blocking(service.skald_tasks, skald_id, page, page_size)
