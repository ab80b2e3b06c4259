"""``Dispatcher``: gives Created tasks to online node skalds, retries failures, enforces deadlines.

Level-triggered (docs/design.md, principle 1): every pass reads the store and acts on what it finds, so it
is correct however often it runs and whatever events were lost. The app runs it right after a
create / resume / retry (a task starts within milliseconds) and on a sweep every
``DISPATCHER_INTERVAL`` seconds. A pass after a create looks only at the tasks just created and at
the head of the queue (:data:`QUEUE_HEAD`), so its cost does not grow with a backlog of tasks that
cannot be placed yet; the sweep looks at all of them.

One owner per task (docs/design.md, principle 2): an assignment is a compare-and-set in the store, fenced on the
status (Created) and epoch the dispatcher read, so two dispatchers — or a dispatcher and an
operator — can never both assign a task; the loser sees a Conflict and moves on. Only Passive
tasks are dispatched: Active tasks belong to their edge skald, PassiveProcess ones to their
single-process runner.

Retries: a Passive task that failed with ``retries < TASK_WORKER_RETRY`` returns to Created once
``updateDateTime + 1 s × 2**retries`` has passed (the Failed write is the task's last write, so its
time is when the backoff starts), with ``retries`` incremented; when the budget is spent it stays
Failed. Deadlines: a task not yet final whose ``deadlineDateTime`` has passed is cancelled with the
exception text "deadline passed".

Dependencies: a Created task waits until each of its dependencies is Finished. When one of them can
never finish — it was deleted, it is Cancelled, or it failed for good (Failed, and the dispatcher
will not retry it: no retries left, its deadline passed, or one of *its* dependencies can never
finish; see :func:`~skalds.model.task.retried_later`) — the task fails, with the exception
"dependency <id> was deleted" / "dependency <id> was cancelled" / "dependency <id> failed" (the
first such dependency in its list). A dependency that failed but will be retried is not final yet:
its dependents keep waiting. The write is fenced like an assignment (still Created, at the epoch
read). Such a task is not retried while the dependency stays so; once the dependency runs again (an
operator retried it) the task is retried within its own budget like any other.

Placement: a node takes a task only if it has the task's class, the labels of its node selector
and enough free resources (:mod:`skalds.controller.placement`); the tasks given to a node earlier
in the same pass count as used. A task that fits on no node stays Created; why is kept in the
cache (``task:{id}:placement``, the API item's ``placement``) and logged once when it changes.

Delayed start: a task whose ``notBefore`` lies ahead is left Created. Each pass remembers when
the delayed tasks it saw become due (:attr:`Dispatcher.next_due_ms`), and the leader's look every
:data:`WANTED_POLL` seconds dispatches those that have come due, so a delayed task starts within
about that after its time, not at the next sweep; the sweep finds any it did not remember.

Leadership: with several dispatching controllers only the holder of the leader lease
(:mod:`skalds.controller.leader`) assigns; the app gives the Dispatcher its lease check
(``may_dispatch``), and every pass of a standby does nothing. A controller that may not dispatch (a
standby, or one in CONTROLLER mode) appends the ids of the tasks it made runnable to the cache list
:data:`DISPATCH_WANTED`; the leader looks at it every :data:`WANTED_POLL` seconds
(:meth:`Dispatcher.dispatch_wanted`), so such a task is assigned within about that, not at the
next sweep.

Everything here is synchronous (blocking driver calls); the app calls it in a worker thread.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from skalds.backends.bus.base import Topic
from skalds.backends.store.base import TaskQuery
from skalds.controller.config import DispatcherStrategyEnum
from skalds.controller.cordon import drain_pass
from skalds.controller.fleet import SkaldInfo
from skalds.controller.placement import NodeView, candidates, count_used
from skalds.controller.service import SHARED_SNAPSHOT_AGE, ControllerService
from skalds.errors import Conflict, LostWrite
from skalds.model.task import (
    LIVE_STATUSES,
    OPEN_STATUSES,
    ModeEnum,
    Task,
    TaskLifecycleStatus,
    now_ms,
    retried_later,
)
from skalds.utils.logging import logger

S = TaskLifecycleStatus
DEADLINE_PASSED = "deadline passed"
#: Longest wait between two retries of a task, however many it has had.
MAX_BACKOFF_S = 300.0
#: Cache list of task ids other controllers want dispatched now (read and emptied by the leader).
DISPATCH_WANTED = "skalds:controller:dispatch-wanted"
#: Seconds between the leader's looks at :data:`DISPATCH_WANTED`.
WANTED_POLL = 0.2
#: Ids the list keeps at most, and its lifetime in seconds (the sweep covers anything it drops).
WANTED_MAX, WANTED_TTL = 10_000, 60.0
#: Waiting tasks (highest priority, then oldest first) a pass for given tasks also considers, so
#: the queue's head keeps its place before newer tasks, at a cost that does not grow with the queue.
QUEUE_HEAD = 16
#: Delayed tasks whose due time the dispatcher remembers at most (the earliest; the sweep finds the rest).
DUE_MAX = 10_000


@dataclass
class SweepResult:
    """What one pass did (for logs, status and tests)."""

    assigned: list[tuple[str, str]] = field(default_factory=list)  # (task id, skald id)
    retried: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    drained: list[tuple[str, str]] = field(default_factory=list)  # (task id, draining skald id)


class Dispatcher:
    """Assigns pending tasks by priority then age, with a pluggable node choice."""

    def __init__(
        self,
        service: ControllerService,
        strategy: DispatcherStrategyEnum | str | None = None,
        *,
        retry_budget: int | None = None,
        backoff_base: float = 1.0,
        rng: random.Random | None = None,
        may_dispatch: Callable[[], bool] | None = None,
        on_assigned: Callable[[list[tuple[str, str]]], None] | None = None,
    ) -> None:
        self.service = service
        self.strategy = DispatcherStrategyEnum(strategy or service.config.dispatcher_strategy)
        self.retry_budget = service.config.task_worker_retry if retry_budget is None else retry_budget
        self.backoff_base = backoff_base
        self._rng = rng or random.Random()
        self._next = 0  # round-robin position
        # One pass at a time in this process: the sweep and create-triggered passes share it.
        self._lock = threading.RLock()
        self.last_sweep_ms: int | None = None
        self.last_error: str | None = None
        self.assigned_total = 0
        #: Whether this process may dispatch now (the leader lease; always, when used alone).
        self.may_dispatch: Callable[[], bool] = may_dispatch or (lambda: True)
        #: Told the ``(task id, skald id)`` of every pass that assigned some (the app measures
        #: dispatch latency); its failure never fails the pass.
        self.on_assigned = on_assigned
        #: How many waiting tasks the last dispatch pass read (for status and tests).
        self.last_considered = 0
        #: Delayed tasks seen by the passes: task id → ``notBefore`` (ms).
        self._due: dict[str, int] = {}
        #: Waiting tasks that fit on no node: task id → why (as last written to the cache).
        self._unplaced: dict[str, str] = {}

    # ---- passes --------------------------------------------------------------------------
    def sweep(self) -> SweepResult:
        """One full pass: deadlines, then retries, then dispatch."""
        if not self.may_dispatch():
            return SweepResult()
        with self._lock:
            result = SweepResult(expired=self.enforce_deadlines(), retried=self.retry_failed())
            result.drained = drain_pass(self.service, self.service.fleet.all())
            result.assigned = self.dispatch_pending()
            self.last_sweep_ms = now_ms()
            return result

    def dispatch_pending(self, task_ids: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """Assign every dispatchable Created task — or, given ``task_ids``, those of them still
        waiting and the :data:`QUEUE_HEAD` first of the queue; returns ``(task id, skald id)`` per
        assignment."""
        if not self.may_dispatch():
            return []
        with self._lock:
            assigned = self._dispatch(task_ids)
            self.assigned_total += len(assigned)
        if assigned and self.on_assigned is not None:
            try:
                self.on_assigned(assigned)
            except Exception as exc:  # an observer never breaks dispatch
                logger.debug(f"observer of {len(assigned)} assignment(s) failed: {exc}")
        return assigned

    def _dispatch(self, task_ids: Sequence[str] | None) -> list[tuple[str, str]]:
        """One dispatch pass (under the lock): choose a node for each task that can run, write."""
        pending = self._pending(task_ids)
        self.last_considered = len(pending)
        self._remember_due(pending, full=task_ids is None)
        pending = self._fail_orphans(pending)
        if not pending:
            return []
        nodes = [s for s in self.service.fleet.online() if s.type == "node" and not s.cordoned]
        if not nodes:
            return []
        views = {n.id: n.node_view() for n in nodes}
        by_id = {n.id: n for n in nodes}
        if any(v.needs(t).requires for t in pending for v in views.values()):
            load = self._count_used(views)
        else:
            load = self._load(nodes) if self.strategy == DispatcherStrategyEnum.LEAST_TASKS else {}
        deps = self._dependency_statuses(pending)
        now = now_ms()
        choices: dict[str, tuple[Task, str]] = {}
        unplaced: dict[str, str] = {}
        for task in pending:
            if task.deadline_date_time is not None and task.deadline_date_time <= now:
                self._expire(task)
                continue
            if task.not_before is not None and task.not_before > now:
                continue  # remembered by _remember_due: dispatched once due
            if any(deps.get(d) != S.FINISHED for d in task.dependencies or ()):
                continue
            fit, why = candidates(task, list(views.values()))
            if not fit:
                if why is not None:
                    unplaced[task.id] = why
                continue
            chosen = self._choose([by_id[v.id] for v in fit], load)
            load[chosen.id] = load.get(chosen.id, 0) + 1
            views[chosen.id].take(task)
            choices[task.id] = (task, chosen.id)
        assigned = self._assign_many(choices)
        try:
            self._note_unplaced(unplaced, [t.id for t in pending], full=task_ids is None)
        except Exception as exc:  # the reasons are for people; a cache hiccup never fails the pass
            logger.debug(f"placement reasons of {len(unplaced)} task(s) not written: {exc}")
        return assigned

    def _count_used(self, views: dict[str, NodeView]) -> dict[str, int]:
        """Count the requirements of the live tasks each node owns (the store's truth) as used;
        returns how many each owns."""
        live = tuple(LIVE_STATUSES)
        load = {}
        for node_id, view in views.items():
            owned = self.service.store.list(TaskQuery(executor=node_id, statuses=live)).items
            count_used(view, owned)
            load[node_id] = len(owned)
        return load

    def _note_unplaced(self, unplaced: dict[str, str], considered: Sequence[str], *, full: bool) -> None:
        """Keep why each of ``unplaced`` fits nowhere in the cache, and forget it for the other
        tasks considered; log only changes. A full pass writes every reason again (their TTL)."""
        changed = {i: why for i, why in unplaced.items() if self._unplaced.get(i) != why}
        for task_id, why in changed.items():
            logger.info(f"task {task_id}: waits: {why}")
        placed = [i for i in considered if i in self._unplaced and i not in unplaced]
        if full:
            placed = [i for i in self._unplaced if i not in unplaced]
            self._unplaced = dict(unplaced)
        else:
            for task_id in placed:
                del self._unplaced[task_id]
            self._unplaced.update(unplaced)
        if len(self._unplaced) > DUE_MAX:
            self._unplaced.clear()
        written = unplaced if full else changed
        if written or placed:
            self.service.state.task_placement(written, placed)

    def _remember_due(self, pending: Sequence[Task], *, full: bool) -> None:
        """Note when the delayed tasks among ``pending`` become due; a full pass (the sweep) saw
        every waiting task, so it replaces what was remembered."""
        now = now_ms()
        delayed = {t.id: t.not_before for t in pending if t.not_before is not None and t.not_before > now}
        due = delayed if full else {**self._due, **delayed}
        if len(due) > DUE_MAX:
            due = dict(sorted(due.items(), key=lambda item: item[1])[:DUE_MAX])
        self._due = due

    @property
    def next_due_ms(self) -> int | None:
        """When the earliest delayed task this dispatcher knows of becomes due (ms), if any."""
        return min(self._due.values(), default=None)

    def dispatch_due(self) -> list[tuple[str, str]]:
        """Dispatch the delayed tasks that have come due (see :meth:`_remember_due`), if we lead."""
        if not self._due or not self.may_dispatch():
            return []
        now = now_ms()
        with self._lock:
            due = [i for i, at in self._due.items() if at <= now]
            for task_id in due:
                del self._due[task_id]
        return self.dispatch_pending(due) if due else []

    def _pending(self, task_ids: Sequence[str] | None) -> list[Task]:
        """The waiting Passive tasks to consider, by priority then age."""
        queue = TaskQuery(statuses=(S.CREATED,), mode=ModeEnum.PASSIVE.value, order="-priority")
        store = self.service.store
        if task_ids is None:
            return store.list(queue).items
        head = store.list(TaskQuery(**{**queue.__dict__, "limit": QUEUE_HEAD})).items
        given = store.list(TaskQuery(**{**queue.__dict__, "ids": tuple(task_ids)})).items if task_ids else []
        merged = {t.id: t for t in (*head, *given)}
        return sorted(merged.values(), key=lambda t: (-t.priority, t.create_date_time, t.id))

    def dispatch_wanted(self) -> list[tuple[str, str]]:
        """Dispatch the delayed tasks that have come due (:meth:`dispatch_due`) and the tasks other
        controllers asked for (:data:`DISPATCH_WANTED`), if we lead. An id appended between the
        read and the delete waits for the sweep."""
        if not self.may_dispatch():
            return []
        assigned = self.dispatch_due()
        cache = self.service.state.cache
        wanted = cache.lrange(DISPATCH_WANTED)
        if not wanted:
            return assigned
        cache.delete(DISPATCH_WANTED)
        return assigned + self.dispatch_pending(list(dict.fromkeys(wanted)))

    def retry_failed(self) -> list[str]:
        """Put failed Passive tasks whose backoff has passed back to Created, within the budget."""
        if self.retry_budget <= 0:
            return []
        with self._lock:
            failed = self.service.store.list(TaskQuery(statuses=(S.FAILED,), mode=ModeEnum.PASSIVE.value)).items
            now = now_ms()
            retried = []
            for task in failed:
                if task.retries >= self.retry_budget:
                    continue  # failed for good
                if task.deadline_date_time is not None and task.deadline_date_time <= now:
                    continue  # a retry could only be cancelled again
                if now < task.update_date_time + self.backoff_ms(task.retries):
                    continue
                if task.dependencies and self._never_ready([task], now):
                    continue  # a retry could only fail again: a dependency can never finish
                if self._retry(task):
                    retried.append(task.id)
            return retried

    def enforce_deadlines(self) -> list[str]:
        """Cancel every task not yet final whose deadline has passed."""
        with self._lock:
            now = now_ms()
            open_tasks = self.service.live.snapshot(max_age=SHARED_SNAPSHOT_AGE).tasks.values()
            return [
                t.id
                for t in open_tasks
                if t.deadline_date_time is not None and t.deadline_date_time <= now and self._expire(t)
            ]

    def backoff_ms(self, retries: int) -> int:
        return int(min(self.backoff_base * 2**retries, MAX_BACKOFF_S) * 1000)

    # ---- steps ---------------------------------------------------------------------------
    def _load(self, nodes: Sequence[SkaldInfo]) -> dict[str, int]:
        """Live tasks each node owns according to the store (the truth, not the node's report)."""
        store = self.service.store
        live = tuple(LIVE_STATUSES)
        return {n.id: store.list(TaskQuery(executor=n.id, statuses=live, limit=0)).total for n in nodes}

    def _fail_orphans(self, pending: Sequence[Task]) -> list[Task]:
        """Fail the tasks of ``pending`` one of whose dependencies can never finish (fenced: only
        if still Created at the epoch read); returns the others."""
        orphans = self._never_ready([t for t in pending if t.dependencies], now_ms())
        for task in pending:
            why = orphans.get(task.id)
            if why is None:
                continue
            try:
                self.service.store.set_status(
                    task.id, S.FAILED, expect_epoch=task.epoch, expect_statuses=(S.CREATED,), exception=why
                )
            except LostWrite as exc:
                logger.debug(f"task {task.id}: not failed for its dependency: {exc}")
                continue
            logger.info(f"task {task.id}: failed: {why}")
        return [t for t in pending if t.id not in orphans]

    def _never_ready(self, tasks: Sequence[Task], now: int) -> dict[str, str]:
        """Why each of ``tasks`` that can never run cannot (its first dependency that was deleted,
        was cancelled or failed for good, as the exception text), by task id; the rest are left
        out. Dependencies are read once per pass, and further down a chain only where a Failed
        dependency could be retried but for its own dependencies."""
        known: dict[str, Task | None] = {}

        def read(ids: Sequence[str]) -> None:
            wanted = sorted(set(ids) - known.keys())
            if wanted:
                found = {t.id: t for t in self.service.store.list(TaskQuery(ids=tuple(wanted))).items}
                known.update({i: found.get(i) for i in wanted})

        def blocker(task: Task, seen: frozenset[str]) -> str | None:
            deps = task.dependencies or ()
            read(deps)
            for dep_id in deps:
                dep = known[dep_id]
                if dep is None:
                    return f"dependency {dep_id} was deleted"
                if dep.lifecycle_status == S.CANCELLED:
                    return f"dependency {dep_id} was cancelled"
                if dep.lifecycle_status == S.FAILED and dep_id not in seen and failed_for_good(dep, seen | {dep_id}):
                    return f"dependency {dep_id} failed"
            return None

        def failed_for_good(dep: Task, seen: frozenset[str]) -> bool:
            if dep.mode != ModeEnum.PASSIVE:
                return not dep.is_persistent  # a persistent edge / single-process task restarts by itself
            if not retried_later(dep, self.retry_budget, now):
                return True
            return bool(dep.dependencies) and blocker(dep, seen) is not None

        read([d for t in tasks for d in t.dependencies or ()])  # the first level in one read
        reasons = {t.id: blocker(t, frozenset({t.id})) for t in tasks}
        return {i: why for i, why in reasons.items() if why is not None}

    def _dependency_statuses(self, tasks: Sequence[Task]) -> dict[str, TaskLifecycleStatus]:
        ids = sorted({d for t in tasks for d in t.dependencies or ()})
        if not ids:
            return {}
        found = self.service.store.list(TaskQuery(ids=tuple(ids))).items
        return {t.id: t.lifecycle_status for t in found}

    def _choose(self, candidates: Sequence[SkaldInfo], load: dict[str, int]) -> SkaldInfo:
        ordered = sorted(candidates, key=lambda s: s.id)
        if self.strategy == DispatcherStrategyEnum.ROUND_ROBIN:
            chosen = ordered[self._next % len(ordered)]
            self._next += 1
            return chosen
        if self.strategy == DispatcherStrategyEnum.RANDOM:
            return self._rng.choice(ordered)
        return min(ordered, key=lambda s: (load.get(s.id, 0), s.id))

    def _assign_many(self, choices: dict[str, tuple[Task, str]]) -> list[tuple[str, str]]:
        """Compare-and-set each task to its chosen skald — only if it is still Created at the
        epoch we read — in one store write, then one ``task.assign`` per task, published together
        per skald. Returns ``(task id, skald id)`` of each assignment made, in ``choices`` order."""
        if not choices:
            return []

        def change_for(task: Task, skald_id: str) -> Callable[[Task], dict[str, Any]]:
            def change(t: Task) -> dict[str, Any]:
                if t.lifecycle_status != S.CREATED or t.epoch != task.epoch or t.mode != ModeEnum.PASSIVE:
                    raise Conflict(
                        f"task {t.id!r} changed since it was read ({t.lifecycle_status.value}, epoch {t.epoch})"
                    )
                return {"executor": skald_id, "epoch": t.epoch + 1, "lifecycle_status": S.ASSIGNING}

            return change

        results = self.service.store.modify_many({i: change_for(t, s) for i, (t, s) in choices.items()})
        assigned: list[tuple[str, str]] = []
        by_skald: dict[str, list[str]] = {}
        for task_id, (task, skald_id) in choices.items():
            result = results.get(task_id)
            if not isinstance(result, Task):
                logger.debug(f"task {task_id}: not assigned: {result}")
                continue
            logger.info(f"task {task_id} (priority {task.priority}) assigned to {skald_id}")
            assigned.append((task_id, skald_id))
            by_skald.setdefault(skald_id, []).append(task_id)
        for skald_id, task_ids in by_skald.items():
            self.service.publish_many(Topic.TASK_ASSIGN, task_ids, recipient=skald_id)
        return assigned

    def _retry(self, task: Task) -> bool:
        def change(t: Task) -> dict[str, Any]:
            if t.version != task.version:
                raise Conflict(f"task {t.id!r} changed since it was read")
            return {"lifecycle_status": S.CREATED, "retries": t.retries + 1, "executor": None}

        try:
            self.service.store.modify(task.id, change)
        except LostWrite as exc:
            logger.debug(f"task {task.id}: not retried: {exc}")
            return False
        logger.info(f"task {task.id}: retry {task.retries + 1} of {self.retry_budget} after it failed")
        return True

    def _expire(self, task: Task) -> bool:
        try:
            self.service.store.set_status(
                task.id, S.CANCELLED, expect_statuses=OPEN_STATUSES, exception=DEADLINE_PASSED
            )
        except LostWrite as exc:
            logger.debug(f"task {task.id}: deadline not enforced: {exc}")
            return False
        logger.info(f"task {task.id}: deadline passed; cancelled")
        self.service.publish(Topic.TASK_CANCEL, task.id)
        return True

    def status(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.value,
            "retryBudget": self.retry_budget,
            "lastSweep": self.last_sweep_ms,
            "lastError": self.last_error,
            "assignedTotal": self.assigned_total,
            "nextDue": self.next_due_ms,
        }


def want_dispatch(service: ControllerService, task_ids: Sequence[str]) -> None:
    """Ask the leading controller to dispatch ``task_ids`` now (see :meth:`Dispatcher.dispatch_wanted`)."""
    if task_ids:
        service.state.cache.extend_list(DISPATCH_WANTED, list(task_ids), max_len=WANTED_MAX, ttl=WANTED_TTL)


__all__ = ["DEADLINE_PASSED", "DISPATCH_WANTED", "Dispatcher", "SweepResult", "want_dispatch"]
