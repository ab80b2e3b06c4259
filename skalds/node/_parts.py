"""Typing glue shared by the agent's mode mixins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from skalds.model.task import Task, TaskLifecycleStatus

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig, SkaldModeEnum
    from skalds.node.backends import Backends
    from skalds.node.edge import EdgeTasks
    from skalds.node.outcomes import UnwrittenEnds
    from skalds.worker.supervisor import Supervisor, WorkerHandle


class _AgentParts:
    """What the mode mixins use of :class:`~skalds.node.agent.SkaldAgent` (for type checking)."""

    if TYPE_CHECKING:
        config: SkaldConfig
        skald_id: str
        mode: SkaldModeEnum
        supervisor: Supervisor
        backends: Backends
        edge: EdgeTasks | None
        _restart_after_exit: dict[str, Task]
        _deferred: set[str]
        _next_reconcile: float
        unwritten: UnwrittenEnds
        started_ms: int

        def start_worker(self, task: Task, epoch: int | None) -> WorkerHandle | None: ...

        def _flush_stash(self, task_id: str) -> None: ...

        def _flush_unwritten(self, task_id: str | None = None) -> None: ...

        def _write_status(
            self,
            task_id: str,
            status: TaskLifecycleStatus,
            epoch: int | None,
            *,
            exception: str | None = None,
            only_from: tuple[TaskLifecycleStatus, ...] | None = None,
            ran: bool = False,
        ) -> bool: ...
