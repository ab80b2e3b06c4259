"""Edge mode: the YAML file is the list of tasks, the store follows it.

Workers start from the file before anything is written anywhere (edge autonomy: a box that
cannot reach any server still runs its cameras); the store then records them as ``Active`` with
this skald as executor. The file is checked every ``yaml_poll_interval``: added, changed and
removed entries start, hot-update and stop workers. Operator pause / cancel written to the store
are obeyed and remembered until the entry changes in the file; updates that arrive as events are
written back into the file. A persistent entry (``isPersistent: true``) whose worker ends by itself
— returned, failed or died — starts again with a backoff (:mod:`skalds.node.restarts`), unless an
operator paused or cancelled it meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

from skalds.backends.store.base import TaskQuery, TaskStore
from skalds.errors import LostWrite, SkaldsError
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.node.edge import EdgeTasks
from skalds.node.policy import ModePolicy
from skalds.node.port import AgentPort
from skalds.node.restarts import RestartBackoff
from skalds.utils.logging import logger
from skalds.worker.supervisor import WorkerHandle

S = TaskLifecycleStatus


class EdgePolicy(ModePolicy):
    """Runs what the edge's YAML file lists."""

    name = "edge"

    def __init__(self, port: AgentPort, edge: EdgeTasks) -> None:
        super().__init__(port)
        self.edge = edge
        #: Tasks whose class or settings changed: started again once their old worker exited.
        self._restart_after_exit: dict[str, Task] = {}
        self._next_check = 0.0
        #: Persistent tasks that ended by themselves: when each starts again.
        self._restart_due: dict[str, float] = {}
        self._backoffs: dict[str, RestartBackoff] = {}

    # ---- life ----------------------------------------------------------------------------
    def start(self) -> None:
        stored = self._stored_tasks(list(self.edge.peek_ids()))
        for task in self.edge.initial_tasks(self.port.skald_id, stored):
            self.port.start_worker(task, None)
        self._record(set(self.edge.peek_ids()))
        self._next_check = time.monotonic() + self.port.config.yaml_poll_interval

    def next_deadline(self) -> float | None:
        return min([self._next_check, *self._restart_due.values()])

    def on_deadline(self, now: float) -> None:
        if now >= self._next_check:
            self._next_check = now + self.port.config.yaml_poll_interval
            self._check_file()
        for task_id in [t for t, due in self._restart_due.items() if due <= now]:
            del self._restart_due[task_id]
            self._restart_persistent(task_id)

    def worker_exited(self, handle: WorkerHandle, outcome: TaskLifecycleStatus) -> None:
        if handle.stop_reason == "restart":
            task = self._restart_after_exit.pop(handle.task_id, None)
            if task is not None:
                self.port.start_worker(task, None)
        elif handle.stop_reason is None and outcome in (S.FINISHED, S.FAILED):
            self._schedule_restart(handle, outcome)
        self.edge.on_exit(handle.task_id, outcome)

    # ---- persistent tasks that ended by themselves ------------------------------------------
    def _schedule_restart(self, handle: WorkerHandle, outcome: TaskLifecycleStatus) -> None:
        task = self.edge.task(self.port.skald_id, handle.task_id)
        if task is None or not task.is_persistent or self.port.stopping:
            return
        backoff = self._backoffs.setdefault(task.id, RestartBackoff())
        delay = backoff.next(time.monotonic() - handle.started_at)
        self._restart_due[task.id] = time.monotonic() + delay
        logger.info(f"task {task.id} ended ({outcome.value}); persistent, restarting in {delay:.0f} s")

    def _restart_persistent(self, task_id: str) -> None:
        port = self.port
        task = self.edge.task(port.skald_id, task_id)
        if task is None or port.supervisor.get(task_id) is not None or port.stopping:
            return
        stored = port.backends.with_store("read", lambda s: s.get(task_id))
        if stored is not None and stored.lifecycle_status in (S.PAUSED, S.CANCELLED):
            logger.info(f"task {task_id} is {stored.lifecycle_status.value} in the store; not restarting it")
            return
        # Ended → Assigning first (the state machine has no Finished → Running); a store that is
        # down does not hold the restart back (edge autonomy): the record pass catches up.
        port.write_status(task_id, S.ASSIGNING, None, only_from=(S.FINISHED, S.FAILED))
        port.start_worker(task, None)

    def update_applied(self, handle: WorkerHandle, attachments: Any, origin: str) -> None:
        if origin != "yaml" and isinstance(attachments, dict):
            self.edge.write_back(handle.task_id, attachments)

    # ---- the store follows the file --------------------------------------------------------
    def _stored_tasks(self, ids: list[str]) -> dict[str, Task] | None:
        if not ids:
            return {}
        page = self.port.backends.with_store("read", lambda s: s.list(TaskQuery(ids=tuple(ids))))
        return None if page is None else {t.id: t for t in page.items}

    def _record(self, sync: set[str] | None = None) -> None:
        """Record every YAML task in the store as Active, owned by this skald (idempotent).

        Attachments are written only for the tasks in ``sync`` (those the file just gave or
        changed): at other times the store may hold a newer update on its way to the worker.
        """
        for task in self.edge.tasks(self.port.skald_id):
            running = self.port.supervisor.get(task.id)
            with_attachments = sync is not None and task.id in sync
            self.port.backends.with_store(
                "record",
                lambda s, t=task, r=running, a=with_attachments: self._upsert(s, t, r, a),  # type: ignore[misc]
            )

    def records_itself(self, task_id: str) -> bool:
        return task_id in self.edge.peek_ids()

    def _upsert(self, store: TaskStore, task: Task, running: WorkerHandle | None, sync_attachments: bool) -> None:
        status = S.RUNNING if running is not None and running.running_at is not None else S.ASSIGNING
        if store.get(task.id) is None:
            record = task.model_copy(update={"lifecycle_status": status, "epoch": 1})
            # A task that ended before the store could hold its record (the store was down, or
            # not connected yet, when the edge started it): record its end, not a task to start.
            end = self.port.unwritten.get(task.id) if running is None else None
            if end is not None:
                result = end.result if end.lifecycle_status == S.FINISHED else None
                ended = {"lifecycle_status": end.lifecycle_status, "exception": end.exception, "result": result}
                record = record.model_copy(update=ended)
            try:
                store.create(record)
            except SkaldsError:
                return
            if end is not None:
                self.port.unwritten.discard(task.id)
                logger.info(f"task {task.id}: recorded with its end ({end.status}) now that the store is back")
            return
        try:
            store.modify(task.id, lambda t: self._record_change(t, task, running, status, sync_attachments))
        except LostWrite as exc:
            logger.debug(f"task {task.id}: not recorded: {exc}")

    def _record_change(
        self, t: Task, task: Task, running: WorkerHandle | None, status: TaskLifecycleStatus, sync_attachments: bool
    ) -> dict[str, Any] | None:
        """What to write so that the stored ``t`` records the file's ``task`` (None: nothing)."""
        skald_id = self.port.skald_id
        same = (
            t.executor == skald_id
            and t.class_name == task.class_name
            and (t.attachments == task.attachments or not sync_attachments)
            and t.mode == task.mode
        )
        if same:
            if t.lifecycle_status in (S.PAUSED, S.CANCELLED):
                return None  # an operator stopped it; the YAML did not change since
            if t.lifecycle_status in (S.FINISHED, S.FAILED):
                # Ended; a worker running again (a persistent restart) is Assigning first.
                return None if running is None else {"lifecycle_status": S.ASSIGNING}
            if t.lifecycle_status == status or (t.lifecycle_status == S.RUNNING and running is not None):
                return None
            return {"lifecycle_status": status}
        update: dict[str, Any] = {
            "class_name": task.class_name,
            "attachments": task.attachments if sync_attachments else t.attachments,
            "mode": task.mode,
            "is_persistent": task.is_persistent,
            "source": "YAML",
            "executor": skald_id,
        }
        if running is not None or t.executor != skald_id or t.class_name != task.class_name:
            update["lifecycle_status"] = status
        if t.executor != skald_id:
            update["epoch"] = t.epoch + 1
        return update

    # ---- the file ------------------------------------------------------------------------
    def _check_file(self) -> None:
        diff = self.edge.reload_if_changed()
        if diff is None:
            return
        port = self.port
        for task in (*diff.added, *diff.updated, *diff.restarted):
            self._restart_due.pop(task.id, None)  # started below, at once
        for task_id in diff.removed:
            self._restart_due.pop(task_id, None)
            self._backoffs.pop(task_id, None)
            logger.info(f"task {task_id} removed from {self.edge.path}; stopping it")
            if not port.supervisor.stop(task_id, "removed"):
                port.write_status(task_id, S.CANCELLED, None, only_from=(S.CREATED, S.ASSIGNING, S.PAUSED))
        for task in diff.restarted:
            if port.supervisor.get(task.id) is not None:
                logger.info(f"task {task.id} changed class or settings; restarting it")
                self._restart_after_exit[task.id] = task
                port.supervisor.stop(task.id, "restart")
            else:
                port.start_worker(task, None)
        for task in diff.updated:
            if port.supervisor.get(task.id) is not None:
                logger.info(f"task {task.id}: attachments changed in {self.edge.path}; hot-updating")
                port.supervisor.send_update(task.id, task.attachments, origin="yaml")
            else:
                port.start_worker(task, None)
        for task in diff.added:
            logger.info(f"task {task.id} added to {self.edge.path}; starting it")
            port.start_worker(task, None)
        self._record({t.id for t in (*diff.added, *diff.updated, *diff.restarted)})

    # ---- reconciliation ------------------------------------------------------------------
    def reconcile(self) -> None:
        """Follow pause / resume / cancel / retry written to the store for this edge's tasks."""
        stored = self._stored_tasks(list(self.edge.peek_ids()))
        if stored is None:
            return
        supervisor = self.port.supervisor
        for task in self.edge.tasks(self.port.skald_id):
            current = stored.get(task.id)
            handle = supervisor.get(task.id)
            if current is None:
                continue
            status = current.lifecycle_status
            if handle is not None and not handle.stopping:
                if status == S.PAUSED:
                    supervisor.stop(task.id, "pause")
                elif status == S.CANCELLED:
                    supervisor.stop(task.id, "cancel")
            elif (
                handle is None
                and status in (S.CREATED, S.ASSIGNING)
                and not self.edge.recently_ended(task.id)
                and task.id not in self.port.unwritten
            ):
                self.port.start_worker(task, None)
        self._record()


__all__ = ["EdgePolicy"]
