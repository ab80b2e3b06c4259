"""The skald's view of its worker processes: start, update, stop, reap.

Used from the skald's single loop thread. Each worker has a :class:`WorkerHandle` holding its
pidfd (for signals that cannot hit a recycled pid) and the skald's end of its channel socket.
Stopping is parallel: SIGTERM to every worker at once, SIGKILL to any still alive when its grace
period ends. Exits are learnt from the fork server, which reaps the children.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from skalds.errors import ForkServerError
from skalds.model.task import Task, now_ms
from skalds.utils.logging import logger
from skalds.worker import packets
from skalds.worker.forkserver import ForkServer
from skalds.worker.protocol import (
    ACK_BYTES,
    FROM_WORKER,
    Done,
    Fenced,
    Final,
    FromWorker,
    Heartbeat,
    Logs,
    Outcome,
    ProtocolError,
    Retire,
    Run,
    Running,
    StopReason,
    Update,
    UpdateError,
    UpdateOk,
    decode,
    encode,
)


@dataclass
class WorkerHandle:
    task_id: str
    class_name: str
    epoch: int | None
    pid: int
    pidfd: int
    channel: socket.socket
    attachments: Any
    started_at: float = field(default_factory=time.monotonic)
    running_at: float | None = None
    last_beat: int | None = None
    outcome: Outcome | None = None  # final status the worker reported
    exception: str | None = None
    result: Any = None  # what main returned (JSON), when the task finished
    stop_reason: StopReason | None = None
    kill_at: float | None = None
    exit_code: int | None = None
    #: The stored attachments the worker was last given (or recorded after a direct update):
    #: reconciliation forwards the store's value when it differs from this.
    sent_attachments: Any = None
    #: Where each forwarded update came from, oldest first; matched to the worker's answers,
    #: which come in the same order.
    update_origins: deque[str] = field(default_factory=deque)
    #: The attachments of each forwarded update, in the same order (a rejection names them).
    update_values: deque[Any] = field(default_factory=deque)
    #: Messages waiting for room in the channel (a slow worker must not block the skald).
    outbox: deque[bytes] = field(default_factory=deque)
    #: The worker stopped itself for want of acks: the skald writes nothing for it any more.
    self_fenced: bool = False
    #: Log lines received and not yet written (``[n, timestamp, level, message]``), the base their
    #: seq counts from (None until read from the cache) and the last n received.
    log_lines: list[list[Any]] = field(default_factory=list)
    log_base: int | None = None
    log_last: int = 0
    #: The task runs in a process that ran an earlier task of its class (not a fresh fork).
    reused: bool = False

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None


_ACK = ACK_BYTES
_RETIRE = encode(Retire())
#: At most this many idle reusable processes are kept per worker class (the rest are retired).
MAX_IDLE_PER_CLASS = 32


@dataclass(eq=False)
class IdleProcess:
    """A worker process that finished a task of a reusable class and waits for the next one."""

    class_name: str
    pid: int
    pidfd: int
    channel: socket.socket
    until: float  # monotonic: retired then
    tasks: int  # tasks it has run


OnMessage = Callable[[WorkerHandle, FromWorker], None]
OnExit = Callable[[WorkerHandle], None]


class Supervisor:
    def __init__(
        self,
        forkserver: ForkServer,
        *,
        heartbeat_interval: float,
        grace_period: float,
        on_message: OnMessage,
        on_exit: OnExit,
        log_config: dict[str, Any] | None = None,
        fence_after: float | None = None,
    ) -> None:
        self._fs = forkserver
        #: Seconds a worker keeps running without an ack of its heartbeats (None: forever).
        self._fence_after = fence_after
        self._hb = heartbeat_interval
        self._grace = grace_period
        self._on_message = on_message
        self._on_exit = on_exit
        self._by_task: dict[str, WorkerHandle] = {}
        self._by_pid: dict[int, WorkerHandle] = {}
        self._by_fd: dict[int, WorkerHandle] = {}
        #: Handles with log lines waiting to be written (by id: a handle outlives its pid).
        self._logs_pending: dict[int, WorkerHandle] = {}
        #: Idle reusable processes by class, most recently idle last; and by pid.
        self._idle: dict[str, list[IdleProcess]] = {}
        self._idle_by_pid: dict[int, IdleProcess] = {}
        #: Workers per class (started, not yet exited or done).
        self._per_class: dict[str, int] = {}
        #: Processes started fresh / tasks handed to an idle process (for logs and tests).
        self.forked = 0
        self.reused = 0

    # ---- queries -------------------------------------------------------------------------
    def get(self, task_id: str) -> WorkerHandle | None:
        return self._by_task.get(task_id)

    def handles(self) -> list[WorkerHandle]:
        return list(self._by_task.values())

    def task_ids(self) -> list[str]:
        return list(self._by_task)

    def channel_fds(self) -> list[int]:
        return list(self._by_fd)

    def __len__(self) -> int:
        return len(self._by_task)

    def count(self, class_name: str) -> int:
        """Workers of ``class_name`` this skald has (running or stopping)."""
        return self._per_class.get(class_name, 0)

    def idle_count(self, class_name: str | None = None) -> int:
        if class_name is None:
            return len(self._idle_by_pid)
        return len(self._idle.get(class_name, ()))

    # ---- log lines ---------------------------------------------------------------------------
    def take_logs(self) -> list[WorkerHandle]:
        """Handles with log lines to write (their ``log_lines``), in the order they arrived."""
        if not self._logs_pending:
            return []
        handles = list(self._logs_pending.values())
        self._logs_pending.clear()
        return handles

    def add_log_line(self, handle: WorkerHandle, level: str, text: str) -> None:
        """A line of the skald's own about this worker (after its last one), e.g. its exit."""
        handle.log_last += 1
        handle.log_lines.append([handle.log_last, now_ms(), level, text])
        self._logs_pending[id(handle)] = handle

    def _on_logs(self, handle: WorkerHandle, message: Logs) -> None:
        lines = message.lines
        if not lines or handle.self_fenced:
            return  # a self-fenced worker's task may be another skald's now: nothing is written
        handle.log_lines.extend(lines)
        handle.log_last = max(handle.log_last, int(lines[-1][0]))
        self._logs_pending[id(handle)] = handle

    # ---- actions -------------------------------------------------------------------------
    def start(self, task: Task, epoch: int | None) -> WorkerHandle:
        if task.id in self._by_task:
            raise RuntimeError(f"task {task.id} already has a worker")
        spec = {
            "task_id": task.id,
            "class_name": task.class_name,
            "attachments": task.attachments,
            "dependencies": task.dependencies,
            "heartbeat_interval": self._hb,
            "fence_after": self._fence_after,
        }
        idle = self._take_idle(task.class_name, spec)
        if idle is not None:
            pid, pidfd, ours = idle.pid, idle.pidfd, idle.channel
            self.reused += 1
        else:
            try:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            except OSError as exc:  # out of descriptors: a later attempt may succeed
                raise ForkServerError(f"no channel for a new worker: {exc}") from exc
            try:
                pid, pidfd = self._fs.spawn(spec, theirs)
            except BaseException:
                ours.close()  # a start retried every reconcile pass must not leak a descriptor each time
                raise
            finally:
                theirs.close()
            ours.setblocking(False)
            self.forked += 1
        handle = WorkerHandle(
            task_id=task.id,
            class_name=task.class_name,
            epoch=epoch,
            pid=pid,
            pidfd=pidfd,
            channel=ours,
            attachments=task.attachments,
            sent_attachments=task.attachments,
            reused=idle is not None,
        )
        self._by_task[task.id] = handle
        self._by_pid[pid] = handle
        self._by_fd[ours.fileno()] = handle
        self._per_class[task.class_name] = self._per_class.get(task.class_name, 0) + 1
        return handle

    def _uncount(self, handle: WorkerHandle) -> None:
        if self._by_task.pop(handle.task_id, None) is not None:
            left = self._per_class.get(handle.class_name, 1) - 1
            if left > 0:
                self._per_class[handle.class_name] = left
            else:
                self._per_class.pop(handle.class_name, None)

    # ---- reusable processes --------------------------------------------------------------
    def _take_idle(self, class_name: str, spec: dict[str, Any]) -> IdleProcess | None:
        """An idle process of ``class_name`` that accepted ``spec`` as its next task, or None."""
        pool = self._idle.get(class_name)
        if not pool:
            return None  # the common case (a fresh process per task): nothing to encode
        data = encode(Run(spec))
        while pool:
            idle = pool.pop()
            self._idle_by_pid.pop(idle.pid, None)
            try:
                packets.send(idle.channel, data)
            except OSError as exc:  # gone meanwhile, or no room: a fresh process it is
                logger.debug(f"idle worker process {idle.pid} did not take a task ({exc}); retiring it")
                self._retire(idle)
                continue
            return idle
        return None

    def _on_done(self, handle: WorkerHandle, message: Done) -> None:
        """The worker finished its task and offers its process for the next one of its class."""
        handle.exit_code = message.code
        self._by_fd.pop(handle.channel.fileno(), None)
        self._uncount(handle)
        self._by_pid.pop(handle.pid, None)
        idle_s = message.idle
        idle = IdleProcess(
            class_name=handle.class_name,
            pid=handle.pid,
            pidfd=handle.pidfd,
            channel=handle.channel,
            until=time.monotonic() + idle_s,
            tasks=message.tasks,
        )
        pool = self._idle.setdefault(handle.class_name, [])
        # A process asked to stop (cancel, pause, fencing) or cut off from us never runs another task.
        if handle.stopping or handle.self_fenced or idle_s <= 0 or len(pool) >= MAX_IDLE_PER_CLASS:
            self._retire(idle)
        else:
            pool.append(idle)
            self._idle_by_pid[idle.pid] = idle
        self._on_exit(handle)

    def _retire(self, idle: IdleProcess) -> None:
        """Tell an idle process to exit (closing our end of its channel does it too)."""
        self._idle_by_pid.pop(idle.pid, None)
        pool = self._idle.get(idle.class_name)
        if pool and idle in pool:
            pool.remove(idle)
        try:
            idle.channel.send(_RETIRE)
        except OSError:
            pass
        _release(idle.channel, idle.pidfd)

    def retire_idle(self, now: float | None = None) -> None:
        """Retire idle processes whose idle timeout passed (all of them with ``now`` = inf)."""
        now = time.monotonic() if now is None else now
        for idle in [i for i in self._idle_by_pid.values() if now >= i.until]:
            self._retire(idle)

    def send_update(self, task_id: str, attachments: Any, origin: str = "store") -> bool:
        """Queue an update for the worker; ``origin`` comes back with its answer."""
        handle = self._by_task.get(task_id)
        if handle is None or handle.stopping:
            return False
        handle.update_origins.append(origin)
        handle.update_values.append(attachments)
        if origin != "direct":
            handle.sent_attachments = attachments  # what the store holds (or the file), as sent
        self._queue(handle, encode(Update(attachments)))
        return True

    def _queue(self, handle: WorkerHandle, data: bytes) -> None:
        handle.outbox.append(data)
        self._flush(handle)

    def _flush(self, handle: WorkerHandle) -> None:
        while handle.outbox:
            try:
                packets.send(handle.channel, handle.outbox[0])
            except (BlockingIOError, InterruptedError):
                return  # the loop polls for room and calls on_channel_writable
            except OSError as exc:
                pending_updates = any(m != _ACK for m in handle.outbox)
                if pending_updates and handle.exit_code is None and not handle.stopping:
                    logger.warning(f"could not forward updates to worker {handle.task_id}: {exc}")
                handle.outbox.clear()
                return
            handle.outbox.popleft()

    def writable_wanted(self) -> list[int]:
        """Channels with queued messages: the loop waits for room on them."""
        return [fd for fd, h in self._by_fd.items() if h.outbox]

    def on_channel_writable(self, fd: int) -> None:
        handle = self._by_fd.get(fd)
        if handle is not None:
            self._flush(handle)

    def stop(self, task_id: str, reason: StopReason | str, grace: float | None = None) -> bool:
        """SIGTERM the task's worker (once); SIGKILL follows after the grace period."""
        handle = self._by_task.get(task_id)
        if handle is None:
            return False
        if handle.stopping:
            return True
        handle.stop_reason = StopReason(reason)
        handle.kill_at = time.monotonic() + (self._grace if grace is None else grace)
        self._signal(handle, signal.SIGTERM)
        return True

    def stop_many(self, task_ids: Iterable[str], reason: StopReason | str, grace: float | None = None) -> None:
        for task_id in list(task_ids):
            self.stop(task_id, reason, grace)

    def kill_overdue(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._idle_by_pid:
            self.retire_idle(now)
        for handle in self._by_task.values():
            if handle.kill_at is not None and now >= handle.kill_at and handle.exit_code is None:
                logger.warning(f"worker {handle.task_id} ignored SIGTERM for its grace period; SIGKILL")
                self._signal(handle, signal.SIGKILL)
                handle.kill_at = None

    def next_deadline(self) -> float | None:
        deadlines = [h.kill_at for h in self._by_task.values() if h.kill_at is not None]
        deadlines.extend(i.until for i in self._idle_by_pid.values())
        return min(deadlines) if deadlines else None

    # ---- input from the loop -------------------------------------------------------------
    def on_channel_readable(self, fd: int) -> None:
        handle = self._by_fd.get(fd)
        if handle is None:
            return
        while True:
            try:
                data, fds = packets.recv(handle.channel)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionResetError:
                # The worker exited with messages of ours unread (acks): Linux reports ECONNRESET
                # once, *before* what the worker sent last. Read on, or its final report is lost.
                continue
            except OSError:
                data, fds = b"", []
            for fd in fds:  # workers send none: never leak one
                os.close(fd)
            if not data:
                self._close_channel(handle)
                return
            try:
                message = decode(data, FROM_WORKER)
            except ProtocolError as exc:
                logger.warning(f"worker {handle.task_id} sent a malformed message ({exc}); ignored")
                continue
            match message:
                case Heartbeat(v=beat):
                    handle.last_beat = beat
                    if self._fence_after is not None and not handle.stopping:
                        self._queue(handle, _ACK)  # "your skald is alive": keeps the worker from fencing
                case Logs():
                    self._on_logs(handle, message)
                    continue
                case Running() if handle.running_at is None:
                    handle.running_at = time.monotonic()
                case Fenced(after=after):
                    # The worker stopped itself (we did not answer in time: frozen, overloaded). Its
                    # exit is a fencing exit: nothing is written as its outcome.
                    logger.warning(f"worker {handle.task_id} fenced itself after {after} s without an ack")
                    handle.self_fenced = True
                    if handle.stop_reason is None:
                        handle.stop_reason = StopReason.FENCED
                        handle.kill_at = time.monotonic() + self._grace
                case Final(status=status, exception=exception, result=result):
                    handle.outcome = status
                    handle.exception = exception
                    handle.result = result
                case Done():
                    # The task is over and its process stays for another: nothing more is read here
                    # until that process is given its next task.
                    self._on_done(handle, message)
                    return
                case UpdateOk(attachments=attachments):
                    handle.attachments = attachments
                    message = replace(message, origin=self._update_answered(handle)[0])
                case UpdateError():
                    origin, sent = self._update_answered(handle)
                    message = replace(message, origin=origin, rejected=sent)
            self._on_message(handle, message)

    @staticmethod
    def _update_answered(handle: WorkerHandle) -> tuple[str, Any]:
        """Where the update this answer is about came from, and its attachments (answers come in
        the order the updates were sent)."""
        if not handle.update_origins:
            return "worker", None
        return handle.update_origins.popleft(), handle.update_values.popleft() if handle.update_values else None

    def on_forkserver_readable(self) -> None:
        for pid, code in self._fs.read_exits():
            handle = self._by_pid.get(pid)
            if handle is None:
                idle = self._idle_by_pid.get(pid)
                if idle is not None:  # an idle process died (killed from outside)
                    logger.debug(f"idle worker process {pid} exited (code {code})")
                    self._retire(idle)
                continue
            handle.exit_code = code
            # Drain what the worker said before it died (its final report).
            if handle.channel.fileno() in self._by_fd:
                self.on_channel_readable(handle.channel.fileno())
            self._forget(handle)
            self._on_exit(handle)

    # ---- internals -----------------------------------------------------------------------
    def _signal(self, handle: WorkerHandle, sig: int) -> None:
        try:
            signal.pidfd_send_signal(handle.pidfd, sig)
        except ProcessLookupError:
            pass
        except OSError as exc:
            logger.warning(f"could not signal worker {handle.task_id} (pid {handle.pid}): {exc}")

    def _close_channel(self, handle: WorkerHandle) -> None:
        self._by_fd.pop(handle.channel.fileno(), None)

    def _forget(self, handle: WorkerHandle) -> None:
        self._by_fd.pop(handle.channel.fileno(), None)
        self._uncount(handle)
        self._by_pid.pop(handle.pid, None)
        _release(handle.channel, handle.pidfd)

    def wait_all_exited(self, timeout: float, poll: Callable[[float], None]) -> bool:
        """Run ``poll(remaining)`` (the loop's select) until no worker is left or ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._by_task:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            poll(min(remaining, 0.05))
            self.kill_overdue()
        return True


def _release(channel: socket.socket, pidfd: int) -> None:
    """Close our end of a worker's channel and its pidfd."""
    try:
        channel.close()
    finally:
        try:
            os.close(pidfd)
        except OSError:
            pass


__all__ = ["ForkServerError", "Supervisor", "WorkerHandle"]
