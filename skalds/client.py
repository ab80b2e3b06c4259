"""``SkaldsClient``: create, assign, update, pause, resume and cancel tasks from any process.

It talks to the same backends as the skalds (store first — the truth — then an event on the bus as
a hint so the owner reacts within milliseconds). The System Controller's API does the same work
over HTTP; this client is what scripts, tests and the CLI use directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from skalds.backends.bus.base import Topic
from skalds.backends.clients import BackendClients
from skalds.backends.store.base import TaskPage, TaskQuery
from skalds.config.skald_config import SkaldConfig
from skalds.controller.fleet import Fleet
from skalds.errors import TaskEnded
from skalds.model.attachments import check_task
from skalds.model.event import TaskEvent, UpdateTaskWorkerEvent
from skalds.model.resources import check_labels, check_resources
from skalds.model.task import FINAL_STATUSES, LIVE_STATUSES, Task, TaskLifecycleStatus, ended_for_good
from skalds.utils.logging import logger

S = TaskLifecycleStatus
#: ``set_requirements``' default: leave that one as it is.
KEEP: Any = object()


class SkaldsClient(BackendClients):
    def __init__(self, config: SkaldConfig | None = None, *, initiator: str = "client", **settings: Any) -> None:
        super().__init__(config if config is not None else SkaldConfig(**settings))
        self.initiator = initiator
        self._fleet: Fleet | None = None

    def __enter__(self) -> SkaldsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- commands ------------------------------------------------------------------------
    def _event(self, topic: Topic, task_id: str, recipient: str | None = None) -> None:
        event = TaskEvent(title=topic.value, initiator=self.initiator, recipient=recipient, taskIds=[task_id])
        self.bus.publish(topic.value, task_id, event.to_json())

    def check_task(self, task: Task, *, require_class: bool = False) -> tuple[Task, list[str]]:
        """Check ``task`` as ``POST /api/tasks`` does, against the classes the online skalds
        advertise: the task with its attachments as the class's model reads them (field names
        rewritten to aliases), and warnings — its class is run by no online skald yet, so it will
        wait and its attachments were not checked. Raises :class:`~skalds.errors.InvalidAttachments`
        (``details`` per field: an unknown key names the closest known one) and, with
        ``require_class``, :class:`~skalds.errors.UnknownWorkerClass`. Checking attachments needs
        ``jsonschema`` (:class:`~skalds.errors.MissingDriver` names the pip command)."""
        checked = check_task(
            task.class_name, task.attachments, self._fleet_view().class_schemas(), require_class=require_class
        )
        if checked.attachments is not task.attachments:
            task = task.model_copy(update={"attachments": checked.attachments})
        return task, checked.warnings

    def _fleet_view(self) -> Fleet:
        """One view of the fleet for this client: it keeps the advertised schemas parsed."""
        if self._fleet is None:
            self._fleet = Fleet(self.state)
        return self._fleet

    def create_task(
        self, task: Task, *, executor: str | None = None, validate: bool = True, require_class: bool = False
    ) -> Task:
        """Check the task (:meth:`check_task`, unless ``validate`` is False; warnings are logged),
        store it; with ``executor``, also assign it there and announce it."""
        if validate:
            task, warnings = self.check_task(task, require_class=require_class)
            for warning in warnings:
                logger.warning(f"task {task.id}: {warning}")
        stored = self.store.create(task)
        if executor is not None:
            stored = self.assign(stored.id, executor)
        return stored

    def assign(self, task_id: str, executor: str) -> Task:
        task = self.store.assign(task_id, executor)
        self._event(Topic.TASK_ASSIGN, task_id, recipient=executor)
        return task

    def update_attachments(self, task_id: str, attachments: dict[str, Any] | BaseModel) -> Task:
        """Store new attachments and tell the owning skald (``task.update.attachment``)."""
        if isinstance(attachments, BaseModel):
            attachments = attachments.model_dump(mode="json", by_alias=True)
        task = self.store.modify(task_id, lambda t: {"attachments": {**(t.attachments or {}), **attachments}})
        self._event(Topic.TASK_UPDATE_ATTACHMENT, task_id)
        return task

    def set_requirements(
        self,
        task_id: str,
        *,
        requires: Mapping[str, float] | str | None = KEEP,
        node_selector: Mapping[str, str] | str | None = KEEP,
    ) -> Task:
        """Change where a task may run, as ``PUT /api/tasks/{id}/requirements`` does: ``requires``
        (resources one run uses, ``{"gpu": 1}`` or ``"gpu=1"``) and / or ``node_selector`` (labels a
        node must have); None falls back to the class's, one not given is kept. Checked as on
        create (ValueError naming the argument). A waiting task is placed by them at the
        dispatcher's next pass; a task that runs is not moved (they apply the next time it is
        placed). Raises :class:`~skalds.errors.TaskEnded` for a task that ended for good."""
        changes: dict[str, Any] = {}
        if requires is not KEEP:
            changes["requires"] = None if requires is None else check_resources(requires, "requires")
        if node_selector is not KEEP:
            changes["node_selector"] = None if node_selector is None else check_labels(node_selector, "node_selector")
        if not changes:
            raise ValueError("give requires and / or node_selector (None for the class's own)")

        def change(t: Task) -> dict[str, Any] | None:
            if ended_for_good(t, self.config.task_worker_retry):
                raise TaskEnded(f"task {t.id!r} is {t.lifecycle_status.value}: retry it before changing where it runs")
            return {k: v for k, v in changes.items() if getattr(t, k) != v} or None

        return self.store.modify(task_id, change)

    def send_worker_update(self, task_id: str, attachments: dict[str, Any]) -> None:
        """Publish straight to ``taskworker.update`` (as outside producers do); the store is untouched."""
        self.bus.publish(
            Topic.TASKWORKER_UPDATE.value, task_id, UpdateTaskWorkerEvent(attachments=attachments).to_json()
        )

    def cancel(self, task_id: str) -> Task:
        task = self.store.set_status(task_id, S.CANCELLED)
        self._event(Topic.TASK_CANCEL, task_id)
        return task

    def pause(self, task_id: str) -> Task:
        task = self.store.set_status(task_id, S.PAUSED)
        self._event(Topic.TASK_CANCEL, task_id)
        return task

    def resume(self, task_id: str, executor: str | None = None) -> Task:
        """Make a paused task runnable again: back to Created, or straight to ``executor``."""
        task = self.store.require(task_id)
        if executor is None and task.lifecycle_status not in LIVE_STATUSES:
            return self.store.set_status(task_id, S.CREATED, executor=None)
        return self.assign(task_id, executor or task.executor or "")

    # ---- reads ---------------------------------------------------------------------------
    def get(self, task_id: str) -> Task | None:
        return self.store.get(task_id)

    def list(self, query: TaskQuery | None = None) -> TaskPage:
        return self.store.list(query)

    def task_state(self, task_id: str) -> dict[str, Any]:
        return self.state.task_state(task_id)

    @staticmethod
    def is_final(task: Task) -> bool:
        return task.lifecycle_status in FINAL_STATUSES
