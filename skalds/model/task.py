"""The task record and its lifecycle state machine.

JSON uses the camelCase aliases (``className``, ``lifecycleStatus``...), as Skalds 0.3.x does.
Every status change goes through :func:`check_transition`; stores call it before they write.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from skalds.errors import IllegalTransition
from skalds.model.resources import NodeSelector, Requires


def now_ms() -> int:
    """Wall-clock time in milliseconds, the unit of every timestamp in a task."""
    return int(time.time() * 1000)


class ModeEnum(str, Enum):
    """How a task reaches its executor."""

    ACTIVE = "Active"
    PASSIVE = "Passive"
    PASSIVE_PROCESS = "PassiveProcess"


class TaskLifecycleStatus(str, Enum):
    """Where a task is in its life."""

    CREATED = "Created"
    ASSIGNING = "Assigning"
    RUNNING = "Running"
    PAUSED = "Paused"
    FINISHED = "Finished"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


S = TaskLifecycleStatus

#: Allowed status changes. A task goes back to Created when it must be dispatched again
#: (resume, retry, failover); Assigning means "owned by an executor, not yet running".
TRANSITIONS: dict[TaskLifecycleStatus, frozenset[TaskLifecycleStatus]] = {
    S.CREATED: frozenset({S.ASSIGNING, S.PAUSED, S.CANCELLED, S.FAILED}),
    S.ASSIGNING: frozenset({S.ASSIGNING, S.RUNNING, S.CREATED, S.PAUSED, S.CANCELLED, S.FAILED, S.FINISHED}),
    S.RUNNING: frozenset({S.ASSIGNING, S.CREATED, S.PAUSED, S.FINISHED, S.FAILED, S.CANCELLED}),
    S.PAUSED: frozenset({S.CREATED, S.ASSIGNING, S.CANCELLED}),
    S.FINISHED: frozenset({S.CREATED, S.ASSIGNING}),
    S.FAILED: frozenset({S.CREATED, S.ASSIGNING, S.CANCELLED}),
    S.CANCELLED: frozenset({S.CREATED, S.ASSIGNING}),
}

#: Statuses in which an executor is expected to run the task.
LIVE_STATUSES = frozenset({S.ASSIGNING, S.RUNNING})
#: Statuses a task does not leave on its own.
FINAL_STATUSES = frozenset({S.FINISHED, S.FAILED, S.CANCELLED})
#: Statuses of tasks not yet final (Created, Assigning, Running, Paused), in declaration order.
OPEN_STATUSES: tuple[TaskLifecycleStatus, ...] = tuple(s for s in TaskLifecycleStatus if s not in FINAL_STATUSES)


def check_transition(task_id: str, current: TaskLifecycleStatus, target: TaskLifecycleStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is allowed."""
    if current == target and current != S.ASSIGNING:
        return
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none"
        raise IllegalTransition(
            f"task {task_id!r}: cannot change status from {current.value} to {target.value} "
            f"(allowed from {current.value}: {allowed})"
        )


def statuses_named(text: str) -> tuple[TaskLifecycleStatus, ...]:
    """``"Running,paused"`` → statuses (case-insensitive, repeats dropped); ValueError naming the
    allowed ones for an unknown name."""
    by_lower = {s.value.lower(): s for s in S}
    found = []
    for part in text.split(","):
        status = by_lower.get(part.strip().lower())
        if status is None:
            raise ValueError(f"unknown status {part.strip()!r} (use one of {', '.join(s.value for s in S)})")
        found.append(status)
    return tuple(dict.fromkeys(found))


#: Status changes a task record keeps (the oldest go first).
STATUS_HISTORY_LIMIT = 50


class StatusChange(BaseModel):
    """One entry of a task's status history: what it became, when, where, and why (when it ended)."""

    model_config = ConfigDict(frozen=True)

    timestamp: int
    status: TaskLifecycleStatus
    executor: str | None = None
    epoch: int = 0
    detail: str | None = None
    #: The record's version this change was written at (orders changes within one millisecond).
    version: int = 0


class Task(BaseModel):
    """A durable task record. ``attachments`` holds the worker's model (or its JSON as a dict)."""

    model_config = ConfigDict(populate_by_name=True, use_enum_values=False, extra="ignore")

    id: str = Field(..., min_length=1, max_length=200)
    class_name: str = Field(..., alias="className", min_length=1)
    source: str = "API"
    name: str | None = None
    description: str | None = None
    executor: str | None = None
    dependencies: list[str] | None = None
    mode: ModeEnum = ModeEnum.PASSIVE
    is_persistent: bool = Field(False, alias="isPersistent")
    create_date_time: int = Field(default_factory=now_ms, alias="createDateTime")
    update_date_time: int = Field(default_factory=now_ms, alias="updateDateTime")
    deadline_date_time: int | None = Field(None, alias="deadlineDateTime")
    #: Not dispatched before this time (ms since the epoch); None: at once.
    not_before: int | None = Field(None, alias="notBefore")
    #: Seconds a run may last before its worker is stopped (release runs) and the task fails;
    #: None: the class's ``max_run_time``, if any.
    max_run_time: float | None = Field(None, alias="maxRunTime", gt=0, le=366 * 86400)
    #: Resources one run uses (e.g. ``{"gpu": 1}``); None: what its class declares.
    requires: Requires = None
    #: Labels a node must have to run it (e.g. ``{"zone": "eu-1"}``); None: its class's selector.
    node_selector: NodeSelector = Field(None, alias="nodeSelector")
    lifecycle_status: TaskLifecycleStatus = Field(S.CREATED, alias="lifecycleStatus")
    priority: int = Field(0, ge=0, le=10)
    attachments: Any = None
    #: Bumped on every assignment: an executor runs the task only at the epoch it was given.
    epoch: int = 0
    #: Bumped on every write: the compare-and-set token of the stores.
    version: int = 0
    #: Text of the last exception, when the task failed.
    exception: str | None = None
    #: What the worker's main returned (JSON), once the task finished; cleared when it runs again.
    result: Any = None
    #: How many times the task has been retried after a failure.
    retries: int = 0
    #: Every status change, oldest first (the last :data:`STATUS_HISTORY_LIMIT`), written by the
    #: store together with the change itself.
    status_history: list[StatusChange] = Field(default_factory=list, alias="statusHistory")
    #: The ``Idempotency-Key`` of the API request that created the task and a digest of that
    #: request's body: a retry with the same key is answered with this task, never a copy.
    idempotency_key: str | None = Field(None, alias="idempotencyKey")
    request_digest: str | None = Field(None, alias="requestDigest")

    @field_validator("attachments", mode="before")
    @classmethod
    def _attachments_json(cls, value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json", by_alias=True)
        return value

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON form, by alias, as stores and events carry it."""
        return self.model_dump(mode="json", by_alias=True)

    @property
    def status(self) -> TaskLifecycleStatus:
        return self.lifecycle_status


def ended_for_good(task: Task, retry_budget: int) -> bool:
    """Whether nothing runs ``task`` again unless someone retries it: Finished, Cancelled, or
    Failed with no retry of the dispatcher's to come (:func:`retried_later`). Changing such a
    task (its attachments, where it may run) can no longer matter."""
    return task.lifecycle_status in FINAL_STATUSES and not retried_later(task, retry_budget)


def retried_later(task: Task, retry_budget: int, now: int | None = None) -> bool:
    """Whether the controller's dispatcher will still retry this Failed task by itself: a Passive
    task with retries left (``retries`` below ``retry_budget``, ``TASK_WORKER_RETRY``) whose deadline
    has not passed. Until then it has not failed for good. (The dispatcher also holds back a task
    one of whose dependencies can never finish; see :mod:`skalds.controller.dispatcher`.)"""
    if task.lifecycle_status != S.FAILED or task.mode != ModeEnum.PASSIVE or task.retries >= retry_budget:
        return False
    deadline = task.deadline_date_time
    return deadline is None or deadline > (now_ms() if now is None else now)
