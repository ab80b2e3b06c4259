"""Bulk actions: cancel, pause, resume, retry or delete every task a filter matches.

One call acts on at most :data:`BULK_LIMIT` tasks, so it cannot hold the controller for long; a
filter that matches more is refused (nothing changed) and must be narrowed. Each task goes through
the same :class:`~skalds.controller.service.ControllerService` operation as the single-task routes
(the state machine decides, the same events go out); a task the action does not apply to is
skipped with the reason, and one the store cannot take right now is reported as failed. A dry run
reads the same tasks and says what would happen without changing anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from skalds.backends.store.base import TaskQuery
from skalds.controller.service import ControllerService, parse_statuses
from skalds.errors import BackendUnavailable, IllegalTransition, InvalidRequest, SkaldsError
from skalds.model.task import FINAL_STATUSES, Task, TaskLifecycleStatus, check_transition

S = TaskLifecycleStatus

#: Most tasks one bulk call acts on.
BULK_LIMIT = 1000
#: What a bulk call can do, and the past tense its reasons use.
ACTIONS: dict[str, str] = {
    "cancel": "cancelled",
    "pause": "paused",
    "resume": "resumed",
    "retry": "retried",
    "delete": "deleted",
}
_TARGET = {"cancel": S.CANCELLED, "pause": S.PAUSED}


def _no_filter(which: TaskQuery) -> bool:
    return not (which.statuses or which.class_name or which.executor or which.search or which.ids is not None)


@dataclass
class BulkResult:
    action: str
    dry_run: bool
    items: list[dict[str, Any]] = field(default_factory=list)
    #: Tasks whose status changed to Created (resumed, retried): the caller dispatches them.
    runnable: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for i in self.items if i["outcome"] == outcome)

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "dryRun": self.dry_run,
            "matched": len(self.items),
            "done": self.count("done"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "items": self.items,
        }


def skip_reason(action: str, task: Task) -> str | None:
    """Why ``action`` does not apply to ``task`` as it is now, or None when it does."""
    status = task.lifecycle_status
    if action == "delete":
        return None
    if action == "resume":
        return None if status == S.PAUSED else f"not Paused ({status.value}): resume applies to Paused tasks"
    if action == "retry":
        if status in FINAL_STATUSES:
            return None
        return f"not ended ({status.value}): retry applies to Failed, Cancelled and Finished tasks"
    target = _TARGET[action]
    if status == target:
        return f"already {target.value}"
    try:
        check_transition(task.id, status, target)
    except IllegalTransition:
        return f"a {status.value} task cannot be {ACTIONS[action]}"
    return None


def run_bulk(
    service: ControllerService,
    action: str,
    which: TaskQuery,
    *,
    dry_run: bool = False,
    limit: int = BULK_LIMIT,
) -> BulkResult:
    """Apply ``action`` to every task ``which`` matches (its filters; oldest first, at most
    ``limit``); see the module's docstring.

    Raises :class:`InvalidRequest` for an unknown action, an empty filter, or a filter that
    matches more than ``limit`` tasks — before anything is changed.
    """
    if action not in ACTIONS:
        raise InvalidRequest(
            f"unknown bulk action {action!r} (use one of {', '.join(ACTIONS)})",
            [{"field": "body.action", "message": f"must be one of {', '.join(ACTIONS)}"}],
        )
    if _no_filter(which):
        raise InvalidRequest(
            "a bulk action needs a filter: give at least one of status, type, executor, q or ids",
            [{"field": "body.filter", "message": "give at least one of status, type, executor, q, ids"}],
        )
    page = service.store.list(replace(which, order="createDateTime", offset=0, limit=limit))
    if page.total > limit:
        raise InvalidRequest(
            f"the filter matches {page.total} tasks; one bulk call acts on at most {limit}: "
            "narrow the filter (status, type, executor, q, ids) and call again",
            [{"field": "body.filter", "message": f"matches {page.total} tasks, at most {limit} allowed"}],
        )
    result = BulkResult(action, dry_run)
    outage: str | None = None
    for task in page.items:
        item: dict[str, Any] = {"id": task.id, "status": task.lifecycle_status.value, "outcome": "done"}
        result.items.append(item)
        reason = skip_reason(action, task)
        if reason is not None:
            item.update(outcome="skipped", reason=reason)
            continue
        if dry_run:
            continue
        if outage is not None:
            item.update(outcome="failed", reason=f"not attempted: {outage}")
            continue
        try:
            _apply(service, action, task.id, result)
        except BackendUnavailable as exc:
            outage = str(exc)
            item.update(outcome="failed", reason=outage)
        except SkaldsError as exc:  # changed meanwhile: gone, a concurrent writer, the state machine
            item.update(outcome="skipped", reason=str(exc))
    return result


def _apply(service: ControllerService, action: str, task_id: str, result: BulkResult) -> None:
    if action == "delete":
        service.delete_task(task_id)
        return
    target = {"cancel": "Cancelled", "pause": "Paused"}.get(action, "Created")
    task = service.set_status(task_id, target)
    if task.lifecycle_status == S.CREATED:
        result.runnable.append(task_id)


def filter_of(
    status: str | Sequence[str] | None,
    class_name: str | None,
    executor: str | None,
    search: str | None,
    ids: Sequence[str] | None,
) -> TaskQuery:
    """The filters of a bulk call from the API's names (``status``: one, several separated by commas,
    or a list); InvalidRequest naming the allowed statuses for an unknown one."""
    text = status if status is None or isinstance(status, str) else ",".join(status)
    try:
        statuses = parse_statuses(text) if text else None
    except InvalidRequest as exc:
        details = [{**d, "field": "body.filter.status"} for d in exc.details or []]
        raise InvalidRequest(str(exc), details or None) from None
    return TaskQuery(
        statuses=statuses,
        class_name=class_name or None,
        executor=executor or None,
        search=search or None,
        ids=tuple(dict.fromkeys(ids)) if ids is not None else None,
    )
