"""The link between a worker process and its skald.

In a skald, each worker holds one end of a ``SOCK_SEQPACKET`` unix socket pair; the skald holds the
other. One daemon thread in the worker sends heartbeats and receives hot updates over it (the skald
consumes the event topics once for all its workers and forwards updates locally). A standalone
worker (``w.initialize(d); w.start()``) has a :class:`NullLink` and needs nothing. The messages in
both directions are described in :mod:`skalds.worker.protocol`.

**Self-fencing** (so a task never runs twice). Workers run in their own process groups, so a
frozen skald (SIGSTOP, a stalled VM) leaves them running while its liveness lease expires and the
controller gives their tasks to another skald. To keep one copy per task, the skald acknowledges
every heartbeat; when ``fence_after`` seconds pass without an ack, the link thread reports
``fenced``, logs a warning and sends its own process SIGTERM (release runs once, the process
exits), and if the process is still there ``(FENCE_FACTOR - 1) × fence_after`` later, SIGKILL.
The skald passes ``fence_after`` = its ``REDIS_KEY_TTL`` (the lifetime of its own lease), and the
controller's ``MONITOR_HEARTBEAT_TIMEOUT`` must exceed ``FENCE_FACTOR × REDIS_KEY_TTL`` (checked
by ``ControllerConfig``), so a frozen skald's workers are gone before their tasks run elsewhere.
Without ``fence_after`` (edge skalds, whose tasks are never failed over, and standalone workers
with a :class:`NullLink`) nothing of this applies.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skalds.model.task import now_ms
from skalds.utils.logging import logger
from skalds.worker import packets
from skalds.worker.logtail import LogTail, encode_batches
from skalds.worker.protocol import (
    ACK_BYTES,
    TO_WORKER,
    Ack,
    Fenced,
    FromWorker,
    ProtocolError,
    Update,
    WorkerException,
    decode,
    encode,
    heartbeat_bytes,
)

if TYPE_CHECKING:
    from skalds.worker.baseclass import BaseTaskWorker

#: A report longer than this that carries a ``text`` (an exception's traceback) is cut to its end.
MAX_MESSAGE = 1 << 20
#: A self-fenced worker is SIGKILLed at ``FENCE_FACTOR * fence_after`` after its last ack.
FENCE_FACTOR = 1.5
#: At most this many ``logs`` messages per heartbeat, so the channel's short queue (10 packets
#: here) keeps room for heartbeats and reports.
LOG_MESSAGES_PER_BEAT = 3
#: How long a worker's last log lines may wait for room in the channel on exit.
FINAL_FLUSH_TIMEOUT = 0.5
_SENT, _FULL, _GONE = object(), object(), object()


class NullLink:
    """No skald: reports go nowhere, no thread runs."""

    def start(self, worker: BaseTaskWorker[Any]) -> None:
        return None

    def report(self, message: FromWorker) -> None:
        return None

    def stop(self) -> None:
        return None


class ChannelLink(NullLink):
    """Heartbeats out and updates in over a unix socket to the skald."""

    def __init__(
        self,
        sock: socket.socket,
        heartbeat_interval: float,
        fence_after: float | None = None,
        *,
        signal_self: Callable[[int], None] | None = None,
        tail: LogTail | None = None,
        persistent: bool = False,
    ) -> None:
        self._sock = sock
        #: One link (and link thread) for every task of a reused process: :meth:`stop` parks the
        #: thread (it stops reading the channel, which the process then reads for its next task)
        #: and :meth:`start` attaches the next worker to it.
        self._persistent = persistent
        self._closed = False
        self._worker: BaseTaskWorker[Any] | None = None
        #: Attachments so far, and the one the thread stopped serving last (it is parked then).
        self._cv = threading.Condition()
        self._gen = 0
        self._parked_gen = -1
        self._tail = tail
        #: Set when the tail has lines; checked after each heartbeat.
        self.logs_waiting = False
        if tail is not None:
            tail.waiting = self
        #: One sender of log lines at a time (link thread or the final flush), so they stay in order.
        self._logs_lock = threading.Lock()
        self._signal_self = signal_self or (lambda sig: os.kill(os.getpid(), sig))
        self._interval = heartbeat_interval
        self._fence_after = fence_after if fence_after is not None and fence_after > 0 else None
        self._last_ack = time.monotonic()
        self._fenced_at: float | None = None
        self._stop = threading.Event()
        self._send_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._beat = 0
        #: Written by :meth:`stop` so the link thread leaves its wait at once (a reused process
        #: joins it before the channel carries the next task's messages).
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def start(self, worker: BaseTaskWorker[Any]) -> None:
        if self._thread is not None:
            if not self._persistent or self._worker is worker or not self._stop.is_set():
                return
            # A reused process's next task: the parked thread serves this worker now.
            with self._cv:
                self._attach(worker)
                self._stop.clear()
                self._cv.notify_all()
            return
        self._attach(worker)
        self._thread = threading.Thread(target=self._run, name="skalds-link", daemon=True)
        self._thread.start()

    def _attach(self, worker: BaseTaskWorker[Any]) -> None:
        self._gen += 1
        self._worker = worker
        self._last_ack = time.monotonic()
        self._fenced_at = None
        if self._tail is not None:
            self._tail.waiting = self

    def configure(self, heartbeat_interval: float, fence_after: float | None) -> None:
        """The heartbeat interval and fencing delay of the next task (a reused process)."""
        self._interval = heartbeat_interval
        self._fence_after = fence_after if fence_after is not None and fence_after > 0 else None

    def park(self, timeout: float = 2.0) -> bool:
        """After :meth:`stop`, wait until the link thread no longer reads the channel nor runs an
        update handler (persistent links only); False if it did not within ``timeout``."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return thread is None or not self._persistent
        with self._cv:
            return self._cv.wait_for(lambda: self._parked_gen == self._gen or not thread.is_alive(), timeout)

    def report(self, message: FromWorker, *, block: bool = True) -> None:
        """Send one message; with ``block=False`` drop it when the channel has no room."""
        data = encode(message)
        if len(data) > MAX_MESSAGE and isinstance(message, WorkerException):
            data = encode(WorkerException(message.text[-4000:]))
        self._send(data, block=block)

    def _send(self, data: bytes, *, block: bool) -> None:
        if not self._send_lock.acquire(timeout=-1 if block else self._interval):
            return
        try:
            # Any size: an update_ok carries the worker's whole attachments.
            packets.send(self._sock, data, flags=0 if block else socket.MSG_DONTWAIT)
        except OSError:
            pass  # no room (block=False), or the skald is gone: the fork server or PDEATHSIG ends us
        finally:
            self._send_lock.release()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        self.flush_logs()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def close(self, timeout: float = 2.0) -> bool:
        """Stop, wait for the link thread to end and free the wake-up pipe. False when the
        thread is still running after ``timeout`` (the channel must not be used for another task)."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                return False
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1
        return True

    # ---- log lines (skalds.worker.logtail) ----------------------------------------------------
    def _send_logs(self) -> None:
        """Send buffered lines without ever waiting; what finds no room waits for the next beat."""
        tail = self._tail
        if tail is None or not tail or not self._logs_lock.acquire(blocking=False):
            return
        try:
            self.logs_waiting = False
            lines = tail.take(now_ms())
            sent = 0
            for i, (data, count) in enumerate(encode_batches(lines)):
                if i >= LOG_MESSAGES_PER_BEAT:
                    break
                result = self._send_now(data)
                if result is _GONE:
                    return  # the skald is gone: nobody will read these
                if result is _FULL:
                    break
                sent += count
            tail.give_back(lines[sent:])
        finally:
            self._logs_lock.release()

    def _send_now(self, data: bytes) -> object:
        """One non-blocking send: ``_SENT``, ``_FULL`` (no room now) or ``_GONE``."""
        if not self._send_lock.acquire(timeout=self._interval):
            return _FULL
        try:
            packets.send(self._sock, data, flags=socket.MSG_DONTWAIT)
            return _SENT
        except (BlockingIOError, InterruptedError):
            return _FULL
        except OSError:
            return _GONE
        finally:
            self._send_lock.release()

    def flush_logs(self, timeout: float = FINAL_FLUSH_TIMEOUT) -> None:
        """Send every buffered line now, waiting up to ``timeout`` for room (on exit)."""
        tail = self._tail
        if tail is None or not tail:
            return
        deadline = time.monotonic() + timeout
        if not self._logs_lock.acquire(timeout=timeout):
            return
        try:
            lines = tail.take(now_ms())
            sent = 0
            for data, count in encode_batches(lines):
                while (result := self._send_now(data)) is not _SENT:
                    remaining = deadline - time.monotonic()
                    if result is _GONE or remaining <= 0 or not self._wait_writable(remaining):
                        tail.give_back(lines[sent:])
                        return
                sent += count
        finally:
            self._logs_lock.release()

    def _wait_writable(self, timeout: float) -> bool:
        try:
            _, ready, _ = select.select([], [self._sock.fileno()], [], timeout)
        except (OSError, ValueError):
            return False
        return bool(ready)

    def _heartbeat(self) -> None:
        # Never block on a heartbeat: with a frozen skald the channel fills up (10 datagrams here),
        # and a blocked link thread could not fence. A heartbeat that finds no room is dropped.
        # In fixed wire form, as acks are read: the periodic path touches no shared message class.
        self._send(heartbeat_bytes(self._beat), block=False)
        self._beat = (self._beat + 1) % 200

    def _fence_deadline(self) -> float | None:
        """When the next fencing step is due (monotonic), or None."""
        if self._fence_after is None:
            return None
        if self._fenced_at is None:
            return self._last_ack + self._fence_after
        return self._fenced_at + (FENCE_FACTOR - 1.0) * self._fence_after

    def _fence(self, now: float) -> None:
        if self._fenced_at is None:
            self._fenced_at = now
            silent = now - self._last_ack
            self.report(Fenced(round(silent, 3)), block=False)
            logger.warning(
                f"no answer from the skald for {silent:.1f} s (fence after {self._fence_after:g} s): "
                "stopping this worker so its task cannot run twice"
            )
            self._signal_self(signal.SIGTERM)
        else:
            logger.error("this fenced worker is still running; SIGKILL")
            self._signal_self(signal.SIGKILL)
            self._stop.set()  # nothing is left for this thread to do

    def _run(self) -> None:
        while True:
            with self._cv:
                gen, worker = self._gen, self._worker
            if worker is None or not self._loop(worker) or not self._persistent:
                return
            # Parked between tasks: reading nothing from the channel (the process reads its next
            # task there) until the next worker is attached, or the link is closed.
            with self._cv:
                self._parked_gen = gen
                self._cv.notify_all()
                self._cv.wait_for(lambda g=gen: self._gen != g or self._closed)  # type: ignore[misc]
                if self._closed:
                    return

    def _loop(self, worker: BaseTaskWorker[Any]) -> bool:
        """Serve ``worker`` until :meth:`stop`; False when the thread has to end (the skald is
        gone, the channel broke)."""
        fd = self._sock.fileno()
        next_beat = time.monotonic()
        self._last_ack = next_beat
        while not self._stop.is_set():
            now = time.monotonic()
            fence_at = self._fence_deadline()
            if fence_at is not None and now >= fence_at:
                self._fence(now)
                continue
            if now >= next_beat and self._fenced_at is None:
                self._heartbeat()
                if self.logs_waiting:  # set by the tail; idle: one attribute of our own, no other cost
                    self._send_logs()
                next_beat = now + self._interval
            # Fenced: no more heartbeats, only the SIGKILL step is left to wait for.
            wake = next_beat if self._fenced_at is None else now + self._interval
            if fence_at is not None:
                wake = min(wake, fence_at)
            try:
                ready, _, _ = select.select([fd, self._wake_r], [], [], max(0.0, wake - now))
            except (OSError, ValueError):
                return False
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 4096)
                except OSError:
                    pass
            if self._stop.is_set() or fd not in ready:
                continue
            try:
                data, fds = packets.recv(self._sock)
            except OSError:
                data, fds = b"", []
            for stray in fds:  # the skald sends none: never leak one
                os.close(stray)
            if not data:
                # The skald went away: end gracefully (release still runs once).
                self._signal_self(signal.SIGTERM)
                return False
            if data == ACK_BYTES:
                self._last_ack = time.monotonic()
                continue
            try:
                message = decode(data, TO_WORKER)
            except ProtocolError:
                continue
            match message:
                case Ack():  # sent otherwise than as ACK_BYTES (spacing): still an ack
                    self._last_ack = time.monotonic()
                case Update(attachments=attachments):
                    worker.handle_update_message({"attachments": attachments})
        return True
