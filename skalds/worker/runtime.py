"""What runs inside a forked worker process: build the worker from its spec and run it."""

from __future__ import annotations

import signal
import socket
from types import FrameType
from typing import Any

from skalds.errors import SkaldsError
from skalds.model.task import TaskLifecycleStatus
from skalds.utils.logging import configure_worker, logger
from skalds.worker.baseclass import EXIT_FAILED, PENDING_SIGNALS
from skalds.worker.forkserver import set_process_name
from skalds.worker.link import ChannelLink
from skalds.worker.logtail import LogTail
from skalds.worker.registry import WorkerRegistry


def _early_signal(signum: int, frame: FrameType | None) -> None:
    PENDING_SIGNALS.append(signum)


def make_child_main(registry: WorkerRegistry) -> Any:
    """The function the fork server runs in each child."""
    # Built here, before the fork server is forked, so a worker inherits it instead of building it:
    # an idle worker then dirties no memory for its log tail (each child has its own copy).
    tail = LogTail()

    def child_main(spec: dict[str, Any], channel: socket.socket) -> int:
        signal.signal(signal.SIGTERM, _early_signal)
        signal.signal(signal.SIGINT, _early_signal)
        task_id = str(spec["task_id"])
        set_process_name(f"skw:{task_id}")
        configure_worker(task_id)
        fence_after = spec.get("fence_after")
        link = ChannelLink(
            channel,
            float(spec.get("heartbeat_interval", 1.0)),
            fence_after=float(fence_after) if fence_after is not None else None,
            # Everything this process logs also goes to the task's log tail (SPEC §9).
            tail=tail.install(),
        )
        try:
            try:
                cls = registry.get(str(spec["class_name"]))
                worker = cls()
                worker.task_id = task_id
                worker.dependencies = spec.get("dependencies")
                worker._skalds_link = link
                worker._skalds_setup(spec.get("attachments"))
            except (SkaldsError, Exception) as exc:
                text = f"{type(exc).__name__}: {exc}"
                logger.error(f"worker {task_id} could not start: {text}")
                link.report({"t": "final", "status": TaskLifecycleStatus.FAILED.value, "exception": text})
                return EXIT_FAILED
            return worker.start()
        finally:
            link.flush_logs()  # what was logged after the link stopped (best effort)

    return child_main
