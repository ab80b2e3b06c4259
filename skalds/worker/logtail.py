"""A worker's recent log lines, on their way to the state cache (so the dashboard can show a task's
recent log lines).

The path of one line: the worker logs through ``skalds.utils.logging.logger``; a loguru sink in the
worker process (:class:`LogTail`, added by :mod:`skalds.worker.runtime`) keeps the line in a bounded
buffer, masked, cut to :data:`MAX_CHARS` and numbered ``n`` = 1, 2, … per process. On each heartbeat
the link thread (:class:`skalds.worker.link.ChannelLink`) sends what is buffered as a few
``logs`` messages (:class:`skalds.worker.protocol.Logs`) of at most
:data:`BATCH_BYTES` — never a message per line, never blocking: when the channel has no room the
lines wait for the next heartbeat, and the oldest are dropped once the buffer is full (a WARNING line
then says how many). On exit the rest is flushed (best effort). The skald appends them to
``task:{id}:logs`` in the cache (:meth:`skalds.backends.cache.state.StateView.append_task_logs`,
which also explains seq across re-runs), where the controller reads them.

An idle worker pays nothing: no line, no message; the heartbeat only checks that the buffer is
empty.
"""

from __future__ import annotations

import json
import threading
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any

from skalds.utils.logging import add_capture_sink, capture_into, mask_secrets, remove_sink
from skalds.worker.protocol import LOGS_OVERHEAD, Logs, encode_logs

if TYPE_CHECKING:
    from loguru import Message

#: Lines a worker keeps until they are sent.
MAX_LINES = 200
#: A longer message is cut to this many characters.
MAX_CHARS = 1000
#: Largest ``logs`` message (the channel is SOCK_SEQPACKET with a short queue: keep packets small).
BATCH_BYTES = 32 * 1024

#: ``(n, timestamp ms, level, message)``
Line = tuple[int, int, str, str]


class LogTail:
    """The bounded, numbered buffer of a worker process's recent log lines (thread-safe)."""

    def __init__(self, capacity: int = MAX_LINES, max_chars: int = MAX_CHARS) -> None:
        self.capacity = max(1, capacity)
        self.max_chars = max(8, max_chars)
        #: The lines not sent yet, oldest first, and how many were dropped since the last line
        #: saying so (read without the lock only to see whether there is anything to send).
        self.buffer: deque[Line] = deque()
        self.dropped = 0
        self._lock = threading.Lock()
        self._n = 0
        #: Told (``.logs_waiting = True``) when lines are added, so its idle loop reads nothing here.
        self.waiting: Any = None
        self.dropped_total = 0
        self._sink_id: int | None = None
        self._routed = False

    # ---- filling (any thread) --------------------------------------------------------------
    def install(self, level: str | None = None) -> LogTail:
        """Capture this process's log records (at the configured level unless ``level``).

        At the configured level this uses the capture handler a worker inherits from its skald
        (free); only otherwise is a loguru handler added."""
        if self._sink_id is None and not self._routed:
            self._routed = level is None and capture_into(self.write)
            if not self._routed:
                self._sink_id = add_capture_sink(self.write, level)
        return self

    def reset(self) -> None:
        """Forget every line and start numbering from 1 again (a reused process's next task)."""
        with self._lock:
            self.buffer.clear()
            self.dropped = 0
            self._n = 0
        self.waiting = None

    def uninstall(self) -> None:
        if self._routed:
            capture_into(None)
            self._routed = False
        if self._sink_id is not None:
            remove_sink(self._sink_id)
            self._sink_id = None

    def write(self, message: Message) -> None:
        """The loguru sink."""
        record = message.record
        text = record["message"]
        exc = record["exception"]
        if exc is not None and exc.type is not None:
            text = f"{text}\n{''.join(traceback.format_exception_only(exc.type, exc.value)).rstrip()}"
        # Masked again (messages of a plain loguru logger and exception texts are not patched);
        # masking is idempotent. Masked before the final cut, so no secret is cut into an unmasked
        # part; a first, generous cut bounds the cost of masking a huge message.
        text = mask_secrets(text[: 4 * self.max_chars])
        self.add(int(record["time"].timestamp() * 1000), record["level"].name, text)

    def add(self, timestamp: int, level: str, text: str) -> None:
        if len(text) > self.max_chars:
            text = text[: self.max_chars - 1] + "…"
        with self._lock:
            self._n += 1
            if len(self.buffer) >= self.capacity:
                self.buffer.popleft()
                self.dropped += 1
                self.dropped_total += 1
            self.buffer.append((self._n, timestamp, level, text))
        if self.waiting is not None:
            self.waiting.logs_waiting = True

    # ---- draining (the sender) -------------------------------------------------------------
    def __bool__(self) -> bool:
        return bool(self.buffer) or bool(self.dropped)

    @property
    def last_n(self) -> int:
        return self._n

    def take(self, now_ms: int) -> list[Line]:
        """Everything buffered, oldest first; after lines were dropped, a WARNING line saying how
        many comes last (it has its own n, so it is in order)."""
        with self._lock:
            if self.dropped:
                self._n += 1
                count, self.dropped = self.dropped, 0
                if len(self.buffer) >= self.capacity:
                    self.buffer.popleft()
                    count += 1
                    self.dropped_total += 1
                text = f"{count} log line{'s' if count != 1 else ''} dropped (logged faster than the log tail is sent)"
                self.buffer.append((self._n, now_ms, "WARNING", text))
            lines = list(self.buffer)
            self.buffer.clear()
        return lines

    def give_back(self, lines: list[Line]) -> None:
        """Lines that could not be sent go back in front; the oldest are dropped when over capacity."""
        if not lines:
            return
        with self._lock:
            room = self.capacity - len(self.buffer)
            keep = lines[-room:] if room > 0 else []
            lost = len(lines) - len(keep)
            self.dropped += lost
            self.dropped_total += lost
            self.buffer.extendleft(reversed(keep))
        if self.waiting is not None:
            self.waiting.logs_waiting = True


def encode_batches(lines: list[Line], max_bytes: int = BATCH_BYTES) -> list[tuple[bytes, int]]:
    """``logs`` messages for ``lines``, each at most ``max_bytes`` (a line is at most ~4 KB), with
    the number of lines each holds."""
    budget = max_bytes - LOGS_OVERHEAD
    out: list[tuple[bytes, int]] = []
    parts: list[bytes] = []
    size = 0
    for line in lines:
        part = json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode()
        if parts and size + len(part) + 1 > budget:
            out.append((encode_logs(parts), len(parts)))
            parts, size = [], 0
        parts.append(part)
        size += len(part) + 1
    if parts:
        out.append((encode_logs(parts), len(parts)))
    return out


def parse_lines(message: dict[str, Any]) -> list[list[Any]]:
    """The well-formed ``[n, timestamp, level, message]`` lines of a ``logs`` message."""
    return Logs.from_wire(message).lines


__all__ = ["BATCH_BYTES", "MAX_CHARS", "MAX_LINES", "LogTail", "encode_batches", "parse_lines"]
