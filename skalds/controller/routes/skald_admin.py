"""``PUT /api/skalds/{id}/schedulable``: cordon, drain or uncordon a node skald (see
:mod:`skalds.controller.cordon`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from skalds.controller.cordon import set_schedule
from skalds.controller.deps import blocking, dispatch_now, get_dispatcher, get_service
from skalds.controller.dispatcher import Dispatcher
from skalds.controller.schemas import ErrorResponse, SkaldSchedule, SkaldScheduled
from skalds.controller.service import ControllerService

router = APIRouter(
    prefix="/api/skalds",
    tags=["skalds"],
    responses={404: {"model": ErrorResponse, "description": "Not found"}, 422: {"model": ErrorResponse}},
)


@router.put(
    "/{skald_id}/schedulable",
    response_model=SkaldScheduled,
    summary="Cordon, drain or uncordon a node skald",
    description='`{"cordoned": true}`: no new tasks are dispatched to it, running ones stay. '
    '`{"cordoned": true, "drain": true}`: also its Passive tasks go back to dispatch and run on other '
    'nodes (each stops here first). `{"cordoned": false}`: it is given tasks again. Kept in the state '
    "cache (`skalds:{id}:cordoned`), across controller and skald restarts.",
)
async def set_schedulable(
    skald_id: str,
    body: SkaldSchedule,
    service: ControllerService = Depends(get_service),
    dispatcher: Dispatcher | None = Depends(get_dispatcher),
) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        moved = set_schedule(service, skald_id, cordoned=body.cordoned, drain=body.drain)
        if moved:
            dispatch_now(service, dispatcher, moved)
        return {**service.get_skald(skald_id), "drained": moved}

    return await blocking(work)
