"""What a skald mode decides, behind one small interface: :class:`ModePolicy`.

The agent loop (:mod:`skalds.node.agent`) is the same in every mode; a policy says which tasks
run and how commands apply — :class:`~skalds.node.node_mode.NodePolicy` (tasks the store assigns
to this skald) and :class:`~skalds.node.edge_mode.EdgePolicy` (tasks listed in a YAML file). The
loop calls the hooks below at fixed points; a policy reaches the agent only through its
:class:`~skalds.node.port.AgentPort`.

Cancel and update commands mean the same in every mode and are handled here; a mode adds what
is its own (node: assign, and starting an owned task a direct update overtook).
"""

from __future__ import annotations

from typing import Any

from skalds.model.task import LIVE_STATUSES, TaskLifecycleStatus
from skalds.node.commands import Command
from skalds.node.port import AgentPort
from skalds.utils.logging import logger
from skalds.worker.supervisor import WorkerHandle

S = TaskLifecycleStatus


class ModePolicy:
    """The hooks the agent loop calls; defaults do nothing."""

    #: "node" or "edge", as registered in the cache.
    name = "node"

    def __init__(self, port: AgentPort) -> None:
        self.port = port

    @property
    def fence_after(self) -> float | None:
        """Seconds without an answer from this skald after which a worker stops itself (None: never)."""
        return None

    # ---- life ----------------------------------------------------------------------------
    def start(self) -> None:
        """Before the skald registers (edge: start the file's tasks at once)."""

    def started(self) -> None:
        """After the bus listener started."""

    def reconcile(self) -> None:
        """Compare what runs with the store and act (level-triggered)."""

    def records_itself(self, task_id: str) -> bool:
        """Whether this policy writes ``task_id``'s record into the store itself (edge: the tasks of
        its file), so an end kept for a task the store does not hold yet waits for that record."""
        return False

    def next_deadline(self) -> float | None:
        """When :meth:`on_deadline` wants to run next (monotonic seconds), or None."""
        return None

    def on_deadline(self, now: float) -> None:
        """A timer of the policy's own (edge: the YAML file check)."""

    # ---- workers -------------------------------------------------------------------------
    def worker_started(self, handle: WorkerHandle) -> None:
        """A worker of ``handle.task_id`` was just started."""

    def slot_freed(self, handle: WorkerHandle) -> None:
        """A worker ended, before its end is written (node: start a task waiting for its class)."""

    def worker_exited(self, handle: WorkerHandle, outcome: TaskLifecycleStatus) -> None:
        """A worker ended and its end is written."""

    def ownership_lost(self, handle: WorkerHandle, reason: str) -> None:
        """The store refused a fenced write for a running worker (node: stop it)."""

    def update_applied(self, handle: WorkerHandle, attachments: Any, origin: str) -> None:
        """A worker applied an update from ``origin`` (store, direct, yaml)."""

    # ---- commands ------------------------------------------------------------------------
    def apply(self, command: Command) -> None:
        if command.kind == "cancel":
            for task_id in command.task_ids:
                self.cancel(task_id, command.published_ms)
        elif command.kind == "update":
            for task_id in command.task_ids:
                self.forward_update(task_id, command.attachments)

    def cancel(self, task_id: str, published_ms: int) -> None:
        """Stop ``task_id``'s worker for a cancel event — or a pause: the store says which."""
        port = self.port
        if port.supervisor.get(task_id) is None:
            return
        task = port.backends.with_store("read", lambda s: s.get(task_id))
        status = None if task is None else task.lifecycle_status
        if status in LIVE_STATUSES and 0 < published_ms < port.started_ms:
            # Replayed from before this skald started (a new consumer group looks back a little):
            # the task was resumed or retried since, as the store says.
            logger.info(f"task {task_id}: ignored a cancel from before this skald started (now {status})")
            return
        reason = "pause" if status == S.PAUSED else "cancel"
        if port.supervisor.stop(task_id, reason):
            logger.info(f"task {task_id}: {reason} received, stopping its worker")

    def forward_update(self, task_id: str, attachments: dict[str, Any] | None) -> None:
        """Hand an update to the task's worker: the attachments the event carries, or else what
        the store holds now (when it differs from what the worker was last sent)."""
        port = self.port
        handle = port.supervisor.get(task_id)
        if handle is None:
            if attachments is not None:
                self.update_for_idle_task(task_id, attachments)
            return
        if attachments is not None:
            port.supervisor.send_update(task_id, attachments, origin="direct")
            return
        task = port.backends.with_store("read", lambda s: s.get(task_id))
        if task is None or task.attachments == handle.sent_attachments:
            return  # nothing new since the last update we sent (duplicate or replayed event)
        port.supervisor.send_update(task_id, task.attachments, origin="store")

    def update_for_idle_task(self, task_id: str, attachments: dict[str, Any]) -> None:
        """A direct update for a task with no worker here (node: it may be ours, not started yet)."""


__all__ = ["ModePolicy"]
