"""Node mode: the store says which tasks this skald runs; commands make it happen at once.

A node runs exactly the tasks the store says it owns (executor = this skald, status
Assigning/Running) at the epoch it was given. ``task.assign`` events make that happen within
milliseconds; :meth:`NodePolicy.reconcile` makes it certain (level-triggered), whatever events
were lost, duplicated or replayed. A copy this skald no longer owns at the same epoch is stopped
(fencing); a new copy waits until the previous one's heartbeat lease is gone, so one task never
runs twice.
"""

from __future__ import annotations

import time
from typing import Any

from skalds.model.task import LIVE_STATUSES, Task, TaskLifecycleStatus
from skalds.node.commands import Command
from skalds.node.policy import ModePolicy
from skalds.node.port import AgentPort
from skalds.node.waiting import WaitingQueue
from skalds.utils.logging import logger
from skalds.worker.supervisor import WorkerHandle

S = TaskLifecycleStatus
#: Direct updates for a task that is ours but whose start waits (previous copy's lease) are kept
#: this long, at most this many per task.
STASH_SECONDS = 30.0
STASH_MAX = 100
#: How soon to look again at a task waiting for a previous copy's lease to end.
LEASE_RECHECK = 0.1


class NodePolicy(ModePolicy):
    """Runs what the store assigns to this skald."""

    name = "node"

    def __init__(self, port: AgentPort) -> None:
        super().__init__(port)
        #: Tasks waiting for a previous copy's heartbeat lease to end.
        self.deferred: set[str] = set()
        #: Direct updates for tasks that are ours but not started yet.
        self._stashed: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        #: Tasks waiting for their class to be under its limit, by class.
        self.waiting: dict[str, WaitingQueue] = {}

    @property
    def fence_after(self) -> float | None:
        # Workers stop themselves when this skald stops answering for as long as its own lease
        # lives (see skalds.worker.link): by then the monitor may give the task to another node.
        return self.port.config.redis_key_ttl

    # ---- hooks ---------------------------------------------------------------------------
    def started(self) -> None:
        self.reconcile()

    def worker_started(self, handle: WorkerHandle) -> None:
        self._flush_stash(handle.task_id)

    def slot_freed(self, handle: WorkerHandle) -> None:
        if self.waiting:
            # The next waiting task of its class starts (in the process this one may have left
            # idle) while this one's end is written.
            self._start_waiting(handle.class_name)

    def ownership_lost(self, handle: WorkerHandle, reason: str) -> None:
        logger.warning(f"task {handle.task_id} is no longer ours ({reason}); stopping its worker")
        self.port.supervisor.stop(handle.task_id, "fenced")

    # ---- commands ------------------------------------------------------------------------
    def apply(self, command: Command) -> None:
        if command.kind == "assign":
            if command.recipient and command.recipient != self.port.skald_id:
                return
            for task_id in command.task_ids:
                if self.port.supervisor.get(task_id) is not None:
                    self._verify_ownership(task_id)
                else:
                    self._ensure_owned_running(task_id)
            return
        if command.kind == "cancel":
            for task_id in command.task_ids:
                self._drop_waiting(task_id)
        super().apply(command)

    def update_for_idle_task(self, task_id: str, attachments: dict[str, Any]) -> None:
        # A direct update may overtake its task's assign (topics are ordered only within a
        # partition). If the store says the task is ours, start it now; keep the update for it.
        self._ensure_owned_running(task_id)
        if self.port.supervisor.get(task_id) is not None:
            self.port.supervisor.send_update(task_id, attachments, origin="direct")
        elif task_id in self.deferred:
            self._stash_update(task_id, attachments)

    def _stash_update(self, task_id: str, attachments: dict[str, Any]) -> None:
        """Keep a direct update for a task that is ours but not started yet (bounded)."""
        now = time.monotonic()
        kept = [(t, a) for t, a in self._stashed.get(task_id, []) if now - t < STASH_SECONDS]
        self._stashed[task_id] = [*kept, (now, attachments)][-STASH_MAX:]

    def _flush_stash(self, task_id: str) -> None:
        now = time.monotonic()
        for stamp, attachments in self._stashed.pop(task_id, []):
            if now - stamp < STASH_SECONDS:
                self.port.supervisor.send_update(task_id, attachments, origin="direct")

    # ---- starting owned tasks ------------------------------------------------------------
    def _ensure_owned_running(self, task_id: str, *, waited: bool = False) -> None:
        port = self.port
        if port.supervisor.get(task_id) is not None:
            return
        task = port.backends.with_store("read", lambda s: s.get(task_id))
        if task is None or task.executor != port.skald_id or task.lifecycle_status not in LIVE_STATUSES:
            self._drop_waiting(task_id)
            return
        self._start_owned(task, waited=waited)

    def _start_owned(self, task: Task, *, waited: bool = False) -> None:
        """Start a task the store gave us, unless a previous copy's heartbeat lease is still alive.

        That copy belongs to the previous owner (or our own previous life). Its lease expires
        within three heartbeat intervals, or is removed at once when that copy stops; until then
        we wait, so one task never runs twice.
        """
        port = self.port
        if task.id in port.unwritten:
            # It ended here while the store could not take its end: write that end, never run it
            # again. (The next reconcile reads the task afresh, should the store disagree.)
            port.flush_unwritten(task.id)
            return
        if self._must_wait_for_slot(task, waited):
            return
        state = port.backends.with_state("lease", lambda v: v.task_state(task.id))
        beat = (state or {}).get("heartbeat")
        if beat is not None and 0 <= beat < 200:
            if task.id not in self.deferred:
                logger.info(f"task {task.id}: a previous copy still holds its heartbeat lease; waiting")
            self.deferred.add(task.id)
            port.reconcile_soon(LEASE_RECHECK)
            return
        self.deferred.discard(task.id)
        port.start_worker(task, task.epoch)

    # ---- per-class limits (BaseTaskWorker.max_concurrent_tasks) ----------------------------
    def _class_limit(self, class_name: str) -> int | None:
        registry = self.port.registry
        if class_name not in registry:
            return None
        limit: int | None = registry.get(class_name).max_concurrent_tasks
        return limit

    def _must_wait_for_slot(self, task: Task, waited: bool) -> bool:
        """Queue ``task`` (Assigning, owned) when its class is at its limit here, or when others
        of its class came first; True when queued. The lease is checked when it is its turn."""
        limit = self._class_limit(task.class_name)
        if limit is None:
            return False
        busy = self.port.supervisor.count(task.class_name) >= limit
        if not busy and (waited or not self.waiting.get(task.class_name)):
            return False
        waiting = self.waiting.setdefault(task.class_name, WaitingQueue())
        if waiting.add(task):
            logger.debug(f"task {task.id}: {task.class_name} runs {limit} at once here; waiting ({len(waiting)})")
        return True

    def _start_waiting(self, class_name: str) -> None:
        """Start waiting tasks of ``class_name`` while it is under its limit, highest priority
        first, then oldest; each is read again first (it may have been cancelled or moved while it
        waited)."""
        waiting = self.waiting.get(class_name)
        limit = self._class_limit(class_name)
        supervisor = self.port.supervisor
        while waiting and not self.port.stopping and (limit is None or supervisor.count(class_name) < limit):
            task_id = waiting.pop()
            if not waiting:
                self.waiting.pop(class_name, None)
            if task_id is None:
                return
            self._ensure_owned_running(task_id, waited=True)

    def _drop_waiting(self, task_id: str) -> None:
        for class_name, waiting in list(self.waiting.items()):
            if waiting.discard(task_id) and not waiting:
                del self.waiting[class_name]

    # ---- ownership -----------------------------------------------------------------------
    def _verify_ownership(self, task_id: str) -> None:
        """Stop our copy unless the store still says it is ours, at our epoch, and live."""
        port = self.port
        handle = port.supervisor.get(task_id)
        if handle is None or handle.stopping or port.backends.store() is None:
            return
        task = port.backends.with_store("read", lambda s: s.get(task_id))
        if task is None:
            if port.backends.store() is not None:
                logger.warning(f"task {task_id} was deleted from the store; stopping its worker")
                port.supervisor.stop(task_id, "fenced")
            return
        if task.executor == port.skald_id and task.epoch == handle.epoch:
            if task.lifecycle_status == S.PAUSED:
                port.supervisor.stop(task_id, "pause")
            elif task.lifecycle_status == S.CANCELLED:
                port.supervisor.stop(task_id, "cancel")
            elif task.lifecycle_status not in LIVE_STATUSES:
                port.supervisor.stop(task_id, "fenced")
            return
        logger.warning(f"task {task_id} now belongs to {task.executor} at epoch {task.epoch}; stopping ours")
        port.supervisor.stop(task_id, "fenced")

    # ---- reconciliation ------------------------------------------------------------------
    def reconcile(self) -> None:
        port = self.port
        owned = port.backends.with_store("owned", lambda s: s.owned_by(port.skald_id))
        if owned is None:
            return  # store unreachable: keep what runs, decide when it is back
        by_id = {t.id: t for t in owned}
        for task_id in [t for waiting in self.waiting.values() for t in waiting if t not in by_id]:
            self._drop_waiting(task_id)  # no longer ours (cancelled, paused, moved)
        for handle in port.supervisor.handles():
            if handle.stopping or (handle.task_id in by_id and by_id[handle.task_id].epoch == handle.epoch):
                continue
            self._verify_ownership(handle.task_id)
        for task in owned:
            current = port.supervisor.get(task.id)
            if current is None:
                self._start_owned(task)
            elif (
                not current.stopping
                and not current.update_origins
                and task.epoch == current.epoch
                and task.attachments != current.sent_attachments
            ):
                # An update whose event was lost (or sent while the bus was down): level-triggered.
                logger.info(f"task {task.id}: stored attachments differ from the worker's; forwarding them")
                port.supervisor.send_update(task.id, task.attachments, origin="store")


__all__ = ["LEASE_RECHECK", "STASH_MAX", "STASH_SECONDS", "NodePolicy"]
