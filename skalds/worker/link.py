"""The link between a worker process and its skald.

In a skald, each worker holds one end of a ``SOCK_SEQPACKET`` unix socket pair; the skald holds the
other. One daemon thread in the worker sends heartbeats and receives hot updates over it (DESIGN
principle 5: the skald consumes the event topics once and forwards updates locally). A standalone
worker (``w.initialize(d); w.start()``) has a :class:`NullLink` and needs nothing.

Messages are JSON objects with a ``t`` (type) field:

- worker → skald: ``running``, ``hb`` (``v``: 0–199), ``update_ok`` (``attachments``),
  ``update_error`` (``error``), ``exception`` (``text``), ``final`` (``status``, ``exception``)
- skald → worker: ``update`` (``attachments``)
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skalds.worker.baseclass import BaseTaskWorker

MAX_MESSAGE = 1 << 20


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

    def __init__(self, sock: socket.socket, heartbeat_interval: float) -> None:
        self._sock = sock
        self._interval = heartbeat_interval
        self._stop = threading.Event()
        self._send_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._beat = 0

    def start(self, worker: BaseTaskWorker[Any]) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, args=(worker,), name="skalds-link", daemon=True)
        self._thread.start()

    def report(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, default=str).encode()
        if len(data) > MAX_MESSAGE:
            data = json.dumps({**message, "text": str(message.get("text", ""))[-4000:]}).encode()
        with self._send_lock:
            try:
                self._sock.send(data)
            except OSError:
                pass  # the skald is gone; the fork server or PDEATHSIG ends this process

    def stop(self) -> None:
        self._stop.set()

    def _heartbeat(self) -> None:
        self.report({"t": "hb", "v": self._beat})
        self._beat = (self._beat + 1) % 200

    def _loop(self, worker: BaseTaskWorker[Any]) -> None:
        fd = self._sock.fileno()
        next_beat = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                self._heartbeat()
                next_beat = now + self._interval
            try:
                ready, _, _ = select.select([fd], [], [], max(0.0, next_beat - now))
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
                os.kill(os.getpid(), signal.SIGTERM)
                return
            try:
                message = json.loads(data)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("t") == "update":
                worker.handle_update_message({"attachments": message.get("attachments")})
