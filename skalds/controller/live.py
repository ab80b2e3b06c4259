"""``LiveTasks``: one shared, cheap view of the open tasks, and what changed between two looks.

Why: the monitor, the heartbeat sampler, the SSE poller and the dispatcher's deadline check all
need "every task not yet final, with its heartbeat lease" about once a second. Each used to list
the open tasks as whole validated documents and read the cache key by key — with 10,000 tasks,
most of a core. Now one :meth:`LiveTasks.snapshot` serves them all:

* the store is asked only for ``id → version`` of the open tasks (two columns, an index), and
  whole documents are fetched only for the tasks whose version moved since the last look (on a
  quiet fleet, none); unchanged tasks keep their parsed :class:`~skalds.model.task.Task`;
* the cache is read in one batch (``get_many``: Redis ``MGET``, one SQLite ``SELECT … IN``) —
  heartbeat, error and exception of the tasks that run (Assigning / Running);
* a snapshot younger than the caller's ``max_age`` is handed out as is, so loops that run at the
  same pace share one refresh.

Every refresh also compares the records that changed with their previous version: the new entries
of their status history (written by the store with each change, see
:class:`~skalds.model.task.StatusChange`) feed the activity log, and every ``timeline_interval``
the counts of Running and Failed tasks feed the timeline (the dashboard's overview). Tasks that left
the open set are fetched by id (they ended or were deleted), and the tasks created and ended
between two looks are found at the tail of the creation-ordered listing, so a short task's
activity is not lost.

A task that ended can run again and end again between two looks — the dispatcher's retry of a
task that fails fast, a persistent task restarting — and then it is final at both looks, so the
open set never shows it. So the tasks that may run again by themselves — seen ending Failed, or
persistent — stay *watched* for :data:`ENDED_WATCH_MS` (renewed each time they end again; the
:data:`ENDED_WATCH_MAX` most recent): each refresh also reads the versions of the watched tasks (one
``id → version`` read per :data:`FETCH_CHUNK` of them) and fetches those whose version moved, and
each new entry of their status history counts — entries are compared by the record version they
were written at, never by the status the task shows now. The window covers the dispatcher's
longest retry backoff. A task an operator runs again through this controller is watched afresh
(:meth:`LiveTasks.watch`), however long ago it ended; one run again elsewhere (another controller,
a client writing to the store) is seen when it is still open at a look. Both logs live in this
process's memory: a restarted controller starts them afresh (the task records keep their own
history).

Thread-safe; blocking (driver calls): the app calls it from worker threads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from skalds.backends.cache.state import StateView
from skalds.backends.store.base import TaskQuery, TaskStore
from skalds.model.task import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    OPEN_STATUSES,
    StatusChange,
    Task,
    TaskLifecycleStatus,
    now_ms,
)

S = TaskLifecycleStatus
#: Ids per ``TaskQuery(ids=...)`` when fetching changed records.
FETCH_CHUNK = 500
#: Milliseconds of disagreement between the clocks of the controller and the writers tolerated
#: when deciding which status changes of a task not seen before are new.
CLOCK_SLACK_MS = 2000
#: Tasks whose last recorded status change is remembered (the least recently changed are forgotten).
RECORDED_TASKS = 50_000
#: Extra tasks read at the tail of the creation-ordered listing (deletions hide new tasks from the count).
RECENT_MARGIN = 20
#: Milliseconds a task that ended (Failed, or persistent) stays watched for changes while final
#: (twice the dispatcher's longest retry backoff, 300 s), and how many are watched at most (the
#: most recent; reading the versions of 10,000 costs about 30 ms on the embedded store).
ENDED_WATCH_MS = 600_000
ENDED_WATCH_MAX = 10_000


#: What the cache says about a task that does not run (``StateView.task_state``'s shape). Read only.
NOT_RUNNING: Mapping[str, Any] = MappingProxyType({"heartbeat": None, "error": None, "exception": None, "usage": None})


@dataclass(frozen=True)
class Snapshot:
    """The open tasks and the cache state of those that run, as of ``taken_ms``."""

    taken_ms: int
    tasks: dict[str, Task] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)  # running tasks' StateView.task_state

    def state(self, task_id: str) -> Mapping[str, Any]:
        """``{"heartbeat", "error", "exception"}`` of the task (all None unless it runs); a
        heartbeat of None means its lease is missing."""
        return self.states.get(task_id, NOT_RUNNING)

    def with_status(self, *statuses: TaskLifecycleStatus) -> list[Task]:
        wanted = frozenset(statuses)
        return [t for t in self.tasks.values() if t.lifecycle_status in wanted]


@dataclass(frozen=True)
class Activity:
    """One entry of the activity log (the API's ``/api/system/activity``)."""

    timestamp: int
    kind: str
    task_id: str
    name: str | None
    class_name: str
    executor: str | None
    detail: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "kind": self.kind,
            "taskId": self.task_id,
            "name": self.name,
            "className": self.class_name,
            "executor": self.executor,
            "detail": self.detail,
        }


def activity_kind(previous: StatusChange | None, change: StatusChange) -> str:
    """What a status change means to an operator."""
    status = change.status
    if status == S.CREATED:
        if previous is None:
            return "created"
        if previous.status in LIVE_STATUSES:
            return "failover"  # the monitor returned it to dispatch (or its skald gave it back)
        if previous.status in FINAL_STATUSES:
            return "retried"
        return "resumed"
    if status == S.ASSIGNING:
        return "resumed" if previous is not None and previous.status == S.PAUSED else "assigned"
    return {
        S.RUNNING: "running",
        S.PAUSED: "paused",
        S.FINISHED: "finished",
        S.FAILED: "failed",
        S.CANCELLED: "cancelled",
    }[status]


class NewTasks:
    """Finds the tasks created since a look: those that already ended before the next one would
    otherwise never be seen by a poller that lists only open tasks. The store lists tasks by
    creation time, so they are its tail: as many as the total grew, plus a margin for deletions
    in between. One count per look, one short listing when the store grew."""

    def __init__(self) -> None:
        self._total = 0  # tasks in the store at the last look

    def since(self, store: TaskStore, since_ms: int | None) -> list[Task]:
        """Tasks created at or after ``since_ms`` (None: the first look, which only counts)."""
        total = store.list(TaskQuery(limit=0)).total
        grown, self._total = total - self._total, total
        if since_ms is None or grown <= 0:
            return []
        size = grown + RECENT_MARGIN
        tail = store.list(TaskQuery(offset=max(total - size, 0), limit=size)).items
        return [t for t in tail if t.create_date_time >= since_ms]


class LiveTasks:
    """The shared view (see the module docstring)."""

    def __init__(
        self,
        store: Callable[[], TaskStore],
        state: Callable[[], StateView],
        *,
        activity_size: int = 500,
        timeline_interval: float = 10.0,
        timeline_size: int = 360,
        on_activity: Callable[[Activity], None] | None = None,
    ) -> None:
        # Callables, so the backends are opened lazily and re-resolved (the service owns them).
        self._store = store
        self._state = state
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._taken_at = 0.0  # monotonic
        self._new_tasks = NewTasks()
        self.activity: deque[Activity] = deque(maxlen=activity_size)
        self.timeline: deque[dict[str, int]] = deque(maxlen=timeline_size)
        self.timeline_interval_ms = int(timeline_interval * 1000)
        self._recorded: OrderedDict[str, int] = OrderedDict()  # task id -> version of its last recorded change
        #: Tasks seen ending: id -> (record version then, when seen, ms), least recently seen first.
        self._ended: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self.refreshes = 0
        #: Called with each new activity entry (the app counts them in /metrics).
        self.on_activity = on_activity

    # ---- reads ---------------------------------------------------------------------------
    def snapshot(self, max_age: float = 0.0) -> Snapshot:
        """The current snapshot, refreshed unless one younger than ``max_age`` seconds exists."""
        with self._lock:
            if self._snapshot is not None and time.monotonic() - self._taken_at < max_age:
                return self._snapshot
            self._snapshot = self._refresh(self._snapshot)
            self._taken_at = time.monotonic()
            self.refreshes += 1
            return self._snapshot

    def watch(self, *task_ids: str) -> None:
        """Look at these tasks at the next refresh even if they are final then (a task just made
        to run again, which may end before the next look)."""
        with self._lock:
            for task_id in task_ids:
                self._ended[task_id] = (-1, now_ms())
                self._ended.move_to_end(task_id)

    def recent_activity(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, newest first."""
        with self._lock:
            entries = list(self.activity)
        entries.sort(key=lambda a: a.timestamp)
        return [a.as_dict() for a in reversed(entries[-limit:])] if limit > 0 else []

    def timeline_points(self, since_ms: int) -> list[dict[str, int]]:
        with self._lock:
            return [dict(p) for p in self.timeline if p["timestamp"] >= since_ms]

    # ---- the refresh ---------------------------------------------------------------------
    def _refresh(self, before: Snapshot | None) -> Snapshot:
        store: TaskStore = self._store()
        now = now_ms()
        old = before.tasks if before is not None else {}
        versions = store.versions(TaskQuery(statuses=OPEN_STATUSES))
        stale = [i for i, v in versions.items() if (t := old.get(i)) is None or t.version != v]
        fetched = self._fetch(store, stale)
        left = [i for i in old if i not in versions]
        ended = self._fetch(store, left)  # missing from the answer: deleted
        known = versions.keys() | old.keys()
        since = before.taken_ms if before is not None else None
        created = [t for t in self._new_tasks.since(store, since) if t.id not in known]
        rerun = self._moved_while_ended(store, versions.keys(), left)
        tasks = {i: t for i, v in versions.items() if (t := old.get(i)) is not None and t.version == v}
        for task in (*fetched.values(), *rerun):
            if task.lifecycle_status not in FINAL_STATUSES:
                tasks.setdefault(task.id, task)  # open again since the open set was read
            else:
                ended.setdefault(task.id, task)  # ended between the two reads (or ended again)
        snapshot = Snapshot(taken_ms=now, tasks=tasks, states=self._states(tasks.values()))
        if before is not None:  # the first look only learns; it does not replay history
            changed = {t.id: t for t in (*created, *rerun, *ended.values(), *fetched.values())}
            self._record_activity(before.taken_ms, changed.values())
        self._watch_ended([*ended.values(), *(t for t in created if t.lifecycle_status in FINAL_STATUSES)], now)
        self._record_timeline(store, snapshot, now)
        return snapshot

    def _moved_while_ended(self, store: TaskStore, open_ids: Collection[str], left: Collection[str]) -> list[Task]:
        """The watched tasks whose record changed since they were seen ending, fetched. Those open
        now are no longer watched (they are looked at as open tasks, and watched again once they
        end), nor are those that are gone; those that ``left`` the open set are fetched anyway."""
        for task_id in [i for i in self._ended if i in open_ids]:
            del self._ended[task_id]
        watched = [i for i in self._ended if i not in left]
        if not watched:
            return []
        versions: dict[str, int] = {}
        for i in range(0, len(watched), FETCH_CHUNK):
            versions.update(store.versions(TaskQuery(ids=tuple(watched[i : i + FETCH_CHUNK]))))
        for task_id in watched:
            if task_id not in versions:
                del self._ended[task_id]  # deleted
        moved = [i for i, v in versions.items() if v != self._ended[i][0]]
        return list(self._fetch(store, moved).values()) if moved else []

    def _watch_ended(self, ended: Iterable[Task], now: int) -> None:
        """Watch the tasks seen final now that may run again by themselves (Failed: the dispatcher
        retries it; persistent: its skald restarts it), and those already watched; forget those
        seen longer than :data:`ENDED_WATCH_MS` ago and the least recent beyond
        :data:`ENDED_WATCH_MAX`."""
        for task in ended:
            if task.lifecycle_status != S.FAILED and not task.is_persistent and task.id not in self._ended:
                continue
            self._ended[task.id] = (task.version, now)
            self._ended.move_to_end(task.id)
        while self._ended and (
            len(self._ended) > ENDED_WATCH_MAX or next(iter(self._ended.values()))[1] < now - ENDED_WATCH_MS
        ):
            self._ended.popitem(last=False)

    @staticmethod
    def _fetch(store: TaskStore, ids: Sequence[str]) -> dict[str, Task]:
        found: dict[str, Task] = {}
        for i in range(0, len(ids), FETCH_CHUNK):
            for task in store.list(TaskQuery(ids=tuple(ids[i : i + FETCH_CHUNK]))).items:
                found[task.id] = task
        return found

    def _states(self, tasks: Iterable[Task]) -> dict[str, dict[str, Any]]:
        running = [t.id for t in tasks if t.lifecycle_status in LIVE_STATUSES]
        return dict(zip(running, self._state().task_states(running), strict=True)) if running else {}

    def _record_activity(self, since_ms: int, changed: Iterable[Task]) -> None:
        """Append the status changes of ``changed`` not recorded yet.

        Per task, what was recorded is remembered as the record version of its last entry; of a
        task not seen before, the entries written since the last look count (less
        :data:`CLOCK_SLACK_MS`, as entries carry the writers' clocks).
        """
        for task in changed:
            recorded = self._recorded.pop(task.id, None)
            history = task.status_history
            for n, change in enumerate(history):
                if recorded is not None:
                    if change.version <= recorded:
                        continue
                elif change.timestamp < since_ms - CLOCK_SLACK_MS:
                    continue
                previous = history[n - 1] if n else None
                moved_from = previous.executor if previous is not None and change.status == S.CREATED else None
                entry = Activity(
                    timestamp=change.timestamp,
                    kind=activity_kind(previous, change),
                    task_id=task.id,
                    name=task.name,
                    class_name=task.class_name,
                    executor=change.executor or moved_from,
                    detail=change.detail,
                )
                self.activity.append(entry)
                if self.on_activity is not None:
                    self.on_activity(entry)
            self._recorded[task.id] = history[-1].version if history else (recorded or 0)
            while len(self._recorded) > RECORDED_TASKS:
                self._recorded.popitem(last=False)

    def _record_timeline(self, store: TaskStore, snapshot: Snapshot, now: int) -> None:
        last = self.timeline[-1]["timestamp"] if self.timeline else None
        if last is not None and now - last < self.timeline_interval_ms:
            return
        failed = store.list(TaskQuery(statuses=(S.FAILED,), limit=0)).total
        running = sum(1 for t in snapshot.tasks.values() if t.lifecycle_status == S.RUNNING)
        self.timeline.append({"timestamp": now, "running": running, "failed": failed})


__all__ = ["NOT_RUNNING", "Activity", "LiveTasks", "NewTasks", "Snapshot", "activity_kind"]
