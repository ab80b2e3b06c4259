"""The link between a worker process and its skald.

In a skald, each worker holds one end of a ``SOCK_SEQPACKET`` unix socket pair; the skald holds the
other. One daemon thread in the worker sends heartbeats and receives hot updates over it (DESIGN
principle 5: the skald consumes the event topics once and forwards updates locally). A standalone
worker (``w.initialize(d); w.start()``) has a :class:`NullLink` and needs nothing.

Messages are JSON objects with a ``t`` (type) field:

- worker → skald: ``running``, ``hb`` (``v``: 0–199), ``update_ok`` (``attachments``),
  ``update_error`` (``error``), ``exception`` (``text``), ``final`` (``status``, ``exception``),
  ``fenced`` (``after``: seconds without an ack)
- skald → worker: ``update`` (``attachments``), ``ack`` (one per ``hb``)

**Self-fencing** (SPEC §5, DESIGN principle 2). Workers run in their own process groups, so a
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

import json
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skalds.utils.logging import logger

if TYPE_CHECKING:
    from skalds.worker.baseclass import BaseTaskWorker

MAX_MESSAGE = 1 << 20
#: A self-fenced worker is SIGKILLed at ``FENCE_FACTOR * fence_after`` after its last ack.
FENCE_FACTOR = 1.5


class NullLink:
    """No skald: reports go nowhere, no thread runs."""

    def start(self, worker: BaseTaskWorker[Any]) -> None:
        return None

    def report(self, message: dict[str, Any]) -> None:
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
    ) -> None:
        self._sock = sock
        self._signal_self = signal_self or (lambda sig: os.kill(os.getpid(), sig))
        self._interval = heartbeat_interval
        self._fence_after = fence_after if fence_after is not None and fence_after > 0 else None
        self._last_ack = time.monotonic()
        self._fenced_at: float | None = None
        self._stop = threading.Event()
        self._send_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._beat = 0

    def start(self, worker: BaseTaskWorker[Any]) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, args=(worker,), name="skalds-link", daemon=True)
        self._thread.start()

    def report(self, message: dict[str, Any], *, block: bool = True) -> None:
        """Send one message; with ``block=False`` drop it when the channel has no room."""
        data = json.dumps(message, default=str).encode()
        if len(data) > MAX_MESSAGE:
            data = json.dumps({**message, "text": str(message.get("text", ""))[-4000:]}).encode()
        if not self._send_lock.acquire(timeout=-1 if block else self._interval):
            return
        try:
            self._sock.send(data, 0 if block else socket.MSG_DONTWAIT)
        except OSError:
            pass  # no room (block=False), or the skald is gone: the fork server or PDEATHSIG ends us
        finally:
            self._send_lock.release()

    def stop(self) -> None:
        self._stop.set()

    def _heartbeat(self) -> None:
        # Never block on a heartbeat: with a frozen skald the channel fills up (10 datagrams here),
        # and a blocked link thread could not fence. A heartbeat that finds no room is dropped.
        self.report({"t": "hb", "v": self._beat}, block=False)
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
            self.report({"t": "fenced", "after": round(silent, 3)}, block=False)
            logger.warning(
                f"no answer from the skald for {silent:.1f} s (fence after {self._fence_after:g} s): "
                "stopping this worker so its task cannot run twice"
            )
            self._signal_self(signal.SIGTERM)
        else:
            logger.error("this fenced worker is still running; SIGKILL")
            self._signal_self(signal.SIGKILL)
            self._stop.set()  # nothing is left for this thread to do

    def _loop(self, worker: BaseTaskWorker[Any]) -> None:
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
                next_beat = now + self._interval
            # Fenced: no more heartbeats, only the SIGKILL step is left to wait for.
            wake = next_beat if self._fenced_at is None else now + self._interval
            if fence_at is not None:
                wake = min(wake, fence_at)
            try:
                ready, _, _ = select.select([fd], [], [], max(0.0, wake - now))
            except (OSError, ValueError):
                return
            if self._stop.is_set() or not ready:
                continue
            try:
                data = self._sock.recv(MAX_MESSAGE)
            except OSError:
                data = b""
            if not data:
                # The skald went away: end gracefully (release still runs once).
                self._signal_self(signal.SIGTERM)
                return
            try:
                message = json.loads(data)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            kind = message.get("t")
            if kind == "ack":
                self._last_ack = time.monotonic()
            elif kind == "update":
                worker.handle_update_message({"attachments": message.get("attachments")})
