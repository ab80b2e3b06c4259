"""What a mode policy may use of the skald agent: a small, typed port.

The agent loop (:mod:`skalds.node.agent`) owns the process-wide machinery — the poll loop, the
worker supervisor, the backends, heartbeats, log lines, task ends the store could not take yet.
A mode policy (:mod:`skalds.node.node_mode`, :mod:`skalds.node.edge_mode`) decides *which* tasks
run; it reaches the agent only through this port, so the two can change independently and mypy
checks that the agent provides exactly this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from skalds.model.task import Task, TaskLifecycleStatus

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig
    from skalds.node.backends import Backends
    from skalds.node.outcomes import UnwrittenEnds
    from skalds.worker.registry import WorkerRegistry
    from skalds.worker.supervisor import Supervisor, WorkerHandle


class AgentPort(Protocol):
    """The agent as a policy sees it."""

    config: SkaldConfig
    skald_id: str
    registry: WorkerRegistry
    supervisor: Supervisor
    backends: Backends
    #: Task ends the store has not taken yet: such a task is never started again.
    unwritten: UnwrittenEnds
    #: When this skald started (ms since the epoch): commands published earlier may be replays.
    started_ms: int

    @property
    def stopping(self) -> bool:
        """The skald is shutting down: start nothing new."""
        ...

    def start_worker(self, task: Task, epoch: int | None) -> WorkerHandle | None:
        """Start ``task``'s worker (at ``epoch`` for a node task); None when it could not start."""
        ...

    def write_status(
        self,
        task_id: str,
        status: TaskLifecycleStatus,
        epoch: int | None,
        *,
        exception: str | None = None,
        only_from: tuple[TaskLifecycleStatus, ...] | None = None,
        ran: bool = False,
    ) -> bool:
        """A status write fenced on this skald (and ``epoch``); False when the store could not
        be reached."""
        ...

    def flush_unwritten(self, task_id: str | None = None) -> None:
        """Write the kept task ends (or only ``task_id``'s) if the store takes them now."""
        ...

    def reconcile_soon(self, delay: float) -> None:
        """Run the next reconciliation pass within ``delay`` seconds."""
        ...


__all__ = ["AgentPort"]
