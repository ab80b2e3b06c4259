"""What runs inside a forked worker process: build the worker from its spec and run it.

A process runs one task and exits, unless the task's class allows more
(``BaseTaskWorker.max_tasks_per_process`` > 1): then, after a task that finished normally, it
tells its skald ``done`` (with its exit code and how long it may idle) and waits on its channel
for the skald's next task of that class (``run``, with the next spec) or ``exit``. The skald's
:class:`~skalds.worker.supervisor.Supervisor` keeps such processes in an idle pool and retires
them after their idle timeout.
"""

from __future__ import annotations

import os
import signal
import socket
from types import FrameType
from typing import Any

from skalds.errors import SkaldsError
from skalds.utils.logging import configure_worker, logger
from skalds.worker import packets
from skalds.worker.baseclass import EXIT_FAILED, EXIT_FINISHED, PENDING_SIGNALS, BaseTaskWorker
from skalds.worker.forkserver import ChildMain, set_process_name
from skalds.worker.link import ChannelLink
from skalds.worker.logtail import LogTail
from skalds.worker.protocol import TO_WORKER, Done, Final, Outcome, ProtocolError, Retire, Run, decode, encode
from skalds.worker.registry import WorkerRegistry

#: An idle process that hears nothing from its skald for this many times its idle timeout (plus
#: a minute) exits by itself; normally the skald retires it after the idle timeout.
IDLE_SAFETY_FACTOR = 3.0


class _IdleStop(BaseException):
    """SIGTERM or SIGINT while a reusable process waits for its next task."""


def _early_signal(signum: int, frame: FrameType | None) -> None:
    PENDING_SIGNALS.append(signum)


def _idle_signal(signum: int, frame: FrameType | None) -> None:
    raise _IdleStop(signum)


def _set_handlers(handler: Any) -> None:
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def make_child_main(registry: WorkerRegistry) -> ChildMain:
    """The function the fork server runs in each child."""
    # Built here, before the fork server is forked, so a worker inherits it instead of building it:
    # an idle worker then dirties no memory for its log tail (each child has its own copy).
    return _WorkerProcess(registry, LogTail()).main


class _WorkerProcess:
    """What one forked child does: run its task and, for a reusable class, the skald's next ones."""

    def __init__(self, registry: WorkerRegistry, tail: LogTail) -> None:
        self.registry = registry
        self.tail = tail
        #: The link of a process that runs task after task (its thread serves every one of them).
        self.kept: ChannelLink | None = None

    def main(self, spec: dict[str, Any], channel: socket.socket) -> int:
        _set_handlers(_early_signal)
        done = 0
        while True:
            code, limit, idle, reusable = self.run_one(spec, channel)
            done += 1
            if code != EXIT_FINISHED or not reusable or done >= limit or PENDING_SIGNALS:
                return code
            following = wait_for_task(channel, idle, done)
            if following is None:
                return code
            spec = following

    def run_one(self, spec: dict[str, Any], channel: socket.socket) -> tuple[int, int, float, bool]:
        """Run one task: its exit code, its class's ``max_tasks_per_process`` and idle timeout,
        and whether the channel is free for another task (the link thread no longer reads it)."""
        task_id = str(spec["task_id"])
        set_process_name(f"skw:{task_id}")
        configure_worker(task_id)
        self.tail.reset()
        link = self.link_for(spec, channel)
        limit, idle, code = 1, 0.0, EXIT_FAILED
        try:
            worker = self.build(spec, task_id, link)
            if worker is not None:
                limit, idle = int(type(worker).max_tasks_per_process), float(type(worker).idle_process_timeout)
                code = worker.start()
        finally:
            link.flush_logs()  # what was logged after the link stopped (best effort)
        # The link thread must have stopped reading before the channel carries the next task.
        reusable = worker is not None and limit > 1 and link.park()
        return code, limit, idle, reusable

    def build(self, spec: dict[str, Any], task_id: str, link: ChannelLink) -> BaseTaskWorker[Any] | None:
        """The task's worker, set up with its attachments; None (reported Failed) when it cannot be."""
        try:
            worker = self.registry.get(str(spec["class_name"]))()
            worker.task_id = task_id
            worker.dependencies = spec.get("dependencies")
            worker._skalds_link = link
            worker._skalds_setup(spec.get("attachments"))
            return worker
        except (SkaldsError, Exception) as exc:
            text = f"{type(exc).__name__}: {exc}"
            logger.error(f"worker {task_id} could not start: {text}")
            link.report(Final(Outcome.FAILED, text))
            return None

    def link_for(self, spec: dict[str, Any], channel: socket.socket) -> ChannelLink:
        """The link to the skald for this task: the process's kept one, or a new one."""
        raw_fence = spec.get("fence_after")
        interval = float(spec.get("heartbeat_interval", 1.0))
        fence_after = float(raw_fence) if raw_fence is not None else None
        if self.kept is not None:
            self.kept.configure(interval, fence_after)
            return self.kept
        reusable = self.reusable(str(spec["class_name"]))
        link = ChannelLink(
            channel,
            interval,
            fence_after=fence_after,
            # Everything this process logs also goes to the task's log tail.
            tail=self.tail.install(),
            persistent=reusable,
        )
        if reusable:
            self.kept = link
        return link

    def reusable(self, class_name: str) -> bool:
        try:
            return self.registry.get(class_name).max_tasks_per_process > 1
        except SkaldsError:
            return False


def wait_for_task(channel: socket.socket, idle: float, done: int) -> dict[str, Any] | None:
    """Offer this process for another task; the next spec, or None to exit."""
    _set_handlers(_idle_signal)
    try:
        if PENDING_SIGNALS:
            return None
        try:
            channel.send(encode(Done(EXIT_FINISHED, idle, done)))
        except OSError:
            return None
        set_process_name("skw:idle")
        channel.settimeout(idle * IDLE_SAFETY_FACTOR + 60.0)
        return _next_spec(channel)
    except _IdleStop:
        return None
    finally:
        channel.settimeout(None)
        _set_handlers(_early_signal)


def _next_spec(channel: socket.socket) -> dict[str, Any] | None:
    """Read the channel until the skald sends the next task (its spec) or retires this process."""
    while True:
        try:
            data, fds = packets.recv(channel)  # a run message may carry a large spec
        except OSError:  # the safety timeout, or the skald is gone
            return None
        for stray in fds:
            os.close(stray)
        if not data:
            return None
        try:
            message = decode(data, TO_WORKER)
        except ProtocolError:
            continue
        match message:
            case Retire():
                return None
            case Run(spec=spec):
                return spec
        # Anything else (acks of the last task's heartbeats, an update that came too late for it)
        # belonged to the task that ended.
