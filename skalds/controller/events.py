"""``EventHub``: live skald and task changes for the SSE streams, from one poller per app.

Why poll instead of subscribing to the bus: the store and the state cache are the truth (docs/design.md,
principle 1) and they are where every change lands — writes of other controllers, of the skalds,
heartbeats that never travel as events — while bus events are hints that may be lost. So one
asyncio task reads the fleet and the tasks every ``interval`` seconds (0.5 s: each change reaches
clients within about that), in a worker thread, diffs against the previous pass, and fans the
differences out to every subscriber. The cost is independent of the number of clients, and it is
zero when nobody listens: without subscribers the poller sleeps and forgets its snapshot.

What a pass reads: every skald; every task not yet final (Created, Assigning, Running, Paused) with
its heartbeat / error / exception from the cache, and for the waiting (Created) ones why they fit on
no node (``task:{id}:placement``, written by the dispatcher); and, by id, the tasks that left that set since the
last pass (they ended or were deleted) and the tasks a client filters on; and the newest tasks when
the store grew (``live.NewTasks``), so a task created and ended between two passes is reported too.
Ended tasks stay in the snapshot (at most ``max_ended`` of them) so a retry is reported as a change
from its final status.

Deletions: a task that leaves the open set and is gone is reported ``task_deleted``; so is every
task deleted through this controller's API, whatever its status (an ended task is not re-read every
pass, so the service tells the hub: :meth:`EventHub.task_deleted`, at the next pass, which it
starts at once). Until a snapshot of the open tasks taken after the delete, the task is left out of
the passes, so a view read just before it cannot bring the row back.

Events (``timestamp`` in ms since the epoch)::

    {"type": "snapshot", "data": {"skalds": [...]} | {"tasks": [...]}, "timestamp": ...}   # first, on connect
    {"type": "skald_status" | "skald_heartbeat", "skaldId": id, "data": {<skald item>, "previous": ...}, ...}
    {"type": "task_status" | "task_heartbeat" | "task_error" | "task_exception" | "task_placement"
     | "task_requirements" | "task_deleted", "taskId": id, "data": {...}, "timestamp": ...}

A task's view (the snapshot's items, ``task_status``'s data) has ``placement``: while it waits
(Created), why it fits on no node now, as the API item's ``placement``; else null. When only that
changes — the reason appears, changes (new requirements, a node left) or goes — a
``task_placement`` event says so: ``{"placement": why | null, "previous": …, "lifecycleStatus": …}``.
The view also has the task's own ``requires`` and ``nodeSelector`` (null: its class's); a change of
either (``PUT /api/tasks/{id}/requirements``, ``SkaldsClient.set_requirements``: the record's version
moves, so the pass reads it) sends ``task_requirements``: ``{"requires", "nodeSelector", "previous":
{"requires", "nodeSelector"}, "lifecycleStatus"}``.

A skald that unregisters (clean stop) disappears from the cache; it is reported as
``skald_status`` ``offline`` with ``"removed": true``.

The shapes also serve clients of 0.3.x (its web dashboard among them), which read a task's status
only from ``task_heartbeat`` / ``task_error`` / ``task_exception`` (``data.lifecycleStatus``) and a
skald's tasks from ``data.tasks``: so those task events carry ``lifecycleStatus``, a status change
also sends a ``task_heartbeat`` (with the heartbeat as it is), and skald events carry ``tasks``
(the same ids as ``currentTasks``).

Every subscriber has a bounded queue. A client that cannot keep up (its queue is full) is dropped —
its stream ends and it may reconnect for a fresh snapshot — so one slow reader never grows the
controller's memory or delays the others.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict, deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from skalds.backends.store.base import TaskQuery
from skalds.controller.live import NOT_RUNNING, NewTasks
from skalds.controller.metrics import ControllerMetrics
from skalds.controller.service import ControllerService
from skalds.model.task import FINAL_STATUSES, Task, TaskLifecycleStatus, now_ms
from skalds.utils.logging import logger, masked

_FINAL_VALUES = frozenset(s.value for s in FINAL_STATUSES)
#: Seconds a shared snapshot of the open tasks may be old for a pass (the pass runs every 0.5 s).
SNAPSHOT_AGE = 0.25
SKALDS = "skalds"
TASKS = "tasks"
#: Event types of each stream (besides the first ``snapshot``).
STREAM_TYPES: dict[str, frozenset[str]] = {
    SKALDS: frozenset({"skald_status", "skald_heartbeat"}),
    TASKS: frozenset(
        {
            "task_status",
            "task_heartbeat",
            "task_error",
            "task_exception",
            "task_placement",
            "task_requirements",
            "task_deleted",
        }
    ),
}

Event = dict[str, Any]
#: The fields of a task's view whose change sends ``task_requirements``.
REQUIREMENTS = ("requires", "nodeSelector")


@dataclass(eq=False)
class Subscriber:
    """One open stream: which events it wants and where they go (``None`` ends the stream)."""

    stream: str
    queue: asyncio.Queue[list[Event] | None]
    task_id: str | None = None
    types: frozenset[str] | None = None  # None: every type
    needs_snapshot: bool = True
    dropped: bool = False
    id: int = field(default_factory=itertools.count().__next__)

    def wants_type(self, kind: str) -> bool:
        return self.types is None or kind in self.types

    def wants(self, event: Event) -> bool:
        if not self.wants_type(event["type"]):
            return False
        if self.stream == SKALDS:
            return "skaldId" in event
        return "taskId" in event and (self.task_id is None or event["taskId"] == self.task_id)


def task_view(task: Task, live: Mapping[str, Any], placement: str | None = None) -> dict[str, Any]:
    """What the streams tell about a task (the REST API has the rest); ``placement``: why it
    waits, while it is Created."""
    return {
        "id": task.id,
        "className": task.class_name,
        "status": task.lifecycle_status.value,
        "executor": task.executor,
        "priority": task.priority,
        "epoch": task.epoch,
        "version": task.version,
        "createDateTime": task.create_date_time,
        "updateDateTime": task.update_date_time,
        "heartbeat": live.get("heartbeat"),
        # Exception text can quote a DSN with its password: masked wherever it leaves the controller.
        "error": masked(live.get("error")),
        "exception": masked(live.get("exception") or task.exception),
        "usage": live.get("usage"),
        "placement": placement if task.lifecycle_status == TaskLifecycleStatus.CREATED else None,
        # The task's own placement requirements (None: its class's), as in the API's item.
        "requires": task.requires,
        "nodeSelector": task.node_selector,
    }


class EventHub:
    """The single poller of an app and its subscribers."""

    def __init__(
        self,
        service: ControllerService,
        metrics: ControllerMetrics | None = None,
        *,
        interval: float = 0.5,
        queue_size: int = 20,
        max_ended: int = 10_000,
        snapshot_age: float = SNAPSHOT_AGE,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.interval = interval
        self.queue_size = queue_size
        self.max_ended = max_ended
        self.snapshot_age = snapshot_age
        self.subscribers: set[Subscriber] = set()
        self._skalds: dict[str, dict[str, Any]] = {}
        self._tasks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._primed = False  # the snapshot reflects at least one pass
        self._new_tasks = NewTasks()
        self._last_pass_ms = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Deletes the service reported and no pass has streamed yet: (task id, status before, ms).
        self._deleted: deque[tuple[str, str, int]] = deque()
        #: Tasks deleted, until a snapshot taken after the delete: task id -> when deleted (ms).
        self._deleted_at: dict[str, int] = {}
        self.last_error: str | None = None

    # ---- subscribers (event loop only) ---------------------------------------------------
    def subscribe(self, stream: str, task_id: str | None = None, types: frozenset[str] | None = None) -> Subscriber:
        sub = Subscriber(stream, asyncio.Queue(self.queue_size), task_id, types)
        self.subscribers.add(sub)
        self._count_subscribers()
        self._wake.set()  # the next pass runs now: the snapshot arrives at once
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        self._count_subscribers()

    def task_deleted(self, task_id: str, previous: str) -> None:
        """A task was deleted (``previous``: its status then): streamed as ``task_deleted`` by the
        next pass, which starts now. Called from any thread."""
        if not self.subscribers:
            return  # nobody listens: the next subscriber's snapshot is read afresh
        self._deleted.append((task_id, previous, now_ms()))
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop is closed: shutting down
                pass

    def close(self) -> None:
        """End every stream (shutdown)."""
        for sub in list(self.subscribers):
            self._end(sub)

    def _count_subscribers(self) -> None:
        if self.metrics is not None:
            self.metrics.sse_subscribers.set(len(self.subscribers))

    def _end(self, sub: Subscriber) -> None:
        self.unsubscribe(sub)
        while not sub.queue.empty():  # make room for the end marker; the client is leaving anyway
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    def _offer(self, sub: Subscriber, batch: list[Event]) -> None:
        """Queue one pass's events for a subscriber as one item: the queue bounds *passes* a slow
        client may lag behind, however many tasks changed in a pass (8,000 heartbeats a second
        must not overflow it)."""
        try:
            sub.queue.put_nowait(batch)
        except asyncio.QueueFull:
            sub.dropped = True
            self._end(sub)
            if self.metrics is not None:
                self.metrics.sse_dropped.inc()
            logger.warning(f"SSE client {sub.id} ({sub.stream}) dropped: it read too slowly")
            return
        if self.metrics is not None:
            for event in batch:
                self.metrics.sse_events.labels(event["type"]).inc()

    def snapshot(self, sub: Subscriber) -> Event:
        if sub.stream == SKALDS:
            data: dict[str, Any] = {"skalds": list(self._skalds.values())}
        else:
            tasks = self._tasks.values()
            data = {"tasks": [t for t in tasks if sub.task_id is None or t["id"] == sub.task_id]}
        return {"type": "snapshot", "data": data, "timestamp": now_ms()}

    def publish(self, events: list[Event]) -> None:
        """Snapshots to new subscribers, then ``events`` to everyone who wants them."""
        for sub in list(self.subscribers):
            if sub.needs_snapshot:
                sub.needs_snapshot = False
                self._offer(sub, [self.snapshot(sub)])
                continue  # the snapshot already contains this pass's changes
            wanted = [event for event in events if sub.wants(event)]
            if wanted:
                self._offer(sub, wanted)

    # ---- the poller ----------------------------------------------------------------------
    async def run(self) -> None:
        """Poll while anyone listens; runs until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            if not self.subscribers:
                self._skalds, self._tasks, self._primed = {}, OrderedDict(), False
                self._deleted.clear()
                self._deleted_at.clear()
                self._wake.clear()
                await self._wake.wait()
            self._wake.clear()
            watched = {s.task_id for s in self.subscribers if s.task_id is not None}
            beats = any(
                s.stream == TASKS and s.task_id is None and s.wants_type("task_heartbeat") for s in self.subscribers
            )
            try:
                events = await anyio.to_thread.run_sync(self.poll, watched, beats)
                if self.last_error is not None:
                    logger.info("SSE poller works again")
                self.last_error = None
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if error != self.last_error:
                    logger.opt(exception=exc).warning(f"SSE poller failed: {error}")
                self.last_error = error
            else:
                self.publish(events)
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass

    def poll(self, watched: Collection[str] = (), beats: bool = True) -> list[Event]:
        """One pass (blocking): read, diff against the last pass, remember, return the changes.

        With ``beats`` False (no fleet-wide subscriber wants heartbeats — the dashboard's stream)
        a heartbeat change alone does not renew a task's view, so the thousands of running tasks
        whose beat moves every second cost nothing; ``watched`` tasks always get their beats.
        """
        now = now_ms()
        deleted = self._take_deleted(now)
        snapshot = self.service.live.snapshot(max_age=self.snapshot_age)
        skalds = {s["id"]: s for s in self.service.skald_items(self.service.fleet.all(), snapshot.tasks.values())}
        store, state = self.service.store, self.service.state
        for task_id, at in list(self._deleted_at.items()):
            if snapshot.taken_ms > at:
                del self._deleted_at[task_id]  # this snapshot was read after the delete
        open_ids = snapshot.tasks.keys() - self._deleted_at.keys()
        left = {i for i, v in self._tasks.items() if v["status"] not in _FINAL_VALUES} - open_ids
        extra_ids = (left | set(watched)) - open_ids
        extra = store.list(TaskQuery(ids=tuple(sorted(extra_ids)))).items if extra_ids else []
        since = self._last_pass_ms if self._primed else None
        new = [
            t
            for t in self._new_tasks.since(store, since)
            if t.id not in open_ids and t.id not in extra_ids and t.id not in self._tasks
        ]
        states = snapshot.states
        reasons = self._placements(t for t in snapshot.tasks.values() if t.id in open_ids)
        current = {
            t.id: self._view(t, states.get(t.id, NOT_RUNNING), beats or t.id in watched, reasons.get(t.id))
            for t in snapshot.tasks.values()
            if t.id in open_ids
        }
        for task in (*extra, *new):
            current[task.id] = task_view(task, state.task_state(task.id))
        events = self._diff_skalds(skalds, now) + deleted + self._diff_tasks(current, left - {t.id for t in extra}, now)
        self._skalds = skalds
        for task_id, view in current.items():
            if self._tasks.get(task_id) is not view:
                self._tasks[task_id] = view
                self._tasks.move_to_end(task_id)  # the oldest ended tasks are forgotten first
        if len(self._tasks) - len(snapshot.tasks) > self.max_ended:
            ended = [i for i, v in self._tasks.items() if v["status"] in _FINAL_VALUES]
            for task_id in ended[: max(len(ended) - self.max_ended, 0)]:
                del self._tasks[task_id]
        self._primed = True
        self._last_pass_ms = now
        return events

    def _take_deleted(self, now: int) -> list[Event]:
        """``task_deleted`` of the deletes the service reported since the last pass; each task is
        forgotten and left out of the passes until a snapshot read after its delete."""
        events: list[Event] = []
        while self._deleted:
            task_id, previous, at = self._deleted.popleft()
            before = self._tasks.pop(task_id, None)
            self._deleted_at[task_id] = at
            if self._primed:  # else the first snapshot is read after the delete
                data = {"previous": before["status"] if before is not None else previous}
                events.append(_task_event("task_deleted", task_id, data, now))
        return events

    def _placements(self, tasks: Iterable[Task]) -> dict[str, str]:
        """Why each waiting task among ``tasks`` fits on no node (those that have a reason), in one
        batched cache read."""
        waiting = [t.id for t in tasks if t.lifecycle_status == TaskLifecycleStatus.CREATED]
        if not waiting:
            return {}
        found = zip(waiting, self.service.state.task_placements(waiting), strict=True)
        return {task_id: why for task_id, why in found if why is not None}

    def _view(self, task: Task, live: Mapping[str, Any], beats: bool, placement: str | None = None) -> dict[str, Any]:
        """``task_view``, reusing the last pass's view while record and cache state are unchanged
        (most tasks, most passes) and copying it when only the heartbeat moved (every running task,
        every second) — unless heartbeats are not wanted."""
        before = self._tasks.get(task.id)
        if (
            before is None
            or before["version"] != task.version
            or before["error"] != masked(live["error"])
            or before["exception"] != masked(live["exception"] or task.exception)
            or before["placement"] != placement
        ):
            return task_view(task, live, placement)
        if before["heartbeat"] == live["heartbeat"] or not beats:
            return before
        view = dict(before)
        view["heartbeat"] = live["heartbeat"]
        view["usage"] = live.get("usage")
        return view

    def _diff_skalds(self, skalds: dict[str, dict[str, Any]], now: int) -> list[Event]:
        if not self._primed:
            return []
        events: list[Event] = []
        for skald_id, item in skalds.items():
            before = self._skalds.get(skald_id)
            if before is None or before["status"] != item["status"]:
                previous = before["status"] if before else None
                events.append(_skald_event("skald_status", skald_id, {**item, "previous": previous}, now))
            elif any(before[k] != item[k] for k in ("heartbeat", "lastHeartbeat", "currentTasks")):
                data = {**item, "previous": before["heartbeat"]}
                events.append(_skald_event("skald_heartbeat", skald_id, data, now))
        for skald_id, before in self._skalds.items():
            if skald_id not in skalds:
                data = {**before, "status": "offline", "previous": before["status"], "removed": True}
                events.append(_skald_event("skald_status", skald_id, data, now))
        return events

    def _diff_tasks(self, current: dict[str, dict[str, Any]], deleted: set[str], now: int) -> list[Event]:
        if not self._primed:
            return []
        events: list[Event] = []
        for task_id, view in current.items():
            before = self._tasks.get(task_id)
            if view is before:
                continue  # reused: nothing changed
            last = before or {}
            status_changed = before is None or last["status"] != view["status"]
            if status_changed or last["epoch"] != view["epoch"]:
                data = {**view, "previous": last.get("status")}
                events.append(_task_event("task_status", task_id, data, now))
            # 0.3.x clients learn a status change only from this event (see the module docstring)
            if status_changed or view["heartbeat"] != last["heartbeat"]:
                data = {
                    "heartbeat": view["heartbeat"],
                    "previous": last.get("heartbeat"),
                    "lifecycleStatus": view["status"],
                    "usage": view.get("usage"),
                }
                events.append(_task_event("task_heartbeat", task_id, data, now))
            for key in ("error", "exception"):
                if view[key] is not None and view[key] != last.get(key):
                    data = {key: view[key], "lifecycleStatus": view["status"]}
                    events.append(_task_event(f"task_{key}", task_id, data, now))
            if view["placement"] != last.get("placement"):
                data = {
                    "placement": view["placement"],
                    "previous": last.get("placement"),
                    "lifecycleStatus": view["status"],
                }
                events.append(_task_event("task_placement", task_id, data, now))
            if before is not None and any(view[k] != last[k] for k in REQUIREMENTS):
                data = {
                    **{k: view[k] for k in REQUIREMENTS},
                    "previous": {k: last[k] for k in REQUIREMENTS},
                    "lifecycleStatus": view["status"],
                }
                events.append(_task_event("task_requirements", task_id, data, now))
        for task_id in sorted(deleted):
            before = self._tasks.pop(task_id, None)
            if before is not None:
                events.append(_task_event("task_deleted", task_id, {"previous": before["status"]}, now))
        return events


def _skald_event(kind: str, skald_id: str, data: dict[str, Any], now: int) -> Event:
    data["tasks"] = data.get("currentTasks", [])  # the 0.3.x name
    return {"type": kind, "skaldId": skald_id, "data": data, "timestamp": now}


def _task_event(kind: str, task_id: str, data: dict[str, Any], now: int) -> Event:
    return {"type": kind, "taskId": task_id, "data": data, "timestamp": now}
