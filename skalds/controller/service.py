"""``ControllerService``: everything the REST API does, as plain synchronous calls.

It works like :class:`skalds.client.SkaldsClient` — the store first (the truth), then an event on
the bus as a hint so the owning skald reacts within milliseconds — and adds what an API needs:
validation against the schemas the skalds advertise, the 0.3.x response shapes, and a heartbeat
history. Keeping it synchronous and free of HTTP makes it testable on its own: it raises the
domain errors of :mod:`skalds.errors` only, and :mod:`skalds.controller.errors` maps them onto
statuses and codes. The FastAPI app calls it through a thread pool so no blocking driver call ever
runs on the event loop (docs/design.md, principle 9). A failed publish never fails a request: the
store write stands and every skald reconciles against the store (docs/design.md, principle 1).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, TypeVar

from skalds.backends.bus.base import Topic
from skalds.backends.clients import BackendClients
from skalds.backends.store.base import TaskQuery
from skalds.controller.config import ControllerConfig
from skalds.controller.fleet import Fleet, SkaldInfo
from skalds.controller.history import HeartbeatHistory
from skalds.controller.live import NOT_RUNNING, Activity, LiveTasks
from skalds.controller.placement import resource_item
from skalds.controller.publisher import Publisher
from skalds.controller.schemas import STATUS_TARGETS, TaskCreate
from skalds.errors import (
    DeadlinePassed,
    IdempotencyKeyReused,
    InvalidRequest,
    SkaldNotFound,
    SkaldsError,
    TaskEnded,
    TaskExists,
    TaskNotFound,
    UnknownDependency,
)
from skalds.model.attachments import check_attachments, check_task, rename_keys, unadvertised_warning
from skalds.model.event import TaskEvent
from skalds.model.resources import check_labels, check_resources
from skalds.model.task import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    ModeEnum,
    Task,
    TaskLifecycleStatus,
    ended_for_good,
    now_ms,
    statuses_named,
)
from skalds.utils.logging import logger, mask_secrets, masked

S = TaskLifecycleStatus
T = TypeVar("T")
MAX_PAGE_SIZE = 100
#: Seconds a snapshot of the open tasks may be old for the periodic loops (which run each second:
#: the first of them to run refreshes it, the others reuse it).
SHARED_SNAPSHOT_AGE = 0.5
#: The same for API reads that look on demand (activity, timeline).
ON_DEMAND_SNAPSHOT_AGE = 1.0
#: What an ``Idempotency-Key`` may be: 1 to 200 visible ASCII characters (a UUID is a good key).
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")


class ControllerService(BackendClients):
    """The controller's operations over the configured store, bus and cache."""

    config: ControllerConfig

    def __init__(
        self,
        config: ControllerConfig | None = None,
        *,
        initiator: str = "system-controller",
        on_publish: Callable[[str, bool], None] | None = None,
        on_activity: Callable[[Activity], None] | None = None,
    ) -> None:
        super().__init__(config if config is not None else ControllerConfig())
        self.initiator = initiator
        self.history = HeartbeatHistory(self.config.heartbeat_history_size)
        #: The open tasks and their leases, shared by monitor, sampler, SSE poller and dispatcher;
        #: ``on_activity`` is told each new activity entry (the app counts them in /metrics).
        self.live = LiveTasks(lambda: self.store, lambda: self.state, on_activity=on_activity)
        self._parsed_schemas: dict[str, dict[str, Any]] = {}
        #: Called with (topic, published?) after every publish (the app counts them in /metrics).
        self.on_publish = on_publish
        #: Sends the events in the background; a request waits for one only briefly.
        self.publisher = Publisher()
        #: Told ``(task id, its status before)`` of every task deleted here (the app's SSE hub
        #: streams ``task_deleted``); its failure never fails the delete.
        self.on_deleted: Callable[[str, str], None] | None = None

    @property
    def fleet(self) -> Fleet:
        return Fleet(self.state, self._parsed_schemas)

    def publish(self, topic: Topic, task_id: str, recipient: str | None = None) -> None:
        """Announce a change (a hint: on failure the skalds still find it by reconciling)."""
        self.publish_many(topic, [task_id], recipient)

    def publish_many(self, topic: Topic, task_ids: list[str], recipient: str | None = None) -> None:
        """:meth:`publish` for several tasks (one message each, keyed by its id) in one go. Runs on
        the publisher's thread; waits for it only briefly (:mod:`skalds.controller.publisher`)."""
        if not task_ids:
            return
        messages: list[tuple[str | None, bytes | str]] = [
            (i, TaskEvent(title=topic.value, initiator=self.initiator, recipient=recipient, taskIds=[i]).to_json())
            for i in task_ids
        ]
        what = f"task {task_ids[0]}: {topic.value}" if len(task_ids) == 1 else f"{len(task_ids)} {topic.value} events"

        def counted(ok: bool) -> None:
            if self.on_publish is not None:
                for _ in task_ids:
                    self.on_publish(topic.value, ok)

        self.publisher.submit(lambda: self.bus.publish_many(topic.value, messages), what, counted)

    def close(self) -> None:
        self.publisher.close()  # the publish in flight ends before the bus closes
        super().close()

    # ---- tasks: reads --------------------------------------------------------------------
    def task_item(self, task: Task) -> dict[str, Any]:
        """The API's task item: 0.3.x names plus every Task field by alias (docs/wire-formats.md)."""
        return self._items([task])[0]

    def _items(self, tasks: list[Task], *, best_effort: bool = False) -> list[dict[str, Any]]:
        """:meth:`task_item` of each task, with one batched cache read for all of them. With
        ``best_effort`` an unreadable cache leaves the live fields (heartbeat, error) empty."""
        waiting = [t.id for t in tasks if t.lifecycle_status == S.CREATED]
        try:
            states = self.state.task_states([t.id for t in tasks])
            reasons = dict(zip(waiting, self.state.task_placements(waiting), strict=True))
        except Exception as exc:
            if not best_effort:
                raise
            logger.warning(f"live state of {len(tasks)} task(s) not read ({exc}); answered without it")
            states, reasons = [dict(NOT_RUNNING) for _ in tasks], {}
        items = []
        for task, live in zip(tasks, states, strict=True):
            doc = task.to_json_dict()
            doc.update(
                type=task.class_name,
                status=task.lifecycle_status.value,
                heartbeat=live["heartbeat"],
                # Exception text can quote a DSN with its password: masked wherever it is shown.
                error=masked(live["error"]),
                exception=masked(live["exception"] or task.exception),
                # CPU and memory of its worker process while it runs (None otherwise).
                usage=live.get("usage"),
                # Why the dispatcher can place this waiting task on no node now (None otherwise).
                placement=reasons.get(task.id),
            )
            items.append(doc)
        return items

    def require(self, task_id: str) -> Task:
        task = self.store.get(task_id)
        if task is None:
            raise TaskNotFound(f"no task with id {task_id!r}")
        return task

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self.task_item(self.require(task_id))

    def list_tasks(
        self,
        page: int = 1,
        page_size: int = 20,
        status: str | None = None,
        class_name: str | None = None,
        executor: str | None = None,
        search: str | None = None,
        order: str = "createDateTime",
    ) -> dict[str, Any]:
        page, page_size = max(page, 1), min(max(page_size, 1), MAX_PAGE_SIZE)
        query = TaskQuery(
            statuses=parse_statuses(status),
            class_name=class_name or None,
            executor=executor or None,
            search=search or None,
            order=order,
            offset=(page - 1) * page_size,
            limit=page_size,
        )
        result = self.store.list(query)
        return {
            "items": self._items(result.items),
            "total": result.total,
            "page": page,
            "pageSize": page_size,
        }

    def heartbeat_info(self, task_id: str) -> dict[str, Any]:
        task = self.require(task_id)
        live = self.state.task_state(task_id)
        beat = live["heartbeat"]
        history = self.history.get(task_id)
        return {
            "taskId": task_id,
            "heartbeat": beat,
            "status": task.lifecycle_status.value,
            "isAlive": beat is not None and 0 <= beat < 200,
            "error": masked(live["error"]),
            "exception": masked(live["exception"] or task.exception),
            # When the heartbeat was last seen (sampled), else when the task record last changed.
            "lastUpdate": history[-1]["timestamp"] if history else task.update_date_time,
            "heartbeatHistory": history,
        }

    def sample_heartbeats(self) -> int:
        """Record the current heartbeat of every live task; returns how many were sampled."""
        snapshot = self.live.snapshot(max_age=SHARED_SNAPSHOT_AGE)
        live = snapshot.with_status(*LIVE_STATUSES)
        for task in live:
            self.history.add(task.id, snapshot.taken_ms, snapshot.state(task.id)["heartbeat"])
        return len(live)

    def task_history(self, task_id: str) -> dict[str, Any]:
        """A task's status changes, oldest first (as its record keeps them)."""
        task = self.require(task_id)
        items = [
            {
                "timestamp": c.timestamp,
                "status": c.status.value,
                "executor": c.executor,
                "epoch": c.epoch,
                "detail": c.detail,
            }
            for c in task.status_history
        ]
        return {"taskId": task_id, "items": items}

    def task_logs(self, task_id: str, after: int | None = None, limit: int = 200) -> dict[str, Any]:
        """The task's recent log lines (its workers ship them to the cache), newer than ``after``."""
        self.require(task_id)
        return self.state.task_logs_page(task_id, after, limit)

    def activity(self, limit: int = 50) -> dict[str, Any]:
        """Recent status changes across the fleet, newest first (this controller's memory)."""
        self.live.snapshot(max_age=ON_DEMAND_SNAPSHOT_AGE)  # a controller without monitor loops looks now
        return {"items": self.live.recent_activity(limit)}

    def timeline(self, minutes: int = 60) -> dict[str, Any]:
        """Running / Failed counts over the last ``minutes`` (one point per timeline interval)."""
        self.live.snapshot(max_age=ON_DEMAND_SNAPSHOT_AGE)
        return {
            "intervalMs": self.live.timeline_interval_ms,
            "points": self.live.timeline_points(now_ms() - minutes * 60_000),
        }

    # ---- tasks: writes -------------------------------------------------------------------
    def class_schemas(self) -> dict[str, tuple[dict[str, Any], list[str]]]:
        return self.fleet.class_schemas()

    def _validate(
        self, body: TaskCreate, classes: dict[str, tuple[dict[str, Any], list[str]]] | None = None
    ) -> tuple[TaskCreate, list[str]]:
        """``body`` with its attachments as the class's model reads them (aliases), and warnings
        for the answer (:func:`skalds.model.attachments.check_task`, which the client shares)."""
        checked = check_task(body.className, body.attachments, self.class_schemas() if classes is None else classes)
        if checked.attachments is not body.attachments:
            body = body.model_copy(update={"attachments": checked.attachments})
        return body, checked.warnings

    def create_task(self, body: TaskCreate) -> Task:
        """Validate and store a new Passive task (Created); the dispatcher assigns it."""
        return self.create_task_keyed(body)[0]

    def create_tasks(self, bodies: list[TaskCreate]) -> list[Task]:
        """:meth:`create_tasks_keyed` without a key."""
        return self.create_tasks_keyed(bodies)[0]

    def create_task_keyed(self, body: TaskCreate, idempotency_key: str | None = None) -> Created[Task]:
        """:meth:`create_task`, answering a retried request again instead of storing a copy.

        Returns the task, whether it was created now, and warnings for the answer (its class is
        run by no online skald yet). Created is False when ``idempotency_key`` names a
        task an earlier request with the same key and body created (that task is returned). The
        key is stored on the task; without an id in the body the task's id is derived from the
        key, so the store's unique id makes a retry find the first task, on any controller.
        """
        digest = _check_key(idempotency_key, body.model_dump(mode="json")) if idempotency_key else None
        body, warnings = self._validate(body)
        task_id = body.id or (_keyed_id(idempotency_key) if idempotency_key else uuid.uuid4().hex)
        dependencies = list(dict.fromkeys(body.dependencies)) if body.dependencies else None
        found: set[str] = set()
        if dependencies:
            found = {t.id for t in self.store.list(TaskQuery(ids=tuple(dependencies))).items}
        task = self._build_task(body, task_id, found)
        if idempotency_key:
            task = task.model_copy(update={"idempotency_key": idempotency_key, "request_digest": digest})
        try:
            stored = self.store.create(task)
        except TaskExists:
            if not idempotency_key:
                raise
            earlier = self._replay(idempotency_key, digest, [task_id])
            if not earlier:
                raise
            logger.info(f"task {task_id}: the request with this Idempotency-Key was answered again")
            return Created(earlier[0], False, warnings)
        logger.info(f"task {task_id} ({body.className}, priority {body.priority}) created")
        return Created(stored, True, warnings)

    def _replay(self, key: str, digest: str | None, task_ids: list[str]) -> list[Task]:
        """The tasks an earlier request with ``key`` created among ``task_ids`` (the request is
        being retried), or [] when none of them carries the key (their ids are simply taken).
        Raises :class:`IdempotencyKeyReused` when the key came with another body."""
        found = self.store.list(TaskQuery(ids=tuple(task_ids))).items
        mine = [t for t in found if t.idempotency_key == key]
        if any(t.request_digest != digest for t in mine):
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used for a request with another body; "
                "send the same body to get its result again, or use a new key for a new request",
                [{"field": "header.Idempotency-Key", "message": "already used with another body"}],
            )
        if len(mine) != len(found):
            return []  # some ids are taken by tasks of other requests: a plain conflict
        order = {i: n for n, i in enumerate(task_ids)}
        return sorted(mine, key=lambda t: order[t.id])

    def create_tasks_keyed(self, bodies: list[TaskCreate], idempotency_key: str | None = None) -> Created[list[Task]]:
        """Validate and store several new tasks at once: all of them, or none and the first error
        (its fields prefixed with ``tasks[i].``); the warnings name the tasks they are about. A
        task may depend on one created before it in the same batch. ``idempotency_key`` works as
        for :meth:`create_task` (the ids of tasks without one derive from the key and their place
        in the batch)."""
        digest = None
        if idempotency_key:
            digest = _check_key(idempotency_key, [b.model_dump(mode="json") for b in bodies])
        classes = self.class_schemas()  # once for the batch
        ids = [
            b.id or (_keyed_id(idempotency_key, n) if idempotency_key else uuid.uuid4().hex)
            for n, b in enumerate(bodies)
        ]
        first_at: dict[str, int] = {}
        for n, task_id in enumerate(ids):
            if task_id in first_at:
                raise InvalidRequest(
                    f"tasks[{n}]: id {task_id!r} is also the id of tasks[{first_at[task_id]}]",
                    [{"field": f"tasks[{n}].id", "message": "the same id twice in one batch"}],
                )
            first_at[task_id] = n
        outside = sorted({d for b in bodies for d in b.dependencies or () if d not in first_at})
        found = {t.id for t in self.store.list(TaskQuery(ids=tuple(outside))).items} if outside else set()
        tasks = []
        waiting: dict[str, list[int]] = {}  # class no online skald runs -> the tasks of it
        for n, (body, task_id) in enumerate(zip(bodies, ids, strict=True)):
            try:
                body, warned = self._validate(body, classes)
                if warned:
                    waiting.setdefault(body.className, []).append(n)
                tasks.append(self._build_task(body, task_id, found))
            except InvalidRequest as exc:
                raise _in_batch(exc, n) from None
            found.add(task_id)  # the tasks after it may depend on it
        if idempotency_key:
            tasks = [t.model_copy(update={"idempotency_key": idempotency_key, "request_digest": digest}) for t in tasks]
        try:
            stored = self.store.create_many(tasks)
        except TaskExists:
            if not idempotency_key:
                raise
            earlier = self._replay(idempotency_key, digest, ids)
            if not earlier:
                raise
            logger.info(f"batch of {len(ids)}: the request with this Idempotency-Key was answered again")
            return Created(earlier, False, _batch_warnings(waiting, list(classes)))
        logger.info(f"{len(stored)} tasks created in one batch")
        return Created(stored, True, _batch_warnings(waiting, list(classes)))

    def _build_task(self, body: TaskCreate, task_id: str, existing: set[str]) -> Task:
        """The task record of ``body``; its dependencies must be among ``existing`` task ids."""
        dependencies = list(dict.fromkeys(body.dependencies)) if body.dependencies else None
        if dependencies:
            if task_id in dependencies:
                raise InvalidRequest(f"task {task_id!r} cannot depend on itself")
            missing = [d for d in dependencies if d not in existing]
            if missing:
                raise UnknownDependency(
                    f"dependencies name tasks that do not exist: {', '.join(missing)}",
                    [{"field": "dependencies", "message": f"no task with id {m!r}"} for m in missing],
                )
        if body.deadlineDateTime is not None and body.deadlineDateTime <= now_ms():
            raise InvalidRequest("deadlineDateTime is already in the past")
        if body.notBefore is not None and body.deadlineDateTime is not None and body.notBefore >= body.deadlineDateTime:
            raise InvalidRequest(
                "notBefore is not before deadlineDateTime: the task would be cancelled before it could start;"
                " move notBefore earlier or the deadline later",
                [{"field": "notBefore", "message": "must be before deadlineDateTime"}],
            )
        return Task(
            id=task_id,
            class_name=body.className,
            source=body.source or "API",
            name=body.name,
            description=body.description,
            dependencies=dependencies,
            mode=ModeEnum.PASSIVE,
            is_persistent=body.isPersistent,
            deadline_date_time=body.deadlineDateTime,
            not_before=body.notBefore,
            max_run_time=body.maxRunTime,
            requires=body.requires,
            node_selector=body.nodeSelector,
            lifecycle_status=S.CREATED,
            priority=body.priority,
            attachments=body.attachments,
        )

    def task_items(self, task_ids: list[str]) -> list[dict[str, Any]]:
        """:meth:`task_item` of several tasks, in the order given (two store/cache round trips)."""
        tasks = {t.id: t for t in self.store.list(TaskQuery(ids=tuple(task_ids))).items}
        return self._items([tasks[i] for i in task_ids if i in tasks])

    def stored_items(self, tasks: list[Task]) -> list[dict[str, Any]]:
        """The items of tasks just written, as they are now (a dispatch may have assigned them) —
        or, when the store or cache cannot be read at this moment, as they were written. Never
        raises for a backend: the write happened, and the answer must say so (a client that gets
        an error retries, and a retry must not be what creates a second task)."""
        try:
            fresh = {t.id: t for t in self.store.list(TaskQuery(ids=tuple(t.id for t in tasks))).items}
        except Exception as exc:
            logger.warning(f"{len(tasks)} task(s) written but not read back ({exc}); answered as written")
            fresh = {}
        return self._items([fresh.get(t.id, t) for t in tasks], best_effort=True)

    def update_attachments(self, task_id: str, attachments: dict[str, Any]) -> Task:
        """:meth:`update_attachments_checked` without the warnings."""
        return self.update_attachments_checked(task_id, attachments).task

    def update_attachments_checked(self, task_id: str, attachments: dict[str, Any]) -> Updated:
        """Merge onto the stored attachments, validate the result, store, tell the owner. The
        warnings say when they could not be validated (no online skald runs the class)."""
        class_name = self.require(task_id).class_name
        # A class no online skald runs yet: its waiting task takes new values unchecked, as it was
        # created (the worker checks them when it starts).
        classes = self.class_schemas()
        schema = classes.get(class_name, ({}, []))[0]
        attachments = rename_keys(schema, attachments)  # the keys of the stored ones (aliases)

        def merge(t: Task) -> dict[str, Any]:
            self._check_not_ended(t, "its attachments")
            stored = rename_keys(schema, t.attachments if isinstance(t.attachments, dict) else {})
            return {"attachments": check_attachments(t.class_name, schema, {**stored, **attachments})}

        task = self.store.modify(task_id, merge)
        self.publish(Topic.TASK_UPDATE_ATTACHMENT, task_id)
        warnings = [] if class_name in classes else [unchecked_update_warning(class_name)]
        return Updated(task, warnings)

    def set_requirements(self, task_id: str, changes: dict[str, Any]) -> Updated:
        """Change a task's placement requirements: ``changes`` has ``requires`` (resources one run
        uses) and / or ``node_selector`` (labels a node must have), each a mapping — checked as on
        create — or None for its class's. A waiting (Created) task is placed by them at the next
        dispatch pass (the route runs one at once); a task that is placed keeps running where it
        is, and they apply the next time it is placed (a retry, a failover, a resume) — the
        warnings say so. A task that ended for good refuses (TaskEnded)."""
        changes = _checked_requirements(changes)
        self.require(task_id)

        def change(t: Task) -> dict[str, Any] | None:
            self._check_not_ended(t, "its placement requirements")
            return {k: v for k, v in changes.items() if getattr(t, k) != v} or None

        task = self.store.modify(task_id, change)
        shown = {("nodeSelector" if k == "node_selector" else k): v for k, v in changes.items()}
        logger.info(f"task {task_id}: placement requirements set: {shown}")
        return Updated(task, _requirements_warnings(task))

    def _check_not_ended(self, task: Task, what: str) -> None:
        """TaskEnded unless a change of ``what`` can still matter: a Finished or Cancelled task, or
        a Failed one the dispatcher will not retry, never runs again unless someone retries it."""
        if not ended_for_good(task, self.config.task_worker_retry):
            return
        raise TaskEnded(
            f"task {task.id!r} is {task.lifecycle_status.value}: nothing runs it any more, so {what} cannot "
            f'change; retry it (PUT /api/tasks/{task.id}/status {{"status": "Created"}}) and then '
            "update them"
        )

    def set_status(self, task_id: str, target: str) -> Task:
        """Cancel, pause, or run again (resume a Paused task / retry an ended one).

        Illegal changes raise the state machine's IllegalTransition. Resuming a task that is
        already Created / Assigning / Running changes nothing.
        """
        wanted = _parse_target(target)
        self.require(task_id)
        if wanted in (S.CANCELLED, S.PAUSED):
            task = self.store.set_status(task_id, wanted)
            self.publish(Topic.TASK_CANCEL, task_id)  # the owner stops its worker either way
            return task

        def again(t: Task) -> dict[str, Any] | None:
            if t.lifecycle_status in (S.CREATED, *LIVE_STATUSES):
                return None
            _check_deadline(t)
            fields: dict[str, Any] = {"lifecycle_status": S.CREATED}
            if t.mode == ModeEnum.PASSIVE:
                fields["executor"] = None  # the dispatcher picks a node afresh
            if t.lifecycle_status in FINAL_STATUSES:  # a retry: a fresh budget, no stale exception
                fields.update(retries=0, exception=None)
            return fields

        task = self.store.modify(task_id, again)
        self.live.watch(task_id)  # if it ends again before the next look, its activity still counts
        return task

    def set_deadline(self, task_id: str, deadline: int | None) -> Task:
        """Set (ms since the epoch, in the future) or clear (None) a task's deadline, whatever its
        status: a task cancelled because its deadline passed can then be retried. The dispatcher
        cancels a task not yet final once its new deadline passes."""
        if deadline is not None and deadline <= now_ms():
            raise InvalidRequest(
                "deadlineDateTime is already in the past; give a later time (ms since the epoch) or null for none",
                [{"field": "body.deadlineDateTime", "message": "must be in the future, or null"}],
            )

        def change(t: Task) -> dict[str, Any] | None:
            if t.deadline_date_time == deadline:
                return None
            if deadline is not None and t.not_before is not None and t.not_before >= deadline:
                raise InvalidRequest(
                    f"the task's notBefore ({t.not_before}) is not before this deadline: it would be "
                    "cancelled before it could start; give a later deadline",
                    [{"field": "body.deadlineDateTime", "message": "must be after the task's notBefore"}],
                )
            return {"deadline_date_time": deadline}

        self.require(task_id)
        task = self.store.modify(task_id, change)
        logger.info(f"task {task_id}: deadline {'cleared' if deadline is None else f'set to {deadline}'}")
        return task

    def delete_task(self, task_id: str) -> None:
        """Delete a task, cancelling it first when a worker may be running it."""
        task = self.require(task_id)
        if task.lifecycle_status in LIVE_STATUSES:
            try:
                self.store.set_status(task_id, S.CANCELLED)
            except SkaldsError as exc:
                logger.debug(f"task {task_id}: not cancelled before delete: {exc}")
        if task.lifecycle_status not in FINAL_STATUSES:
            self.publish(Topic.TASK_CANCEL, task_id)
        self.store.delete(task_id)
        self.history.forget(task_id)
        logger.info(f"task {task_id} deleted")
        if self.on_deleted is not None:
            try:
                self.on_deleted(task_id, task.lifecycle_status.value)
            except Exception as exc:  # an observer never fails the delete
                logger.debug(f"task {task_id}: observer of its delete failed: {exc}")

    # ---- skalds --------------------------------------------------------------------------
    def list_skalds(self) -> dict[str, Any]:
        items = self.skald_items(self.fleet.all())
        return {"items": items, "total": len(items)}

    def get_skald(self, skald_id: str) -> dict[str, Any]:
        info = self.fleet.get(skald_id)
        if info is None:
            raise SkaldNotFound(f"no skald with id {skald_id!r}")
        owned = self.store.list(TaskQuery(executor=skald_id, statuses=tuple(LIVE_STATUSES))).items
        return self.skald_items([info], owned)[0]

    def skald_items(self, infos: list[SkaldInfo], tasks: Iterable[Task] | None = None) -> list[dict[str, Any]]:
        """The API's skald items, with the resources each uses and has free by the open ``tasks``
        (by default the shared snapshot's)."""
        if tasks is None:
            tasks = self.live.snapshot(max_age=SHARED_SNAPSHOT_AGE).tasks.values()
        owned: dict[str, list[Task]] = {}
        for task in tasks:
            if task.executor is not None:
                owned.setdefault(task.executor, []).append(task)
        return [{**s.item(), **resource_item(s.node_view(), owned.get(s.id, []))} for s in infos]

    def skald_tasks(self, skald_id: str, page: int = 1, page_size: int = 20) -> dict[str, Any]:
        self.get_skald(skald_id)
        return self.list_tasks(page, page_size, executor=skald_id)

    def task_classes(self) -> dict[str, Any]:
        items = [
            {"className": name, "schema": schema, "skalds": skalds}
            for name, (schema, skalds) in sorted(self.class_schemas().items())
        ]
        return {"items": items, "total": len(items)}

    # ---- system --------------------------------------------------------------------------
    def count(self, *statuses: TaskLifecycleStatus) -> int:
        return self.store.list(TaskQuery(statuses=statuses or None, limit=0)).total

    def dashboard_summary(self) -> dict[str, Any]:
        skalds = self.fleet.all()
        return {
            "totalSkalds": len(skalds),
            "onlineSkalds": sum(s.online for s in skalds),
            "totalTasks": self.count(),
            "runningTasks": self.count(S.RUNNING),
            "finishedTasks": self.count(S.FINISHED),
            "failedTasks": self.count(S.FAILED),
            "assigningTasks": self.count(S.ASSIGNING),
            "cancelledTasks": self.count(S.CANCELLED),
            "nodeSkalds": sum(s.type == "node" for s in skalds),
            "edgeSkalds": sum(s.type == "edge" for s in skalds),
            "createdTasks": self.count(S.CREATED),
            "pausedTasks": self.count(S.PAUSED),
        }

    def check_backends(self) -> dict[str, str]:
        """``"ok"`` or what is wrong, for the store and the cache (a cheap read, and the free disk
        space of an embedded database: reads still work on a full disk) and the bus."""
        checks: dict[str, str] = {}
        probes: list[tuple[str, Callable[[], None]]] = [
            ("store", lambda: self.store.health()),
            ("cache", lambda: self.state.cache.health()),
        ]
        for name, probe in probes:
            try:
                probe()
                checks[name] = "ok"
            except SkaldsError as exc:
                checks[name] = mask_secrets(str(exc))
            except Exception as exc:
                checks[name] = mask_secrets(f"{type(exc).__name__}: {exc}")
        # The bus has no cheap probe: what the last publishes met (a failure is reported for 30 s).
        checks["bus"] = mask_secrets(self.publisher.problem() or "ok")
        return checks


def _check_key(key: str, body: Any) -> str:
    """The digest of a request body sent with Idempotency-Key ``key`` (InvalidRequest for a
    malformed key)."""
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 200 visible ASCII characters, no spaces (a UUID is a good key)",
            [{"field": "header.Idempotency-Key", "message": "1 to 200 visible ASCII characters"}],
        )
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _keyed_id(key: str, n: int | None = None) -> str:
    """The id of a task created with Idempotency-Key ``key`` and no id of its own (``n``: its place
    in a batch): the same for every retry, so the store's unique id decides."""
    seed = key if n is None else f"{key}\n{n}"
    return "idem-" + hashlib.sha256(seed.encode()).hexdigest()[:32]


def _in_batch(exc: InvalidRequest, n: int) -> InvalidRequest:
    """``exc`` of the batch's task ``n``, of the same kind: the message and the fields say which task."""
    details = [{**d, "field": f"tasks[{n}].{d['field']}"} if "field" in d else d for d in exc.details or []]
    return type(exc)(f"tasks[{n}]: {exc}", details or None)


def parse_statuses(text: str | None) -> tuple[TaskLifecycleStatus, ...] | None:
    """``"Running,Paused"`` → statuses (case-insensitive); InvalidRequest naming the allowed ones
    otherwise."""
    if not text:
        return None
    try:
        return statuses_named(text)
    except ValueError as exc:
        allowed = ", ".join(s.value for s in S)
        raise InvalidRequest(str(exc), [{"field": "query.status", "message": f"must be one of {allowed}"}]) from None


def _check_deadline(task: Task) -> None:
    """DeadlinePassed when ``task``'s deadline has passed: run again, it would be cancelled at once."""
    deadline = task.deadline_date_time
    if deadline is None or deadline > now_ms():
        return
    when = datetime.fromtimestamp(deadline / 1000, tz=UTC).isoformat(timespec="seconds")
    raise DeadlinePassed(
        f"task {task.id!r} cannot run again: its deadline passed ({when}, deadlineDateTime {deadline}) and "
        f"it would be cancelled at once; set a later deadline, or none, with PUT /api/tasks/{task.id}/deadline "
        '{"deadlineDateTime": <ms since the epoch> | null}, then try again'
    )


def unchecked_update_warning(class_name: str) -> str:
    """The warning for attachments stored although no online skald runs the task's class."""
    return (
        f"no online skald runs class {class_name!r}; the new attachments were stored without being "
        "validated (a worker checks them when it starts the task)"
    )


#: Task field → the API's name, for messages about requirements.
_REQUIREMENT_NAMES = {"requires": "requires", "node_selector": "nodeSelector"}


def _checked_requirements(changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` (``requires`` / ``node_selector``) checked as a create checks them; InvalidRequest
    naming the field otherwise, or when there is nothing to change."""
    unknown = sorted(set(changes) - set(_REQUIREMENT_NAMES))
    if unknown or not changes:
        raise InvalidRequest(
            "give requires and / or nodeSelector (an object, or null for the class's own)"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
            [{"field": "body", "message": "needs requires and / or nodeSelector"}],
        )
    checked: dict[str, Any] = {}
    for key, value in changes.items():
        name = _REQUIREMENT_NAMES[key]
        try:
            if value is None:
                checked[key] = None
            elif key == "requires":
                checked[key] = check_resources(value, name)
            else:
                checked[key] = check_labels(value, name)
        except ValueError as exc:
            raise InvalidRequest(str(exc), [{"field": f"body.{name}", "message": str(exc)}]) from None
    return checked


def _requirements_warnings(task: Task) -> list[str]:
    """What to know about new requirements of ``task``: they do not move a task that is placed."""
    status = task.lifecycle_status
    if status in LIVE_STATUSES:
        where = f" on {task.executor}" if task.executor else ""
        return [
            f"task {task.id!r} is {status.value}{where}: it is not moved; the new requirements apply the "
            "next time it is placed (a retry or a failover), and count against its node's resources now"
        ]
    if status == S.PAUSED:
        return [f"task {task.id!r} is Paused: the new requirements apply when it is resumed"]
    if status == S.FAILED:
        return [f"task {task.id!r} is Failed: the new requirements apply when it is retried"]
    return []


class Updated(NamedTuple):
    """What a change returns: the task as written, and warnings for the answer."""

    task: Task
    warnings: list[str]


class Created(NamedTuple, Generic[T]):
    """What a create returns: the task(s), whether stored now (False: an Idempotency-Key's
    earlier answer, given again), and warnings for the answer."""

    tasks: T
    created: bool
    warnings: list[str]


def _batch_warnings(waiting: dict[str, list[int]], known: list[str]) -> list[str]:
    """One warning per class of a batch that no online skald runs, naming its tasks."""
    out = []
    for class_name, places in waiting.items():
        more = f" and {len(places) - 1} more" if len(places) > 1 else ""
        out.append(f"tasks[{places[0]}]{more}: {unadvertised_warning(class_name, known)}")
    return out


def _parse_target(target: str) -> TaskLifecycleStatus:
    for name in STATUS_TARGETS:
        if target.strip().lower() == name.lower():
            return S.CREATED if name == "Running" else S(name)
    raise InvalidRequest(
        f"status {target!r} cannot be requested; use one of {', '.join(STATUS_TARGETS)} "
        "(Created / Running resume a Paused task or retry an ended one)",
        [{"field": "body.status", "message": f"must be one of {', '.join(STATUS_TARGETS)}"}],
    )
