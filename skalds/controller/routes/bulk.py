"""``POST /api/tasks/bulk``: cancel, pause, resume, retry or delete every task a filter matches.

The filter takes the names of ``GET /api/tasks`` (``status``, ``type``, ``executor``, ``q``) plus
``ids``; at most :data:`~skalds.controller.bulk.BULK_LIMIT` tasks per call (a filter matching more
is a 422 and changes nothing). Each task goes through the single-task operation; the answer says
per task what happened. ``dryRun`` answers the same without changing anything.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from skalds.controller.bulk import BULK_LIMIT, filter_of, run_bulk
from skalds.controller.deps import blocking, dispatch_now, get_dispatcher, get_service
from skalds.controller.dispatcher import Dispatcher
from skalds.controller.schemas import ErrorResponse
from skalds.controller.service import ControllerService

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (413, "Body too large"),
        (422, f"Invalid input, no filter, or a filter matching more than {BULK_LIMIT} tasks (nothing changed)"),
        (503, "A backend cannot serve right now (retry later)"),
    )
}
router = APIRouter(prefix="/api/tasks", tags=["tasks"], responses=_ERRORS)


class BulkFilterBody(BaseModel):
    """Which tasks (every given criterion must hold; at least one is required)."""

    model_config = ConfigDict(extra="forbid")

    status: str | list[str] | None = Field(
        None, description="lifecycle status, several separated by commas, or a list of them"
    )
    type: str | None = Field(
        None, max_length=200, validation_alias=AliasChoices("type", "className"), description="class name"
    )
    executor: str | None = Field(None, max_length=200, description="skald id")
    q: str | None = Field(
        None,
        max_length=200,
        validation_alias=AliasChoices("q", "search"),
        description="part of the task's id or name (case-sensitive)",
    )
    ids: list[str] | None = Field(None, max_length=BULK_LIMIT, description="these task ids")


class BulkRequest(BaseModel):
    """A bulk action on the tasks a filter matches."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["cancel", "pause", "resume", "retry", "delete"] = Field(
        ...,
        description="cancel, pause, resume (Paused tasks), retry (Failed / Cancelled / Finished tasks) or delete",
    )
    filter: BulkFilterBody
    dryRun: bool = Field(False, description="say what would happen, change nothing")


class BulkItem(BaseModel):
    id: str
    status: str = Field(..., description="the task's status before the action")
    outcome: Literal["done", "skipped", "failed"] = Field(
        ..., description="done (or would be, in a dry run), skipped (does not apply: see reason), failed"
    )
    reason: str | None = None


class BulkResponse(BaseModel):
    action: str
    dryRun: bool
    matched: int = Field(..., description="tasks the filter matched")
    done: int
    skipped: int
    failed: int = Field(..., description="tasks a backend could not change right now (retry the call)")
    items: list[BulkItem]


@router.post(
    "/bulk",
    response_model=BulkResponse,
    summary=f"Cancel, pause, resume, retry or delete the tasks a filter matches (at most {BULK_LIMIT})",
    description=f"At most {BULK_LIMIT} tasks per call: a filter that matches more is refused (422, "
    "nothing changed). Each task goes through the same operation as the single-task routes; a task "
    "the action does not apply to (a Finished task cannot be paused) is skipped with the reason. "
    "`dryRun: true` answers the same without changing anything.",
)
async def bulk(
    body: BulkRequest,
    service: ControllerService = Depends(get_service),
    dispatcher: Dispatcher | None = Depends(get_dispatcher),
) -> dict[str, Any]:
    f = body.filter
    which = filter_of(f.status, f.type, f.executor, f.q, f.ids)

    def work() -> dict[str, Any]:
        result = run_bulk(service, body.action, which, dry_run=body.dryRun)
        if result.runnable:
            dispatch_now(service, dispatcher, result.runnable)
        return result.as_dict()

    return await blocking(work)
