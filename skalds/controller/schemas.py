"""Request and response bodies of the REST API, as pydantic models.

They document the API in OpenAPI and validate what comes in. Response models allow extra fields
("more fields may be added, none renamed"), so a task item carries every Task field by alias
besides the 0.3.x names ``type`` / ``status``. Attribute names are the wire names (camelCase) on
purpose: these models exist only to describe JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from skalds.model.ids import MAX_TASK_ID_LENGTH, TASK_ID_CHARS, TASK_ID_PATTERN
from skalds.model.resources import NodeSelector, Requires

#: How deep attachments may nest objects and arrays (the attachments object itself is level 1).
#: Far beyond any real settings object, and far below where validating, storing or encoding the
#: value would exhaust the interpreter's recursion limit.
MAX_ATTACHMENT_DEPTH = 64
#: The error type (and API error code) of attachments that are unusable whatever the class.
ATTACHMENTS_ERROR = "invalid_attachments"


def _no_nul(value: str) -> str:
    # PostgreSQL cannot store a NUL in text, and no name or id needs one.
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (\\u0000)")
    return value


#: A string that may be stored anywhere: no NUL.
Text = Annotated[str, AfterValidator(_no_nul)]


def _storable_attachments(value: Any) -> Any:
    """Attachments every store can keep and every process can decode: nested at most
    :data:`MAX_ATTACHMENT_DEPTH` levels, no NUL in any key or string. Walked without recursion,
    so a hostile depth cannot exhaust the stack here."""
    pending: list[tuple[Any, int, str]] = [(value, 1, "attachments")]
    while pending:
        item, depth, where = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise PydanticCustomError(
                    ATTACHMENTS_ERROR, "{where}: a string must not contain a NUL character (\\u0000)", {"where": where}
                )
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_ATTACHMENT_DEPTH:
            raise PydanticCustomError(
                ATTACHMENTS_ERROR,
                "attachments nest deeper than {limit} levels (at {where})",
                {"limit": MAX_ATTACHMENT_DEPTH, "where": where},
            )
        if isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    raise PydanticCustomError(
                        ATTACHMENTS_ERROR, "{where}: a key must not contain a NUL character (\\u0000)", {"where": where}
                    )
                pending.append((child, depth + 1, f"{where}.{key}" if depth < 8 else where))
        else:
            pending.extend((child, depth + 1, f"{where}[{n}]" if depth < 8 else where) for n, child in enumerate(item))
    return value


#: Attachments as the API takes them (see :func:`_storable_attachments`).
Attachments = Annotated[dict[str, Any], AfterValidator(_storable_attachments)]

#: Targets ``PUT /api/tasks/{id}/status`` accepts. ``Created`` and ``Running`` both mean "run it
#: again": resume a Paused task, retry a Failed / Cancelled / Finished one (with a fresh retry
#: budget). The dispatcher then assigns it; ``Running`` is the status it will reach.
STATUS_TARGETS = ("Cancelled", "Paused", "Created", "Running")


class TaskCreate(BaseModel):
    """A task by alias, as ``POST /api/tasks`` takes it. Fields the system owns are ignored."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_TASK_ID_LENGTH,
        pattern=TASK_ID_PATTERN,
        description=f"1 to {MAX_TASK_ID_LENGTH} of the characters {TASK_ID_CHARS}; the server picks one when absent",
    )
    className: Text = Field(..., min_length=1, max_length=200)
    attachments: Attachments
    source: Text = Field("API", max_length=100)
    name: Text | None = Field(None, max_length=500)
    description: Text | None = Field(None, max_length=5000)
    dependencies: list[Text] | None = Field(None, max_length=1000)
    priority: int = Field(0, ge=0, le=10)
    deadlineDateTime: int | None = Field(None, ge=0, description="ms since the epoch; cancelled once passed")
    notBefore: int | None = Field(
        None, ge=0, description="ms since the epoch; the dispatcher does not start the task before it"
    )
    maxRunTime: float | None = Field(
        None, gt=0, le=366 * 86400, description="seconds one run may last; past it the worker is stopped and it fails"
    )
    isPersistent: bool = False
    requires: Requires = Field(
        None, description='resources one run uses, e.g. {"gpu": 1}; replaces what the class declares'
    )
    nodeSelector: NodeSelector = Field(
        None, description='labels a node must have, e.g. {"zone": "eu-1"}; replaces the class\'s selector'
    )


#: Tasks one ``POST /api/tasks/batch`` may create.
MAX_BATCH = 1000


class TaskBatch(BaseModel):
    """Several tasks to create at once (all or none)."""

    tasks: list[TaskCreate] = Field(..., min_length=1, max_length=MAX_BATCH)


class AttachmentsUpdate(BaseModel):
    """New attachments, merged onto the stored ones; the result must match the class's schema."""

    attachments: Attachments


class StatusUpdate(BaseModel):
    """``Cancelled``, ``Paused``, or ``Created`` / ``Running`` (resume a Paused task, retry an ended one)."""

    status: str = Field(..., examples=list(STATUS_TARGETS))


class DeadlineUpdate(BaseModel):
    """A task's new deadline (``PUT /api/tasks/{id}/deadline``): a time in the future, or null for none."""

    model_config = ConfigDict(extra="forbid")

    deadlineDateTime: int | None = Field(
        ..., ge=0, le=2**53, description="ms since the epoch, in the future; null: no deadline"
    )


class RequirementsUpdate(BaseModel):
    """A task's new placement requirements (``PUT /api/tasks/{id}/requirements``). A key left out
    keeps what the task has; null falls back to its class's; ``{}`` asks for nothing (whatever the
    class declares)."""

    model_config = ConfigDict(extra="forbid")

    requires: Requires = Field(
        None, description='resources one run uses, e.g. {"gpu": 1}; null: the class\'s; left out: unchanged'
    )
    nodeSelector: NodeSelector = Field(
        None, description='labels a node must have, e.g. {"zone": "eu-1"}; null: the class\'s; left out: unchanged'
    )

    def changes(self) -> dict[str, Any]:
        """The fields given, by Task field name (``requires``, ``node_selector``)."""
        names = {"requires": "requires", "nodeSelector": "node_selector"}
        return {names[key]: getattr(self, key) for key in names if key in self.model_fields_set}


class TaskUsage(BaseModel):
    """A running task's worker process, sampled with each skald heartbeat."""

    cpuPercent: float | None = Field(None, description="percent of one core since the last sample")
    memoryBytes: int | None = Field(None, description="resident memory")


class TaskItem(BaseModel):
    """One task: the 0.3.x fields first, then every other Task field by alias."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: str
    status: str
    executor: str | None = None
    createDateTime: int
    updateDateTime: int
    attachments: Any = None
    heartbeat: int | None = None
    error: str | None = None
    exception: str | None = None
    priority: int = 0
    usage: TaskUsage | None = Field(None, description="CPU and memory of its worker process while it runs")


#: What a create's ``warnings`` say.
WARNINGS_DOC = (
    "what to know about tasks stored anyway: a class no online skald runs yet (the task waits "
    "for one; its attachments could not be validated)"
)


class TaskCreated(TaskItem):
    """The task just created, and warnings about it."""

    warnings: list[str] = Field(default_factory=list, description=WARNINGS_DOC)


class TaskUpdated(TaskItem):
    """The task as a change left it, and warnings about it."""

    warnings: list[str] = Field(
        default_factory=list,
        description="what to know about the change: attachments stored unchecked (no online skald runs the "
        "class), requirements that apply only the next time the task is placed",
    )


class TaskBatchResult(BaseModel):
    items: list[TaskItem]
    total: int
    warnings: list[str] = Field(default_factory=list, description=WARNINGS_DOC + "; each names its tasks[i]")


class TaskPage(BaseModel):
    items: list[TaskItem]
    total: int
    page: int
    pageSize: int


class SkaldItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    type: str
    status: str
    lastHeartbeat: int | None = None
    supportedTasks: list[str] = Field(default_factory=list)
    currentTasks: list[str] = Field(default_factory=list)
    heartbeat: int | None = None
    taskCount: int = 0
    cordoned: bool = Field(False, description="no new tasks are dispatched to it")
    draining: bool = Field(False, description="cordoned, and its Passive tasks are moved to other nodes")
    cordonedSince: int | None = Field(None, description="ms since the epoch")


class SkaldSchedule(BaseModel):
    """Whether the dispatcher may give a node skald tasks (``PUT /api/skalds/{id}/schedulable``)."""

    model_config = ConfigDict(extra="forbid")

    cordoned: bool = Field(..., description="true: no new tasks for it (running ones stay); false: schedulable again")
    drain: bool = Field(False, description="with cordoned: also move its Passive tasks to other nodes")


class SkaldScheduled(SkaldItem):
    """The skald after the change, and the tasks moved off it now."""

    drained: list[str] = Field(default_factory=list, description="ids of the tasks moved back to dispatch")


class SkaldList(BaseModel):
    items: list[SkaldItem]
    total: int


class TaskClass(BaseModel):
    className: str
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    skalds: list[str] = Field(default_factory=list)

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class TaskClassList(BaseModel):
    items: list[TaskClass]
    total: int


class HeartbeatSample(BaseModel):
    timestamp: int
    heartbeat: int | None = None


class TaskHeartbeat(BaseModel):
    taskId: str
    heartbeat: int | None = None
    status: str
    isAlive: bool
    error: str | None = None
    exception: str | None = None
    lastUpdate: int | None = None
    heartbeatHistory: list[HeartbeatSample] = Field(default_factory=list)


class StatusHistoryItem(BaseModel):
    timestamp: int
    status: str
    executor: str | None = None
    epoch: int = 0
    detail: str | None = Field(None, description="why it ended (Failed / Cancelled)")


class TaskHistory(BaseModel):
    taskId: str
    items: list[StatusHistoryItem]


class LogLine(BaseModel):
    seq: int
    timestamp: int
    level: str
    message: str


class TaskLogs(BaseModel):
    taskId: str
    lines: list[LogLine]
    lastSeq: int = Field(..., description="pass it as `after` to get only newer lines")


class ActivityItem(BaseModel):
    timestamp: int
    kind: str = Field(
        ...,
        description="created, assigned, running, paused, resumed, finished, failed, cancelled, retried or failover",
    )
    taskId: str
    name: str | None = None
    className: str | None = None
    executor: str | None = None
    detail: str | None = None


class ActivityList(BaseModel):
    items: list[ActivityItem]


class TimelinePoint(BaseModel):
    timestamp: int
    running: int
    failed: int


class Timeline(BaseModel):
    intervalMs: int
    points: list[TimelinePoint]


class DashboardSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    totalSkalds: int
    onlineSkalds: int
    totalTasks: int
    runningTasks: int
    finishedTasks: int
    failedTasks: int
    assigningTasks: int
    cancelledTasks: int
    nodeSkalds: int
    edgeSkalds: int


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    """The shape of every error response."""

    error: ErrorInfo
