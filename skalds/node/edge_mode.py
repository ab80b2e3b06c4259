"""The agent's edge mode: the YAML file is the list of tasks, the store follows it.

Workers start from the file before anything is written anywhere (edge autonomy); the store then
records them as ``Active`` with this skald as executor. Operator pause / cancel written to the
store are obeyed and remembered until the entry changes in the file.
"""

from __future__ import annotations

from typing import Any

from skalds.backends.store.base import TaskQuery
from skalds.errors import Conflict, IllegalTransition, SkaldsError
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.node._parts import _AgentParts
from skalds.utils.logging import logger
from skalds.worker.supervisor import WorkerHandle

S = TaskLifecycleStatus


class EdgeMode(_AgentParts):
    def _edge_start(self) -> None:
        assert self.edge is not None
        stored = self._stored_edge_tasks(list(self.edge.peek_ids()))
        for task in self.edge.initial_tasks(self.skald_id, stored):
            self.start_worker(task, None)
        self._edge_record(set(self.edge.peek_ids()))

    def _stored_edge_tasks(self, ids: list[str]) -> dict[str, Task] | None:
        if not ids:
            return {}
        page = self.backends.with_store("read", lambda s: s.list(TaskQuery(ids=tuple(ids))))
        return None if page is None else {t.id: t for t in page.items}

    def _edge_record(self, sync: set[str] | None = None) -> None:
        """Record every YAML task in the store as Active, owned by this skald (idempotent).

        Attachments are written only for the tasks in ``sync`` (those the file just gave or
        changed): at other times the store may hold a newer update on its way to the worker.
        """
        assert self.edge is not None
        for task in self.edge.tasks(self.skald_id):
            running = self.supervisor.get(task.id)
            with_attachments = sync is not None and task.id in sync
            self.backends.with_store(
                "record",
                lambda s, t=task, r=running, a=with_attachments: self.edge_upsert(s, t, r, a),  # type: ignore[misc]
            )

    def edge_upsert(self, store: Any, task: Task, running: WorkerHandle | None, sync_attachments: bool) -> None:
        status = S.RUNNING if running is not None and running.running_at is not None else S.ASSIGNING
        existing = store.get(task.id)
        if existing is None:
            try:
                store.create(task.model_copy(update={"lifecycle_status": status, "epoch": 1}))
            except SkaldsError:
                pass
            return

        def change(t: Task) -> dict[str, Any] | None:
            same = (
                t.executor == self.skald_id
                and t.class_name == task.class_name
                and (t.attachments == task.attachments or not sync_attachments)
                and t.mode == task.mode
            )
            if same:
                if t.lifecycle_status in (S.PAUSED, S.CANCELLED):
                    return None  # an operator stopped it; the YAML did not change since
                if running is None and t.lifecycle_status in (S.FINISHED, S.FAILED):
                    return None
                if t.lifecycle_status == status or (t.lifecycle_status == S.RUNNING and running is not None):
                    return None
                return {"lifecycle_status": status}
            update: dict[str, Any] = {
                "class_name": task.class_name,
                "attachments": task.attachments if sync_attachments else t.attachments,
                "mode": task.mode,
                "is_persistent": task.is_persistent,
                "source": "YAML",
                "executor": self.skald_id,
            }
            if running is not None or t.executor != self.skald_id or t.class_name != task.class_name:
                update["lifecycle_status"] = status
            if t.executor != self.skald_id:
                update["epoch"] = t.epoch + 1
            return update

        try:
            store.modify(task.id, change)
        except (Conflict, IllegalTransition) as exc:
            logger.debug(f"task {task.id}: not recorded: {exc}")

    def _edge_check_file(self) -> None:
        assert self.edge is not None
        diff = self.edge.reload_if_changed()
        if diff is None:
            return
        for task_id in diff.removed:
            logger.info(f"task {task_id} removed from {self.edge.path}; stopping it")
            if not self.supervisor.stop(task_id, "removed"):
                self._write_status(task_id, S.CANCELLED, None, only_from=(S.CREATED, S.ASSIGNING, S.PAUSED))
        for task in diff.restarted:
            if self.supervisor.get(task.id) is not None:
                logger.info(f"task {task.id} changed class or settings; restarting it")
                self._restart_after_exit[task.id] = task
                self.supervisor.stop(task.id, "restart")
            else:
                self.start_worker(task, None)
        for task in diff.updated:
            if self.supervisor.get(task.id) is not None:
                logger.info(f"task {task.id}: attachments changed in {self.edge.path}; hot-updating")
                self.supervisor.send_update(task.id, task.attachments, origin="yaml")
            else:
                self.start_worker(task, None)
        for task in diff.added:
            logger.info(f"task {task.id} added to {self.edge.path}; starting it")
            self.start_worker(task, None)
        self._edge_record({t.id for t in (*diff.added, *diff.updated, *diff.restarted)})

    def _edge_reconcile(self) -> None:
        """Follow pause / resume / cancel / retry written to the store for this edge's tasks."""
        assert self.edge is not None
        stored = self._stored_edge_tasks(list(self.edge.peek_ids()))
        if stored is None:
            return
        for task in self.edge.tasks(self.skald_id):
            current = stored.get(task.id)
            handle = self.supervisor.get(task.id)
            if current is None:
                continue
            status = current.lifecycle_status
            if handle is not None and not handle.stopping:
                if status == S.PAUSED:
                    self.supervisor.stop(task.id, "pause")
                elif status == S.CANCELLED:
                    self.supervisor.stop(task.id, "cancel")
            elif (
                handle is None
                and status in (S.CREATED, S.ASSIGNING)
                and not self.edge.recently_ended(task.id)
                and task.id not in self.unwritten
            ):
                self.start_worker(task, None)
        self._edge_record()
