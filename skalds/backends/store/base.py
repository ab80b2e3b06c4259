"""The task store contract.

A driver implements five primitives (``_insert``, ``_get``, ``_query``, ``_cas``, ``_delete``);
everything with meaning (status state machine, assignment epochs, compare-and-set retries) lives
here once, so every driver behaves the same.

Concurrency model: every stored task carries ``version`` (bumped on every write) and ``epoch``
(bumped on every assignment). ``_cas(task_id, expected_version, fields)`` writes only if the stored
version still equals ``expected_version``; callers re-read and retry, or give up with
:class:`~skalds.errors.Conflict` when the change no longer makes sense.
"""

from __future__ import annotations

import builtins
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skalds.backends.guard import Guarded
from skalds.errors import Conflict, LostWrite, SkaldsError, TaskExists, TaskNotFound
from skalds.model.task import (
    LIVE_STATUSES,
    STATUS_HISTORY_LIMIT,
    StatusChange,
    Task,
    TaskLifecycleStatus,
    check_transition,
    now_ms,
)


@dataclass(frozen=True)
class TaskQuery:
    """Filters of a task listing; ``None`` means no filter."""

    statuses: tuple[TaskLifecycleStatus, ...] | None = None
    class_name: str | None = None
    executor: str | None = None
    mode: str | None = None
    ids: tuple[str, ...] | None = None
    search: str | None = None  # substring of id or name
    offset: int = 0
    limit: int | None = None
    #: "createDateTime" (oldest first), "-createDateTime" (newest first), "-priority" (priority
    #: desc, then oldest first: the dispatcher's queue), "priority", "updateDateTime",
    #: "-updateDateTime", "lifecycleStatus", "-lifecycleStatus" (docs/wire-formats.md)
    order: str = "createDateTime"


@dataclass
class TaskPage:
    items: list[Task] = field(default_factory=list)
    total: int = 0


class TaskStore(Guarded, ABC):
    """Durable task records. Safe to use from many processes at once."""

    backend_kind = "task store"
    url: str = ""
    #: Seconds a read-modify-write keeps retrying against concurrent writers.
    _CAS_PATIENCE = 10.0

    # ---- driver primitives -------------------------------------------------------------
    @abstractmethod
    def _insert(self, doc: dict[str, Any]) -> None:
        """Insert a new task document (by alias); raise TaskExists if the id is taken."""

    def _insert_many(self, docs: builtins.list[dict[str, Any]]) -> None:
        """Insert new task documents, all or none; raise TaskExists naming the taken ids.

        This fallback inserts one by one and deletes what it inserted when an id is taken (a
        reader may see the first ones for a moment); drivers with transactions do it in one."""
        done: builtins.list[str] = []
        try:
            for doc in docs:
                self._insert(doc)
                done.append(str(doc["id"]))
        except TaskExists:
            for task_id in done:
                self._delete(task_id)
            raise

    @abstractmethod
    def _get(self, task_id: str) -> dict[str, Any] | None:
        """The stored document of one task, or None."""

    @abstractmethod
    def _query(self, query: TaskQuery) -> tuple[list[dict[str, Any]], int]:
        """Documents matching ``query`` (offset/limit applied) and the total count without them."""

    def _versions(self, query: TaskQuery) -> dict[str, int]:
        """Id → version of every task matching ``query``'s filters (offset, limit and order are
        ignored). Drivers read just these two columns; this fallback reads whole documents."""
        docs, _ = self._query(TaskQuery(**{**query.__dict__, "offset": 0, "limit": None}))
        return {str(d["id"]): int(d.get("version", 0)) for d in docs}

    def _counts(self) -> dict[tuple[str, str], int]:
        """(lifecycle status, class name) → number of tasks. Drivers count in the database; this
        fallback reads every document."""
        docs, _ = self._query(TaskQuery())
        counts: dict[tuple[str, str], int] = {}
        for d in docs:
            key = (str(d.get("lifecycleStatus")), str(d.get("className")))
            counts[key] = counts.get(key, 0) + 1
        return counts

    @abstractmethod
    def _cas(self, task_id: str, expected_version: int, fields: dict[str, Any]) -> bool:
        """Write ``fields`` (by alias) if the stored version is ``expected_version``; True if written.

        ``fields`` always contains the new ``version``.
        """

    def _cas_many(
        self, writes: Sequence[tuple[str, int, dict[str, Any]]], *, stop_at_failure: bool = False
    ) -> builtins.list[bool]:
        """``_cas`` of each ``(task_id, expected_version, fields)`` in order, in one transaction
        where the driver can; each is written or not on its own — or, with ``stop_at_failure``,
        none after the first that is not (the result is then shorter). This fallback calls
        ``_cas`` for each."""
        written: builtins.list[bool] = []
        for task_id, version, fields in writes:
            written.append(self._cas(task_id, version, fields))
            if stop_at_failure and not written[-1]:
                break
        return written

    @abstractmethod
    def _delete(self, task_id: str) -> bool:
        """Delete one task; True if it existed."""

    def close(self) -> None:  # optional hook
        """Release connections."""

    def health(self) -> None:
        """Return if the store can serve now, else raise (BackendUnavailable): one cheap read;
        drivers add what a read cannot see (a full disk)."""
        self._query(TaskQuery(limit=0))

    # ---- public API --------------------------------------------------------------------
    def create(self, task: Task) -> Task:
        """Store a new task (version 1); raise TaskExists if its id is taken."""
        now = now_ms()
        first = StatusChange(
            timestamp=now, status=task.lifecycle_status, executor=task.executor, epoch=task.epoch, version=1
        )
        stored = task.model_copy(update={"version": 1, "update_date_time": now, "status_history": [first]})
        self._insert(stored.to_json_dict())
        return stored

    def create_many(self, tasks: Sequence[Task]) -> builtins.list[Task]:
        """Store new tasks (version 1) together: all of them, or none and TaskExists."""
        now = now_ms()
        stored = [
            t.model_copy(
                update={
                    "version": 1,
                    "update_date_time": now,
                    "status_history": [
                        StatusChange(
                            timestamp=now, status=t.lifecycle_status, executor=t.executor, epoch=t.epoch, version=1
                        )
                    ],
                }
            )
            for t in tasks
        ]
        if stored:
            self._insert_many([t.to_json_dict() for t in stored])
        return stored

    def get(self, task_id: str) -> Task | None:
        doc = self._get(task_id)
        return Task.model_validate(doc) if doc is not None else None

    def require(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task is None:
            raise TaskNotFound(f"no task with id {task_id!r}")
        return task

    def list(self, query: TaskQuery | None = None) -> TaskPage:
        docs, total = self._query(query or TaskQuery())
        return TaskPage(items=[Task.model_validate(d) for d in docs], total=total)

    def versions(self, query: TaskQuery | None = None) -> dict[str, int]:
        """Id → version of the matching tasks, without reading their documents: a poller that
        keeps the tasks it has seen needs to fetch only those whose version moved."""
        return self._versions(query or TaskQuery())

    def counts(self) -> dict[tuple[str, str], int]:
        """How many tasks there are of each (lifecycle status, class name), for gauges."""
        return self._counts()

    def delete(self, task_id: str) -> bool:
        return self._delete(task_id)

    def owned_by(self, executor: str) -> builtins.list[Task]:
        """Tasks this executor must be running: executor matches and status is Assigning/Running."""
        return self.list(TaskQuery(executor=executor, statuses=tuple(LIVE_STATUSES))).items

    def modify(self, task_id: str, change: Callable[[Task], dict[str, Any] | None]) -> Task:
        """Read-modify-write with compare-and-set.

        ``change`` gets the current task and returns the fields to set (by field name), or None
        to leave it untouched. It may raise (IllegalTransition, Conflict) to abort. Retries on
        concurrent writes.
        """
        deadline = time.monotonic() + self._CAS_PATIENCE
        attempt = 0
        while True:
            if attempt:
                if time.monotonic() > deadline:
                    break
                # Lost a race: back off a random, growing moment so contenders spread out.
                time.sleep(random.uniform(0, min(0.05, 0.0005 * 2**attempt)))
            attempt += 1
            current = self.require(task_id)
            prepared = _prepare(current, change)
            if prepared is None:
                return current
            fields, merged = prepared
            if self._cas(task_id, current.version, fields):
                return merged
        raise Conflict(
            f"task {task_id!r}: too many concurrent writers, gave up after {attempt} attempts "
            f"in {self._CAS_PATIENCE:.0f} s"
        )

    def modify_in_turn(self, task_id: str, changes: Sequence[Callable[[Task], dict[str, Any] | None]]) -> Task:
        """:meth:`modify` with several changes of one task, each applied to the task as the one
        before left it, and written together (one transaction where the driver can) — e.g.
        Running, then Finished, for a task that ended before its start was recorded. Each change
        is its own write (own version and status-history entry). All are decided before any is
        written: one that raises (Conflict, IllegalTransition) writes none of them. Lost races are
        retried from the first change not written yet (a driver without transactions may have
        written the ones before)."""
        deadline = time.monotonic() + self._CAS_PATIENCE
        todo = list(changes)
        attempt = 0
        current = self.require(task_id)
        while todo:
            if attempt:
                if time.monotonic() > deadline:
                    raise Conflict(f"task {task_id!r}: too many concurrent writers, gave up after {attempt} attempts")
                time.sleep(random.uniform(0, min(0.05, 0.0005 * 2**attempt)))
                current = self.require(task_id)
            attempt += 1
            writes: builtins.list[tuple[str, int, dict[str, Any]] | None] = []
            states: builtins.list[Task] = []
            task = current
            for change in todo:
                before = task
                prepared = _prepare(before, change)
                if prepared is None:  # this one changes nothing
                    writes.append(None)
                    states.append(before)
                    continue
                fields, task = prepared
                writes.append((task_id, before.version, fields))
                states.append(task)
            results = iter(self._cas_many([w for w in writes if w is not None], stop_at_failure=True))
            written = 0
            for write, state in zip(writes, states, strict=True):
                if write is not None and not next(results, False):
                    break
                written += 1
                current = state
            todo = todo[written:]
        return current

    def modify_many(
        self, changes: Mapping[str, Callable[[Task], dict[str, Any] | None]]
    ) -> dict[str, Task | SkaldsError]:
        """:meth:`modify` of many tasks with one read and one write where the driver can.

        Each change applies or is refused on its own (not all or none). A task another writer
        changed between the read and the write is retried alone by :meth:`modify`. Returns, per
        id, the task after its change (as it was, when the change returned None) or the
        :class:`~skalds.errors.LostWrite` that refused it (TaskNotFound, Conflict, IllegalTransition).
        """
        results: dict[str, Task | SkaldsError] = {}
        ids = list(changes)
        for start in range(0, len(ids), _MANY_CHUNK):
            part = ids[start : start + _MANY_CHUNK]
            docs = {str(d["id"]): d for d in self._query(TaskQuery(ids=tuple(part)))[0]}
            writes: builtins.list[tuple[str, int, dict[str, Any]]] = []
            merged_of: dict[str, Task] = {}
            for task_id in part:
                doc = docs.get(task_id)
                if doc is None:
                    results[task_id] = TaskNotFound(f"no task with id {task_id!r}")
                    continue
                current = Task.model_validate(doc)
                try:
                    prepared = _prepare(current, changes[task_id])
                except LostWrite as exc:
                    results[task_id] = exc
                    continue
                if prepared is None:
                    results[task_id] = current
                    continue
                fields, merged = prepared
                writes.append((task_id, current.version, fields))
                merged_of[task_id] = merged
            for (task_id, _, _), written in zip(writes, self._cas_many(writes), strict=True):
                if written:
                    results[task_id] = merged_of[task_id]
                    continue
                try:  # someone wrote it in between: decide again on what is stored now
                    results[task_id] = self.modify(task_id, changes[task_id])
                except LostWrite as exc:
                    results[task_id] = exc
        return results

    def set_status(
        self,
        task_id: str,
        status: TaskLifecycleStatus,
        *,
        expect_executor: str | None = None,
        expect_epoch: int | None = None,
        expect_statuses: Iterable[TaskLifecycleStatus] | None = None,
        **fields: Any,
    ) -> Task:
        """Change status through the state machine; optional fences on executor / epoch / status.

        A fence that no longer holds raises :class:`Conflict` (the caller lost ownership).
        """
        change = status_change(
            status,
            expect_executor=expect_executor,
            expect_epoch=expect_epoch,
            expect_statuses=expect_statuses,
            **fields,
        )
        return self.modify(task_id, change)

    def assign(self, task_id: str, executor: str, *, expect_epoch: int | None = None) -> Task:
        """Give the task to ``executor`` at a new epoch, status Assigning (conditional write)."""

        def change(t: Task) -> dict[str, Any]:
            _fence(t, None, expect_epoch, None)
            return {
                "executor": executor,
                "epoch": t.epoch + 1,
                "lifecycle_status": TaskLifecycleStatus.ASSIGNING,
            }

        return self.modify(task_id, change)

    def update_attachments(self, task_id: str, attachments: Any) -> Task:
        return self.modify(task_id, lambda t: {"attachments": attachments})


#: Characters of an exception kept in a status-history entry (the task keeps the whole text).
_DETAIL_LIMIT = 500
#: modify_many reads and writes at most this many tasks at a time.
_MANY_CHUNK = 500


def status_change(
    status: TaskLifecycleStatus,
    *,
    expect_executor: str | None = None,
    expect_epoch: int | None = None,
    expect_statuses: Iterable[TaskLifecycleStatus] | None = None,
    **fields: Any,
) -> Callable[[Task], dict[str, Any]]:
    """The change :meth:`TaskStore.set_status` makes, for :meth:`TaskStore.modify_in_turn`."""
    wanted = frozenset(expect_statuses) if expect_statuses is not None else None

    def change(t: Task) -> dict[str, Any]:
        _fence(t, expect_executor, expect_epoch, wanted)
        return {"lifecycle_status": status, **fields}

    return change


def _prepare(current: Task, change: Callable[[Task], dict[str, Any] | None]) -> tuple[dict[str, Any], Task] | None:
    """What ``change`` writes onto ``current``: the fields (by alias, with the new version, update
    time and status history) and the task as it will be; None when it changes nothing."""
    update = change(current)
    if update is None:
        return None
    new_status = update.get("lifecycle_status")
    if new_status is not None:
        check_transition(current.id, current.lifecycle_status, TaskLifecycleStatus(new_status))
    now = now_ms()
    update = {**update, "version": current.version + 1, "update_date_time": now}
    merged = current.model_copy(update=update)
    if new_status is not None and (merged.lifecycle_status != current.lifecycle_status or "epoch" in update):
        update["status_history"] = _with_change(current, merged, now)
        merged = current.model_copy(update=update)
    doc = merged.to_json_dict()
    aliases = {_alias(k) for k in update}
    return {k: doc[k] for k in aliases}, merged


def _with_change(before: Task, after: Task, now: int) -> builtins.list[StatusChange]:
    """``before``'s status history plus the change to ``after``, capped (oldest dropped)."""
    why = (
        after.exception
        if after.lifecycle_status in (TaskLifecycleStatus.FAILED, TaskLifecycleStatus.CANCELLED)
        else None
    )
    change = StatusChange(
        timestamp=now,
        status=after.lifecycle_status,
        executor=after.executor,
        epoch=after.epoch,
        detail=why[:_DETAIL_LIMIT] if why else None,
        version=after.version,
    )
    return [*before.status_history, change][-STATUS_HISTORY_LIMIT:]


def _fence(
    t: Task,
    executor: str | None,
    epoch: int | None,
    statuses: frozenset[TaskLifecycleStatus] | None,
) -> None:
    if executor is not None and t.executor != executor:
        raise Conflict(f"task {t.id!r} is owned by {t.executor!r}, not {executor!r}")
    if epoch is not None and t.epoch != epoch:
        raise Conflict(f"task {t.id!r} is at epoch {t.epoch}, not {epoch}")
    if statuses is not None and t.lifecycle_status not in statuses:
        raise Conflict(f"task {t.id!r} is {t.lifecycle_status.value}")


def _alias(name: str) -> str:
    info = Task.model_fields.get(name)
    if info is None:
        raise KeyError(f"Task has no field {name!r}")
    return info.alias or name
