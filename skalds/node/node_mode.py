"""The agent's node mode: commands from the bus, ownership from the store.

A node runs exactly the tasks the store says it owns (executor = this skald, status
Assigning/Running) at the epoch it was given. Commands make that happen within milliseconds;
:meth:`NodeMode._reconcile` makes it certain (level-triggered), whatever events were lost.
"""

from __future__ import annotations

import queue
import socket
import time
from typing import TYPE_CHECKING, Any

from skalds.backends.bus.base import Message
from skalds.config.skald_config import SkaldModeEnum
from skalds.model.task import LIVE_STATUSES, Task, TaskLifecycleStatus
from skalds.node._parts import _AgentParts
from skalds.node.commands import Command, MalformedEvent, parse_message
from skalds.node.waiting import WaitingQueue
from skalds.utils.logging import logger
from skalds.worker.registry import WorkerRegistry

S = TaskLifecycleStatus
#: Direct updates for a task that is ours but whose start waits (previous copy's lease) are kept
#: this long, at most this many per task.
STASH_SECONDS = 30.0
STASH_MAX = 100


class NodeMode(_AgentParts):
    _commands: queue.SimpleQueue[Message]
    _cmd_w: socket.socket
    _stashed: dict[str, list[tuple[float, dict[str, Any]]]]
    #: Tasks waiting for their class to be under its limit, by class (highest priority, then oldest, first).
    _waiting: dict[str, WaitingQueue]
    _stop_requested: int
    registry: WorkerRegistry

    if TYPE_CHECKING:

        def _edge_reconcile(self) -> None: ...

    # ---- commands ------------------------------------------------------------------------
    def _deliver(self, messages: list[Message]) -> None:
        for m in messages:
            self._commands.put(m)
        try:
            self._cmd_w.send(b"x")
        except OSError:
            pass

    def _handle_commands(self) -> None:
        while True:
            try:
                message = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                command = parse_message(message)
            except MalformedEvent as exc:
                logger.warning(
                    f"skipped a malformed event on {message.topic} (key {str(message.key)[:100]!r}, "
                    f"offset {message.offset}): {str(exc)[:500]}"
                )
                continue
            try:
                self._apply(command)
            except Exception as exc:
                logger.opt(exception=exc).error(f"command {command.kind} {list(command.task_ids)} failed")

    def _apply(self, command: Command) -> None:
        if command.kind == "assign":
            if self.mode != SkaldModeEnum.NODE:
                return
            if command.recipient and command.recipient != self.skald_id:
                return
            for task_id in command.task_ids:
                if self.supervisor.get(task_id) is not None:
                    self._verify_ownership(task_id)
                else:
                    self._ensure_owned_running(task_id)
        elif command.kind == "cancel":
            for task_id in command.task_ids:
                self._drop_waiting(task_id)
                if self.supervisor.get(task_id) is None:
                    continue
                # Pause travels as a cancel event too: the store says which it is.
                task = self.backends.with_store("read", lambda s, t=task_id: s.get(t))  # type: ignore[misc]
                status = None if task is None else task.lifecycle_status
                if status in LIVE_STATUSES and 0 < command.published_ms < self.started_ms:
                    # Replayed from before this skald started (a new consumer group looks back a
                    # little): the task was resumed or retried since, as the store says.
                    logger.info(f"task {task_id}: ignored a cancel from before this skald started (now {status})")
                    continue
                reason = "pause" if status == S.PAUSED else "cancel"
                if self.supervisor.stop(task_id, reason):
                    logger.info(f"task {task_id}: {reason} received, stopping its worker")
        elif command.kind == "update":
            for task_id in command.task_ids:
                self._forward_update(task_id, command.attachments)

    def _forward_update(self, task_id: str, attachments: dict[str, Any] | None) -> None:
        handle = self.supervisor.get(task_id)
        if handle is None and attachments is not None and self.mode == SkaldModeEnum.NODE:
            # A direct update may overtake its task's assign (topics are ordered only within a
            # partition). If the store says the task is ours, start it now; keep the update for it.
            self._ensure_owned_running(task_id)
            handle = self.supervisor.get(task_id)
            if handle is None and task_id in self._deferred:
                self._stash_update(task_id, attachments)
                return
        if handle is None:
            return
        if attachments is not None:
            self.supervisor.send_update(task_id, attachments, origin="direct")
            return
        task = self.backends.with_store("read", lambda s: s.get(task_id))
        if task is None or task.attachments == handle.sent_attachments:
            return  # nothing new since the last update we sent (duplicate or replayed event)
        self.supervisor.send_update(task_id, task.attachments, origin="store")

    def _stash_update(self, task_id: str, attachments: dict[str, Any]) -> None:
        """Keep a direct update for a task that is ours but not started yet (bounded)."""
        now = time.monotonic()
        kept = [(t, a) for t, a in self._stashed.get(task_id, []) if now - t < STASH_SECONDS]
        self._stashed[task_id] = [*kept, (now, attachments)][-STASH_MAX:]

    def _flush_stash(self, task_id: str) -> None:
        now = time.monotonic()
        for stamp, attachments in self._stashed.pop(task_id, []):
            if now - stamp < STASH_SECONDS:
                self.supervisor.send_update(task_id, attachments, origin="direct")

    def _ensure_owned_running(self, task_id: str, *, waited: bool = False) -> None:
        if self.supervisor.get(task_id) is not None:
            return
        task = self.backends.with_store("read", lambda s: s.get(task_id))
        if task is None or task.executor != self.skald_id or task.lifecycle_status not in LIVE_STATUSES:
            self._drop_waiting(task_id)
            return
        self._start_owned(task, waited=waited)

    def _start_owned(self, task: Task, *, waited: bool = False) -> None:
        """Start a task the store gave us, unless a previous copy's heartbeat lease is still alive.

        That copy belongs to the previous owner (or our own previous life). Its lease expires
        within three heartbeat intervals, or is removed at once when that copy stops; until then
        we wait, so one task never runs twice.
        """
        if task.id in self.unwritten:
            # It ended here while the store could not take its end: write that end, never run it
            # again. (The next reconcile reads the task afresh, should the store disagree.)
            self._flush_unwritten(task.id)
            return
        limit = self._class_limit(task.class_name)
        busy = self.supervisor.count(task.class_name) >= limit if limit is not None else False
        if limit is not None and (busy or (not waited and self._waiting.get(task.class_name))):
            # At the class's limit (or others came first): wait, Assigning, for a free slot. The
            # lease is checked when it is its turn.
            waiting = self._waiting.setdefault(task.class_name, WaitingQueue())
            if waiting.add(task):
                logger.debug(f"task {task.id}: {task.class_name} runs {limit} at once here; waiting ({len(waiting)})")
            return
        state = self.backends.with_state("lease", lambda v: v.task_state(task.id))
        beat = (state or {}).get("heartbeat")
        if beat is not None and 0 <= beat < 200:
            if task.id not in self._deferred:
                logger.info(f"task {task.id}: a previous copy still holds its heartbeat lease; waiting")
            self._deferred.add(task.id)
            self._next_reconcile = min(self._next_reconcile, time.monotonic() + 0.1)
            return
        self._deferred.discard(task.id)
        self.start_worker(task, task.epoch)

    # ---- per-class limits (BaseTaskWorker.max_concurrent_tasks) ----------------------------
    def _class_limit(self, class_name: str) -> int | None:
        if class_name not in self.registry:
            return None
        limit: int | None = self.registry.get(class_name).max_concurrent_tasks
        return limit

    def _start_waiting(self, class_name: str) -> None:
        """Start waiting tasks of ``class_name`` while it is under its limit, highest priority
        first, then oldest; each is read again first (it may have been cancelled or moved while it
        waited)."""
        waiting = self._waiting.get(class_name)
        limit = self._class_limit(class_name)
        while waiting and not self._stop_requested and (limit is None or self.supervisor.count(class_name) < limit):
            task_id = waiting.pop()
            if not waiting:
                self._waiting.pop(class_name, None)
            if task_id is None:
                return
            self._ensure_owned_running(task_id, waited=True)

    def _drop_waiting(self, task_id: str) -> None:
        for class_name, waiting in list(self._waiting.items()):
            if waiting.discard(task_id) and not waiting:
                del self._waiting[class_name]

    def _verify_ownership(self, task_id: str) -> None:
        """Stop our copy unless the store still says it is ours, at our epoch, and live."""
        handle = self.supervisor.get(task_id)
        if handle is None or handle.stopping:
            return
        store = self.backends.store()
        if store is None:
            return
        task = self.backends.with_store("read", lambda s: s.get(task_id))
        if task is None:
            if self.backends.store() is not None:
                logger.warning(f"task {task_id} was deleted from the store; stopping its worker")
                self.supervisor.stop(task_id, "fenced")
            return
        if task.executor == self.skald_id and task.epoch == handle.epoch:
            if task.lifecycle_status == S.PAUSED:
                self.supervisor.stop(task_id, "pause")
            elif task.lifecycle_status == S.CANCELLED:
                self.supervisor.stop(task_id, "cancel")
            elif task.lifecycle_status not in LIVE_STATUSES:
                self.supervisor.stop(task_id, "fenced")
            return
        logger.warning(f"task {task_id} now belongs to {task.executor} at epoch {task.epoch}; stopping ours")
        self.supervisor.stop(task_id, "fenced")

    # ---- reconciliation ------------------------------------------------------------------
    def _reconcile(self) -> None:
        if len(self.unwritten):
            self._flush_unwritten()
        if self.edge is not None:
            self._edge_reconcile()
            return
        owned = self.backends.with_store("owned", lambda s: s.owned_by(self.skald_id))
        if owned is None:
            return  # store unreachable: keep what runs, decide when it is back
        by_id = {t.id: t for t in owned}
        for task_id in [t for waiting in self._waiting.values() for t in waiting if t not in by_id]:
            self._drop_waiting(task_id)  # no longer ours (cancelled, paused, moved)
        for handle in self.supervisor.handles():
            if handle.stopping or (handle.task_id in by_id and by_id[handle.task_id].epoch == handle.epoch):
                continue
            self._verify_ownership(handle.task_id)
        for task in owned:
            current = self.supervisor.get(task.id)
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
                self.supervisor.send_update(task.id, task.attachments, origin="store")
