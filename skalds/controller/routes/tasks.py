"""``/api/tasks``: list, read, create, update attachments, set status, deadline and placement
requirements, delete, heartbeat, classes.

Each handler does its blocking work in one worker-thread call (:func:`blocking`). After a change
that makes a task runnable (create, resume, retry) or may let a waiting task fit on a node (new
requirements) the same call runs a dispatch pass, so the task is assigned before the response is
sent instead of at the next sweep.

Creates are safe to retry: with an ``Idempotency-Key`` header a retry is answered with the task(s)
the first request created (200, ``Idempotent-Replayed: true``), and a client-chosen ``id`` makes a
retry a 409 ``task_exists``. Once a create is stored it answers 201 whatever fails after it (the
dispatch, a publish, the read-back): the sweep dispatches the task later.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Response

from skalds.controller.deps import blocking, dispatch_now, get_dispatcher, get_service
from skalds.controller.dispatcher import Dispatcher
from skalds.controller.schemas import (
    AttachmentsUpdate,
    DeadlineUpdate,
    ErrorResponse,
    RequirementsUpdate,
    StatusUpdate,
    TaskBatch,
    TaskBatchResult,
    TaskClassList,
    TaskCreate,
    TaskCreated,
    TaskHeartbeat,
    TaskHistory,
    TaskItem,
    TaskLogs,
    TaskPage,
    TaskUpdated,
)
from skalds.controller.service import MAX_PAGE_SIZE, ControllerService
from skalds.model.task import TaskLifecycleStatus

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Body too large"),
        (422, "Invalid input"),
        (503, "A backend cannot serve right now (retry later; nothing was changed)"),
    )
}


class ListOrder(str, Enum):
    OLDEST_FIRST = "createDateTime"
    NEWEST_FIRST = "-createDateTime"
    PRIORITY = "-priority"
    LOWEST_PRIORITY_FIRST = "priority"
    UPDATED_FIRST = "updateDateTime"
    UPDATED_LAST_FIRST = "-updateDateTime"
    STATUS = "lifecycleStatus"
    STATUS_DESCENDING = "-lifecycleStatus"


#: Highest page number accepted (keeps offsets within what every store can take).
MAX_PAGE = 1_000_000

router = APIRouter(prefix="/api/tasks", tags=["tasks"], responses=_ERRORS)
Service = Depends(get_service)
MaybeDispatcher = Depends(get_dispatcher)
IdempotencyKey = Header(
    None,
    alias="Idempotency-Key",
    description="Any unique string (a UUID): a retry with the same key and body is answered with the "
    "task(s) the first request created (200) instead of creating more; the same key with another "
    "body is a 422 `idempotency_key_reused`.",
)
#: The header that tells a client its retry was answered from the first request's result.
REPLAYED = "Idempotent-Replayed"
_REPLAY_DOC: dict[int | str, dict[str, Any]] = {200: {"description": "A retry with the same Idempotency-Key"}}


@router.get("", response_model=TaskPage, summary="List tasks (paginated, filtered)")
async def list_tasks(
    page: int = Query(1, ge=1, le=MAX_PAGE),
    page_size: int = Query(20, alias="pageSize", ge=1, le=MAX_PAGE_SIZE),
    status: str | None = Query(None, description="lifecycle status, or several separated by commas"),
    task_type: str | None = Query(None, alias="type", description="class name"),
    executor: str | None = Query(None, description="skald id"),
    q: str | None = Query(None, max_length=200, description="part of the task's id or name (case-sensitive)"),
    order: ListOrder = Query(
        ListOrder.OLDEST_FIRST,
        description="createDateTime (oldest first), -createDateTime (newest first), -priority (highest "
        "first, then oldest), priority, updateDateTime / -updateDateTime (least / most recently changed "
        "first), lifecycleStatus / -lifecycleStatus (status names A-Z / Z-A, then by age)",
    ),
    service: ControllerService = Service,
) -> dict[str, Any]:
    return await blocking(service.list_tasks, page, page_size, status, task_type, executor, q, order.value)


@router.get("/classes", response_model=TaskClassList, summary="Task classes the online skalds can run")
async def task_classes(service: ControllerService = Service) -> dict[str, Any]:
    return await blocking(service.task_classes)


@router.get("/{task_id}", response_model=TaskItem, summary="One task")
async def get_task(task_id: str, service: ControllerService = Service) -> dict[str, Any]:
    return await blocking(service.get_task, task_id)


@router.post(
    "",
    status_code=201,
    response_model=TaskCreated,
    summary="Create a task (dispatched at once)",
    responses=_REPLAY_DOC,
)
async def create_task(
    body: TaskCreate,
    response: Response,
    service: ControllerService = Service,
    dispatcher: Dispatcher | None = MaybeDispatcher,
    idempotency_key: str | None = IdempotencyKey,
) -> dict[str, Any]:
    def work() -> tuple[dict[str, Any], bool]:
        task, created, warnings = service.create_task_keyed(body, idempotency_key)
        if created:
            dispatch_now(service, dispatcher, [task.id])
        return {**service.stored_items([task])[0], "warnings": warnings}, created

    item, created = await blocking(work)
    if not created:
        response.status_code = 200
        response.headers[REPLAYED] = "true"
    response.headers["Location"] = f"/api/tasks/{item['id']}"
    return item


@router.post(
    "/batch",
    status_code=201,
    response_model=TaskBatchResult,
    summary="Create several tasks at once (all or none; dispatched at once)",
    responses=_REPLAY_DOC,
)
async def create_tasks(
    body: TaskBatch,
    response: Response,
    service: ControllerService = Service,
    dispatcher: Dispatcher | None = MaybeDispatcher,
    idempotency_key: str | None = IdempotencyKey,
) -> dict[str, Any]:
    def work() -> tuple[dict[str, Any], bool]:
        tasks, created, warnings = service.create_tasks_keyed(body.tasks, idempotency_key)
        if created:
            dispatch_now(service, dispatcher, [t.id for t in tasks])
        items = service.stored_items(tasks)
        return {"items": items, "total": len(items), "warnings": warnings}, created

    result, created = await blocking(work)
    if not created:
        response.status_code = 200
        response.headers[REPLAYED] = "true"
    return result


@router.put(
    "/{task_id}/attachments",
    response_model=TaskUpdated,
    summary="Update a task's attachments",
    description="Merged onto the stored ones and validated; its worker, if it runs, gets them as a hot update. "
    "A task that ended for good (Finished, Cancelled, Failed with no retry to come) answers 409 `task_ended` "
    "and nothing is stored: retry it first. When no online skald runs the task's class the attachments are "
    "stored unchecked and `warnings` says so.",
)
async def update_attachments(
    task_id: str, body: AttachmentsUpdate, service: ControllerService = Service
) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        task, warnings = service.update_attachments_checked(task_id, body.attachments)
        return {**service.task_item(task), "warnings": warnings}

    return await blocking(work)


@router.put(
    "/{task_id}/requirements",
    response_model=TaskUpdated,
    summary="Change a task's placement requirements",
    description='`requires` (resources one run uses, e.g. `{"gpu": 1}`) and / or `nodeSelector` (labels a '
    'node must have, e.g. `{"zone": "eu-1"}`), checked as on create; null falls back to the class\'s, a '
    "key left out is kept. A waiting (Created) task is placed by the new ones at once if a node fits, else "
    "its `placement` says why it still waits. A task already placed (Assigning, Running) is not moved: the "
    "new requirements apply the next time it is placed (a retry or a failover; a Paused task when resumed), "
    "and `warnings` says so. A task that ended for good answers 409 `task_ended`: retry it first.",
)
async def set_requirements(
    task_id: str,
    body: RequirementsUpdate,
    service: ControllerService = Service,
    dispatcher: Dispatcher | None = MaybeDispatcher,
) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        task, warnings = service.set_requirements(task_id, body.changes())
        if task.lifecycle_status == TaskLifecycleStatus.CREATED:
            dispatch_now(service, dispatcher, [task_id])
        return {**service.stored_items([task])[0], "warnings": warnings}

    return await blocking(work)


@router.put(
    "/{task_id}/status",
    response_model=TaskItem,
    summary="Cancel, pause, resume or retry a task",
    description="`Cancelled`, `Paused`, or `Created` / `Running`: resume a Paused task or retry a "
    "Failed / Cancelled / Finished one (fresh retry budget); the dispatcher then assigns it. A task whose "
    "deadline has passed cannot run again (409 `deadline_passed`): change it with `PUT /api/tasks/{id}/deadline`.",
)
async def set_status(
    task_id: str,
    body: StatusUpdate,
    service: ControllerService = Service,
    dispatcher: Dispatcher | None = MaybeDispatcher,
) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        task = service.set_status(task_id, body.status)
        if task.lifecycle_status == TaskLifecycleStatus.CREATED:
            dispatch_now(service, dispatcher, [task_id])
        return service.get_task(task_id)

    return await blocking(work)


@router.put(
    "/{task_id}/deadline",
    response_model=TaskItem,
    summary="Set or clear a task's deadline",
    description="`deadlineDateTime`: ms since the epoch, in the future, or null for none. Any status: a task "
    "cancelled because its deadline passed can be retried once it has a later one (a retry or resume "
    "past the deadline answers 409 `deadline_passed`).",
)
async def set_deadline(task_id: str, body: DeadlineUpdate, service: ControllerService = Service) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        return service.task_item(service.set_deadline(task_id, body.deadlineDateTime))

    return await blocking(work)


@router.delete("/{task_id}", status_code=204, response_class=Response, summary="Delete a task (cancelled first)")
async def delete_task(task_id: str, service: ControllerService = Service) -> Response:
    await blocking(service.delete_task, task_id)
    return Response(status_code=204)


@router.get("/{task_id}/heartbeat", response_model=TaskHeartbeat, summary="Heartbeat, liveness and recent history")
async def task_heartbeat(task_id: str, service: ControllerService = Service) -> dict[str, Any]:
    return await blocking(service.heartbeat_info, task_id)


@router.get("/{task_id}/history", response_model=TaskHistory, summary="Status changes, oldest first")
async def task_history(task_id: str, service: ControllerService = Service) -> dict[str, Any]:
    return await blocking(service.task_history, task_id)


@router.get("/{task_id}/logs", response_model=TaskLogs, summary="Recent log lines of the task's workers")
async def task_logs(
    task_id: str,
    after: int | None = Query(None, ge=0, le=2**62, description="only lines after this seq (the lastSeq you got)"),
    limit: int = Query(200, ge=1, le=500, description="at most this many lines (the newest)"),
    service: ControllerService = Service,
) -> dict[str, Any]:
    return await blocking(service.task_logs, task_id, after, limit)
