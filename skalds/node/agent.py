"""The skald agent loop, the same for ``edge`` and ``node`` modes.

One thread owns everything here: a ``poll()`` over the fork server socket, every worker's channel,
a wake-up socket for signals and one for bus commands (a listener thread consumes the bus and hands
messages over). Timers drive the skald heartbeat, reconciliation against the store and the mode's
own timer (edge: the YAML file check).

Which tasks run is the mode policy's decision (:class:`~skalds.node.policy.ModePolicy`:
:class:`~skalds.node.node_mode.NodePolicy` runs what the store assigns to this skald,
:class:`~skalds.node.edge_mode.EdgePolicy` what its YAML file lists); the policy reaches the agent
only through its :class:`~skalds.node.port.AgentPort`. The agent does what every mode shares:
starting workers, their messages and exits, status writes, heartbeats, log lines, and the task
ends the store could not take yet. Every status write is fenced on this skald as executor (and the
epoch it was given), so a skald that lost a task cannot overwrite its new owner's state (see
docs/architecture.md, "Never two live executions").
"""

from __future__ import annotations

import queue
import select
import signal
import socket
import threading
import time
from types import FrameType
from typing import Any

from skalds.backends.bus.base import Message
from skalds.backends.cache.state import HEARTBEAT_CANCELLED, HEARTBEAT_FAILED, HEARTBEAT_FINISHED
from skalds.backends.store.base import status_change
from skalds.config.skald_config import SkaldConfig, SkaldModeEnum
from skalds.errors import Conflict, LostWrite, SkaldsError, TaskNotFound
from skalds.model.task import LIVE_STATUSES, Task, TaskLifecycleStatus, now_ms
from skalds.node.backends import Backends
from skalds.node.commands import MalformedEvent, parse_message
from skalds.node.edge import EdgeTasks
from skalds.node.edge_mode import EdgePolicy
from skalds.node.listener import BusListener
from skalds.node.node_mode import NodePolicy
from skalds.node.outcomes import UnwrittenEnd, UnwrittenEnds, journal_path
from skalds.node.policy import ModePolicy
from skalds.node.usage import UsageSampler
from skalds.utils.logging import logger
from skalds.worker.forkserver import ForkServer
from skalds.worker.protocol import Fenced, FromWorker, Heartbeat, Running, UpdateError, UpdateOk
from skalds.worker.registry import WorkerRegistry
from skalds.worker.supervisor import Supervisor, WorkerHandle

S = TaskLifecycleStatus
#: Seconds between a worker's "running" and the store write of Running: a task that ends sooner
#: gets Running and its end in one write.
RUNNING_WRITE_DELAY = 0.05
_END_VALUE = {S.FINISHED: HEARTBEAT_FINISHED, S.FAILED: HEARTBEAT_FAILED, S.CANCELLED: HEARTBEAT_CANCELLED}


class SkaldAgent:
    """Runs workers for one skald in edge or node mode until stopped."""

    def __init__(self, config: SkaldConfig, registry: WorkerRegistry, forkserver: ForkServer) -> None:
        self.config = config
        self.skald_id = config.skald_id
        self.mode = config.skald_mode
        self.registry = registry
        self.forkserver = forkserver
        self.backends = Backends(config)
        self.policy: ModePolicy = (
            EdgePolicy(self, EdgeTasks(config.yaml_file, registry))
            if self.mode == SkaldModeEnum.EDGE
            else NodePolicy(self)
        )
        self.supervisor = Supervisor(
            forkserver,
            heartbeat_interval=config.heartbeat_interval,
            grace_period=config.stop_grace_period,
            on_message=self._on_worker_message,
            on_exit=self._on_worker_exit,
            fence_after=self.policy.fence_after,
        )
        self._stop_requested = 0
        self._signal_r, self._signal_w = socket.socketpair()
        self._cmd_r, self._cmd_w = socket.socketpair()
        for s in (self._signal_r, self._signal_w, self._cmd_r, self._cmd_w):
            s.setblocking(False)
        self._commands: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._beats: dict[str, int] = {}
        self._skald_beat = 0
        self._poller = select.poll()
        self._polled: set[int] = set()
        self._masks: dict[int, int] = {}
        #: Workers that reported running this pass; Running is written at its end (or with theirs).
        self._running_pending: dict[str, tuple[WorkerHandle, float]] = {}
        self._listener: BusListener | None = None
        self._next_reconcile = 0.0
        #: Running tasks with a max run time: when each must be stopped, and the limit (seconds).
        self._run_limits: dict[str, tuple[float, float]] = {}
        #: Tasks stopped for running too long: their limit, for the end written.
        self._timed_out: dict[str, float] = {}
        self._usage = UsageSampler()
        #: Ends of tasks the store could not take yet (kept, retried, never re-run).
        self.unwritten = UnwrittenEnds(journal_path(config.skalds_home, self.skald_id))
        #: Last time each distinct loop failure was logged (so a persistent one is not logged every pass).
        self._failures_logged: dict[str, float] = {}
        self.started = threading.Event()
        #: When this skald started (ms): commands published before it may be replays.
        self.started_ms = now_ms()

    # ---- public --------------------------------------------------------------------------
    def run(self) -> None:
        previous = self._install_signals()
        try:
            self._startup()
            self.started.set()
            self._loop()
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def request_stop(self) -> None:
        self._stop_requested += 1
        try:
            self._signal_w.send(b"x")
        except OSError:
            pass

    # ---- the port policies use (skalds.node.port.AgentPort) -----------------------------------
    @property
    def stopping(self) -> bool:
        return self._stop_requested > 0

    def reconcile_soon(self, delay: float) -> None:
        self._next_reconcile = min(self._next_reconcile, time.monotonic() + delay)

    # ---- startup / shutdown --------------------------------------------------------------
    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._stop_requested += 1
            if self._stop_requested == 1:
                logger.info(f"received {signal.Signals(signum).name}, stopping gracefully")
            else:
                logger.warning("second stop signal: workers get SIGKILL now")
            try:
                self._signal_w.send(b"x")
            except OSError:
                pass

        previous: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
        return previous

    def _startup(self) -> None:
        logger.info(
            f"skald {self.skald_id} starting in {self.mode.value} mode with classes: "
            f"{', '.join(self.registry.names()) or 'none'}"
        )
        self.policy.start()
        self._register()
        self._listener = BusListener(self.backends, f"skald-{self.skald_id}", self._deliver)
        self._listener.start()
        self.policy.started()

    def _shutdown(self) -> None:
        """Stop the workers (release runs), write what is left, unregister — each step guarded, so
        a failing one never keeps the fork server (and any worker still alive with it) running."""
        try:
            if self._listener is not None:
                self._listener.stop()
            self._guard("stop workers", self._stop_workers)
            self._guard("retire idle processes", self.supervisor.retire_idle, float("inf"))
            if len(self.unwritten):
                self._guard("write kept task ends", self.flush_unwritten)
            self._guard("write heartbeats", self._flush_beats)
            self._guard("write log lines", self._flush_logs)
            self._guard("unregister", self._unregister)
        finally:
            self.forkserver.stop()  # workers still alive die with it (PDEATHSIG)
            if self._listener is not None:
                self._listener.join(timeout=3.0)
            self.backends.close()
        logger.info(f"skald {self.skald_id} stopped")

    def _stop_workers(self) -> None:
        handles = self.supervisor.handles()
        if not handles:
            return
        logger.info(f"stopping {len(handles)} worker(s)")
        grace = 0.0 if self._stop_requested > 1 else self.config.stop_grace_period
        self.supervisor.stop_many([h.task_id for h in handles], "shutdown", grace)
        self.supervisor.wait_all_exited(grace + 5.0, self._poll_once)

    def _unregister(self) -> None:
        self.backends.with_state("unregister", lambda v: v.unregister_skald(self.skald_id))

    def _register(self) -> None:
        self._register_only()
        self._skald_heartbeat()

    # ---- the loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        now = time.monotonic()
        next_beat = now + self.config.redis_sync_period
        self._next_reconcile = now + self.config.reconcile_interval
        while not self._stop_requested:
            now = time.monotonic()
            due = (
                self.policy.next_deadline(),
                self.supervisor.next_deadline(),
                self._running_due(),
                self._next_run_limit(),
            )
            deadlines = [next_beat, self._next_reconcile, *(d for d in due if d is not None)]
            if not self._guard("poll", self._poll_once, max(0.0, min(deadlines) - now)):
                _wait_readable(self._signal_r, 0.1)  # do not spin on a failure that repeats
            now = time.monotonic()
            self._guard("stop overdue workers", self.supervisor.kill_overdue, now)
            if self._run_limits:
                self._guard("max run times", self._enforce_run_limits, now)
            if now >= next_beat:
                next_beat = now + self.config.redis_sync_period
                self._guard("skald heartbeat", self._skald_heartbeat)
            policy_at = self.policy.next_deadline()
            if policy_at is not None and now >= policy_at:
                self._guard(f"{self.policy.name} timer", self.policy.on_deadline, now)
            if now >= self._next_reconcile:
                self._next_reconcile = now + self.config.reconcile_interval
                self._guard("reconcile", self._reconcile)

    def _reconcile(self) -> None:
        if len(self.unwritten):
            self.flush_unwritten()
        self.policy.reconcile()

    # ---- commands from the bus (the listener thread hands them over) ------------------------
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
                self.policy.apply(command)
            except Exception as exc:
                logger.opt(exception=exc).error(f"command {command.kind} {list(command.task_ids)} failed")

    def _guard(self, what: str, fn: Any, *args: Any) -> bool:
        """Run one step of the loop; an error is logged (once a minute per distinct error) and the
        skald carries on — an outage or a bug in one step must never end a skald and its workers.
        False when the step failed."""
        try:
            fn(*args)
            return True
        except Exception as exc:
            key = f"{what}: {type(exc).__name__}: {exc}"
            now = time.monotonic()
            if now - self._failures_logged.get(key, -1e9) >= 60.0:
                self._failures_logged[key] = now
                if len(self._failures_logged) > 100:
                    self._failures_logged = {key: now}
                logger.opt(exception=exc).error(f"{what} failed; the skald carries on: {type(exc).__name__}: {exc}")
            return False

    def _poll_once(self, timeout: float) -> None:
        wanted = {
            self._signal_r.fileno(),
            self._cmd_r.fileno(),
            *self.supervisor.channel_fds(),
        }
        if self.forkserver.running:
            wanted.add(self.forkserver.fileno())
        writable = set(self.supervisor.writable_wanted())
        for fd in self._polled - wanted:
            self._poller.unregister(fd)
        for fd in wanted:
            mask = select.POLLIN | (select.POLLOUT if fd in writable else 0)
            if fd not in self._polled or self._masks.get(fd) != mask:
                self._poller.register(fd, mask)  # register() also modifies
                self._masks[fd] = mask
        for fd in self._polled - wanted:
            self._masks.pop(fd, None)
        self._polled = wanted
        try:  # exits a spawn read meanwhile are taken at once (their socket shows nothing more)
            events = self._poller.poll(0 if self.forkserver.exits_waiting else timeout * 1000.0)
        except InterruptedError:
            events = []
        fs_fd = self.forkserver.fileno() if self.forkserver.running else -1
        fs_ready = False
        for fd, mask in events:
            if mask & select.POLLOUT:
                self.supervisor.on_channel_writable(fd)
                if not mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    continue
            if fd == self._signal_r.fileno():
                _drain(self._signal_r)
            elif fd == self._cmd_r.fileno():
                _drain(self._cmd_r)
                self._handle_commands()
            elif fd == fs_fd:
                fs_ready = True
            else:
                self.supervisor.on_channel_readable(fd)
        if fs_ready or self.forkserver.exits_waiting:
            self.supervisor.on_forkserver_readable()
            if not self.forkserver.running and not self._stop_requested:
                logger.critical("the worker fork server died; stopping this skald")
                self._stop_requested += 1
        self._flush_running()
        self._flush_beats()
        self._flush_logs()

    # ---- workers -------------------------------------------------------------------------
    def start_worker(self, task: Task, epoch: int | None) -> WorkerHandle | None:
        if task.class_name not in self.registry:
            self._fail_unknown_class(task)
            return None
        try:
            handle = self.supervisor.start(task, epoch)
        except SkaldsError as exc:
            logger.error(f"could not start worker for task {task.id}: {exc}")
            return None
        how = "reused process" if handle.reused else "pid"
        logger.info(f"started worker {task.id} ({task.class_name}) {how} {handle.pid}")
        limit = task.max_run_time or self.registry.get(task.class_name).max_run_time
        if limit:
            self._run_limits[task.id] = (time.monotonic() + limit, float(limit))
        self.policy.worker_started(handle)
        return handle

    # ---- max run time (Task.max_run_time, BaseTaskWorker.max_run_time) ----------------------
    def _next_run_limit(self) -> float | None:
        return min((at for at, _ in self._run_limits.values()), default=None)

    def _enforce_run_limits(self, now: float) -> None:
        """Stop the workers that ran past their max run time (SIGTERM: release runs; SIGKILL
        after the grace period); the task ends Failed, saying so."""
        for task_id, (at, limit) in list(self._run_limits.items()):
            if at > now:
                continue
            del self._run_limits[task_id]
            handle = self.supervisor.get(task_id)
            if handle is None or handle.stopping:
                continue
            logger.warning(f"task {task_id} ran longer than its max run time of {limit:g} s; stopping it")
            self._timed_out[task_id] = limit
            self.supervisor.stop(task_id, "timeout")

    def _fail_unknown_class(self, task: Task) -> None:
        message = (
            f"worker class {task.class_name!r} is not registered on skald {self.skald_id} "
            f"(registered: {', '.join(self.registry.names()) or 'none'})"
        )
        logger.error(f"task {task.id}: {message}")
        self._record_end(UnwrittenEnd(task.id, S.FAILED.value, None, exception=message))
        self.backends.with_state("error", lambda v: v.task_ended(task.id, HEARTBEAT_FAILED, message))

    def _on_worker_message(self, handle: WorkerHandle, message: FromWorker) -> None:
        match message:
            case Heartbeat(v=beat):
                if not handle.self_fenced:
                    self._beats[handle.task_id] = beat % 200
            case Fenced():
                # Beats read after a freeze are stale: the task may be another skald's by now.
                self._beats.pop(handle.task_id, None)
            case Running():
                self.backends.with_state("started", lambda v: v.task_started(handle.task_id))
                self._beats[handle.task_id] = 0
                # Written RUNNING_WRITE_DELAY later — or together with the task's end if that comes
                # first (a short task): one store write instead of two.
                self._running_pending[handle.task_id] = (handle, time.monotonic() + RUNNING_WRITE_DELAY)
            case UpdateOk(attachments=attachments, origin=origin):
                self._on_update_applied(handle, attachments, origin)
            case UpdateError(error=error, origin=origin, rejected=rejected):
                self.backends.with_state("error", lambda v: v.task_error(handle.task_id, error))
                if origin == "store":
                    self._restore_attachments(handle, rejected)

    def _flush_running(self, now: float | None = None) -> None:
        """Record Running for the workers that reported it at least RUNNING_WRITE_DELAY ago (all
        of them with ``now`` = inf) and still run."""
        if not self._running_pending:
            return
        now = time.monotonic() if now is None else now
        due = [h for h, at in self._running_pending.values() if at <= now]
        for handle in due:
            del self._running_pending[handle.task_id]
            if self.supervisor.get(handle.task_id) is handle:
                self._mark_running(handle)

    def _running_due(self) -> float | None:
        return min((at for _, at in self._running_pending.values()), default=None)

    def _mark_running(self, handle: WorkerHandle) -> None:
        try:
            self.backends.with_store(
                "running",
                lambda s: s.set_status(
                    handle.task_id,
                    S.RUNNING,
                    expect_executor=self.skald_id,
                    expect_epoch=handle.epoch,
                    expect_statuses=LIVE_STATUSES,
                    exception=None,
                    result=None,
                ),
            )
        except LostWrite as exc:
            self.policy.ownership_lost(handle, str(exc))

    def _on_update_applied(self, handle: WorkerHandle, attachments: Any, origin: str) -> None:
        """Record an applied update where it did not come from.

        ``store``: the store already holds it (writing again could overwrite a newer value).
        ``direct``: an outside producer wrote to the bus only; the store follows the worker.
        ``yaml``: the file already holds it. Edge skalds write store and direct updates back into
        the YAML file.
        """
        logger.info(f"task {handle.task_id}: update applied ({origin})")
        if origin == "direct":
            # Record it only if nobody changed the store since the worker was last given its value:
            # a newer stored update must win (it is forwarded next), not be overwritten by this one.
            known = handle.sent_attachments

            def write(t: Task) -> dict[str, Any] | None:
                return {"attachments": attachments} if t.attachments == known else None

            try:
                stored = self.backends.with_store("attachments", lambda s: s.modify(handle.task_id, write))
            except SkaldsError as exc:
                logger.debug(f"task {handle.task_id}: attachments not stored: {exc}")
            else:
                if stored is not None and stored.attachments == attachments:
                    handle.sent_attachments = attachments  # the store now matches the worker
        self.policy.update_applied(handle, attachments, origin)

    def _restore_attachments(self, handle: WorkerHandle, rejected: Any) -> None:
        """The worker rejected the stored update ``rejected`` and runs on with its own values: put
        those back in the store, so the record shows what runs — fenced on this skald and the
        worker's epoch, and only while the store still holds the rejected value (a newer update
        stays, and is forwarded in turn). The rejection's message stays in the cache
        (``task:{id}:has-error``)."""
        running = handle.attachments

        def write(t: Task) -> dict[str, Any] | None:
            if t.executor != self.skald_id or (handle.epoch is not None and t.epoch != handle.epoch):
                raise Conflict(f"task {t.id!r} is now {t.executor!r}'s at epoch {t.epoch}")
            return {"attachments": running} if t.attachments == rejected and running != rejected else None

        try:
            stored = self.backends.with_store("attachments", lambda s: s.modify(handle.task_id, write))
        except LostWrite as exc:
            logger.debug(f"task {handle.task_id}: rejected attachments not restored: {exc}")
            return
        if stored is not None and stored.attachments == running:
            handle.sent_attachments = running  # the store matches the worker again: nothing to forward
            logger.info(f"task {handle.task_id}: update rejected; the store holds the worker's attachments again")

    def _on_worker_exit(self, handle: WorkerHandle) -> None:
        self.policy.slot_freed(handle)
        # It reported running in the pass that saw it end: Running is written with its end.
        pending = self._running_pending.pop(handle.task_id, None)
        ran = pending is not None and pending[0] is handle
        self._beats.pop(handle.task_id, None)
        self._run_limits.pop(handle.task_id, None)
        outcome, exception = self._describe_exit(handle)
        self._record_exit(handle, outcome, exception, ran)
        self.policy.worker_exited(handle, outcome)

    def _describe_exit(self, handle: WorkerHandle) -> tuple[TaskLifecycleStatus, str | None]:
        """The task's outcome (a worker that died without saying is Failed) and exception; logs
        the exit, and ends the task's log tail with it."""
        reason, code = handle.stop_reason, handle.exit_code
        outcome = S(handle.outcome) if handle.outcome in {s.value for s in S} else None
        exception = handle.exception
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if outcome is None:
            outcome = S.FAILED
            exception = exception or f"worker process died without reporting ({how})"
        # A paused task's worker was stopped like a cancelled one; what it is now is Paused.
        shown = S.PAUSED if reason == "pause" and outcome == S.CANCELLED else outcome
        because = f", {reason}" if reason else ""
        logger.info(
            f"worker {handle.task_id} exited ({shown.value}, code {code}{because}) "
            f"after {time.monotonic() - handle.started_at:.2f} s"
        )
        if not handle.self_fenced and reason != "fenced":
            # The task's log tail ends with the exit (also when the worker could not say anything,
            # e.g. killed), written before anything that lets another copy of the task start.
            level = "ERROR" if outcome == S.FAILED else "INFO"
            self.supervisor.add_log_line(handle, level, f"worker process exited: {shown.value} ({how}{because})")
        self._flush_logs()
        return outcome, exception

    def _record_exit(
        self, handle: WorkerHandle, outcome: TaskLifecycleStatus, exception: str | None, ran: bool
    ) -> None:
        """Write what the exit means for the task, by why the worker stopped."""
        task_id, reason = handle.task_id, handle.stop_reason
        if reason == "shutdown":
            # Still ours, just not running: on restart we pick it up again. The process is gone,
            # so its lease goes too (a restarted skald need not wait for it to expire).
            self.write_status(task_id, S.ASSIGNING, handle.epoch, only_from=(S.RUNNING,))
            self.backends.with_state("forget", lambda v: v.task_forget(task_id))
        elif handle.self_fenced:
            # It stopped itself while this skald did not answer (frozen): the task may be another
            # skald's by now, so nothing is written for it; the next reconcile decides.
            pass
        elif reason == "fenced":
            # Free the lease at once so the new owner need not wait for it to expire — only if it
            # still holds our last beat (the new owner may have written its own by now).
            beat = handle.last_beat
            if beat is not None:
                self.backends.with_state("forget", lambda v: v.task_forget(task_id, only_if=str(beat % 200)))
        elif reason == "restart":
            self.backends.with_state("forget", lambda v: v.task_forget(task_id))
        elif reason == "timeout":
            limit = self._timed_out.pop(task_id, 0.0)
            why = f"stopped after its max run time of {limit:g} s"
            live = tuple(s.value for s in LIVE_STATUSES)
            self._record_end(
                UnwrittenEnd(task_id, S.FAILED.value, handle.epoch, exception=why, only_from=live, ran=ran)
            )
            self.backends.with_state("ended", lambda v: v.task_ended(task_id, HEARTBEAT_FAILED, why))
        elif reason in ("pause", "cancel", "removed"):
            status = S.PAUSED if reason == "pause" else S.CANCELLED
            live = tuple(s.value for s in LIVE_STATUSES)
            self._record_end(UnwrittenEnd(task_id, status.value, handle.epoch, only_from=live, ran=ran))
            self.backends.with_state("ended", lambda v: v.task_ended(task_id, HEARTBEAT_CANCELLED))
        else:
            result = handle.result if outcome == S.FINISHED else None
            end = UnwrittenEnd(task_id, outcome.value, handle.epoch, exception=exception, ran=ran, result=result)
            self._record_end(end)
            value = _END_VALUE.get(outcome, HEARTBEAT_FAILED)
            self.backends.with_state("ended", lambda v: v.task_ended(task_id, value, exception))

    def write_status(
        self,
        task_id: str,
        status: TaskLifecycleStatus,
        epoch: int | None,
        *,
        exception: str | None = None,
        only_from: tuple[TaskLifecycleStatus, ...] | None = None,
        ran: bool = False,
        result: Any = None,
    ) -> bool:
        """Write ``status`` fenced on this skald and ``epoch``; with ``ran``, Running first (the
        worker's start not recorded yet), both in one store write. ``result``: what main
        returned, for Finished (a task's result is cleared whenever it runs again).

        True when the store took the write or decided against it (a fence lost: the task is no
        longer ours to write, or it is not in the store); False when the store could not be
        reached (or could not write)."""
        written = self._write_status(
            task_id, status, epoch, exception=exception, only_from=only_from, ran=ran, result=result
        )
        if written is False:
            logger.debug(f"task {task_id}: status {status.value} not written: no such task in the store")
        return written is not None

    def _write_status(
        self,
        task_id: str,
        status: TaskLifecycleStatus,
        epoch: int | None,
        *,
        exception: str | None,
        only_from: tuple[TaskLifecycleStatus, ...] | None,
        ran: bool,
        result: Any,
    ) -> bool | None:
        """:meth:`write_status`, telling apart a task the store does not hold (False) from a
        write it took or decided against (True) and a store it could not reach (None)."""
        fields: dict[str, Any] = {}
        if exception is not None:
            fields["exception"] = exception
        if status == S.FINISHED:
            fields["result"] = result
        changes = [
            status_change(
                status, expect_executor=self.skald_id, expect_epoch=epoch, expect_statuses=only_from, **fields
            )
        ]
        if ran:
            running = status_change(
                S.RUNNING,
                expect_executor=self.skald_id,
                expect_epoch=epoch,
                expect_statuses=LIVE_STATUSES,
                exception=None,
                result=None,
            )
            changes.insert(0, running)
        try:
            return self.backends.with_store("status", lambda s: s.modify_in_turn(task_id, changes) is not None)
        except TaskNotFound:
            return False
        except LostWrite as exc:
            logger.debug(f"task {task_id}: status {status.value} not written: {exc}")
            return True

    # ---- task ends the store could not take yet (skalds.node.outcomes) ---------------------
    def _record_end(self, end: UnwrittenEnd) -> None:
        """Write a task's end; if the store cannot take it now, keep it until it can."""
        if self._write_end(end):
            self.unwritten.discard(end.task_id)
        else:
            self.unwritten.add(end)

    def _write_end(self, end: UnwrittenEnd) -> bool:
        written = self._write_status(
            end.task_id,
            end.lifecycle_status,
            end.epoch,
            exception=end.exception,
            only_from=end.expect_statuses,
            ran=end.ran,
            result=end.result,
        )
        if written is False and self.policy.records_itself(end.task_id):
            return False  # ended before the store held its record: the policy records it with this end
        return written is not None

    def flush_unwritten(self, task_id: str | None = None) -> None:
        """Write the kept ends (or only ``task_id``'s); stop at the first the store cannot take."""
        ends = self.unwritten.all() if task_id is None else [e for e in self.unwritten.all() if e.task_id == task_id]
        for end in ends:
            if not self._write_end(end):
                return
            self.unwritten.discard(end.task_id)
            logger.info(f"task {end.task_id}: its end ({end.status}) is written now that the store is back")

    # ---- log lines (skalds.worker.logtail; the list's format in docs/wire-formats.md) -----
    def _flush_logs(self) -> None:
        """Append the log lines workers sent to their tasks' lists in the cache. When the cache
        is down they are dropped (Backends logs the outage once); workers never wait for this."""
        for handle in self.supervisor.take_logs():
            lines, handle.log_lines = handle.log_lines, []
            self._write_logs(handle, lines)

    def _write_logs(self, handle: WorkerHandle, lines: list[list[Any]]) -> None:
        base = self.backends.with_state(
            "task logs", lambda v: v.append_task_logs(handle.task_id, lines, handle.log_base)
        )
        if base is not None:
            handle.log_base = base

    # ---- heartbeats ----------------------------------------------------------------------
    def _flush_beats(self) -> None:
        if not self._beats:
            return
        beats, self._beats = self._beats, {}
        lease = self.config.heartbeat_interval * 3
        self.backends.with_state("task heartbeats", lambda v: v.task_heartbeats(beats, lease))

    def _skald_heartbeat(self) -> None:
        self._skald_beat = (self._skald_beat + 1) % 200
        tasks = self.supervisor.task_ids()
        classes = self.registry.names()
        # Our lease is gone (the cache restarted or expired it while unreachable): register again.
        if self.backends.with_state("skald lease", lambda v: v.skald_alive(self.skald_id)) is False:
            self._register_only()
        self.backends.with_state(
            "skald heartbeat", lambda v: v.skald_heartbeat(self.skald_id, self._skald_beat, tasks, classes)
        )
        self._report_usage()

    def _report_usage(self) -> None:
        """CPU and memory of every worker process, next to its task's heartbeat lease."""
        handles = [h for h in self.supervisor.handles() if h.pid]
        if not handles:
            return
        sampled = self._usage.sample([h.pid for h in handles])
        usage = {h.task_id: sampled[h.pid].to_json() for h in handles if h.pid in sampled}
        lease = self.config.heartbeat_interval * 3
        self.backends.with_state("task usage", lambda v: v.task_usage(usage, lease))

    def _register_only(self) -> None:
        mode = "edge" if self.mode == SkaldModeEnum.EDGE else "node"
        self.backends.with_state(
            "register",
            lambda v: v.register_skald(
                self.skald_id, mode, self.registry.names(), self.registry.json_schemas(), self._placement()
            ),
        )

    def _placement(self) -> dict[str, Any]:
        """What this skald offers for placement (``skalds:{id}:placement``)."""
        return {
            "labels": self.config.labels,
            "resources": self.config.resources,
            "classes": self.registry.class_needs(),
        }


def _wait_readable(sock: socket.socket, timeout: float) -> None:
    try:
        select.select([sock], [], [], timeout)
    except (OSError, ValueError):
        pass


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass
