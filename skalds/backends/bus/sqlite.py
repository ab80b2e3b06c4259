"""The embedded event bus: an append-only ``events`` table in the shared SQLite file.

Ordering and offsets. Every message gets a global, never-reused sequence number (``AUTOINCREMENT``).
A consumer group remembers, per topic, the last sequence it has consumed (``consumer_offsets``).
A *new* group starts at the current end of the log (with ``since_ms``: at the first event
published at or after that time, found through the ``ts_ms`` index); a *known* group resumes after
its committed sequence, so commands published while a skald was down reach it when it comes back.
``poll`` hands out up to :data:`BATCH` messages and commits them at the start of the next ``poll``
(or on ``close``): at-least-once, a consumer that dies while handling a batch gets it again. One group
should have one live consumer at a time (a second one would see the same messages).

Wake-ups. Polling the table on a timer would trade latency for CPU. Instead every consumer binds a
Linux *abstract-namespace* unix datagram socket and registers its name in ``wakers``; after
committing an insert, ``publish`` sends one byte to each consumer of the topic. Abstract sockets
need no file on disk to clean up and vanish with their process, so a send to a dead consumer fails
at once (``ECONNREFUSED``) and the publisher deletes that row. ``poll`` waits with ``select`` on
its socket and still re-reads the table every :data:`SAFETY_INTERVAL` seconds in case a datagram
was lost. A consumer registers before its first read, so no message can slip between the two.

Retention. Events older than ``retention_s`` or beyond the last ``max_events`` are deleted every
:data:`TRIM_EVERY` publishes (counted by sequence number, so across all processes).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import select
import socket
import sqlite3
import time
from collections.abc import Sequence

from skalds.backends.bus.base import Consumer, EventBus, Message
from skalds.backends.sqlite_db import UNAVAILABLE_ERRORS, ConnectionPool, unavailable_message, write_tx
from skalds.model.task import now_ms
from skalds.utils.logging import logger

#: Most messages one ``poll`` returns.
BATCH = 500
#: ``poll`` re-reads the table at least this often (seconds) even without a wake-up datagram.
SAFETY_INTERVAL = 0.25
#: Trim old events when the new sequence number is a multiple of this.
TRIM_EVERY = 500

_PUBLISHED = b"p"
_WAKEUP = b"w"
_counter = itertools.count(1)


def _row_message(seq: int, topic: str, key: object, value: object, ts: object) -> Message | None:
    """A row of ``events`` as a message, tolerating what SQLite's loose typing lets in (a value
    stored as TEXT, a key stored as a number, a timestamp that is not a number). None for a row
    that cannot be a message at all (its value is neither bytes nor text)."""
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    elif value is None:
        data = b""
    else:
        logger.warning(f"event bus: skipped row {seq} on {topic}: its value is a {type(value).__name__}, not bytes")
        return None
    try:
        stamp = int(ts)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        stamp = 0
    return Message(topic=topic, key=None if key is None else str(key), value=data, offset=seq, timestamp_ms=stamp)


def _waker_prefix(path: str) -> str:
    return f"skalds-{hashlib.sha1(path.encode()).hexdigest()[:12]}"


class SqliteConsumer(Consumer):
    """One consumer group's subscription to some topics. Used by one thread (``wakeup`` aside)."""

    def __init__(self, bus: SqliteEventBus, group: str, topics: tuple[str, ...], since_ms: int | None = None) -> None:
        self._bus = bus
        self.group = group
        self.topics = topics
        self._since_ms = since_ms
        self._pid = os.getpid()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.waker_name = self._bind()
        self._positions: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self._closed = False
        self._woken = False  # set by wakeup(): survives a full socket queue
        try:
            self._register()
        except BaseException:
            self._sock.close()
            raise

    def _bind(self) -> str:
        while True:
            name = f"{_waker_prefix(self._bus.path)}-{self._pid}-{next(_counter)}"
            try:
                self._sock.bind(b"\0" + name.encode())
                return name
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise

    def _register(self) -> None:
        """Register the waker, then load (or create at the log's end) the group's offsets."""
        conn = self._bus._pool.get()
        with write_tx(conn):
            end_row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            end = int(end_row[0]) if end_row else 0
            if self._since_ms is not None:
                # a new group starts before the first event published at or after since_ms
                first = conn.execute("SELECT MIN(seq) FROM events WHERE ts_ms >= ?", (self._since_ms,)).fetchone()
                if first[0] is not None:
                    end = min(end, int(first[0]) - 1)
            for topic in self.topics:
                conn.execute(
                    "INSERT OR REPLACE INTO wakers (topic, name, pid, created_ms) VALUES (?, ?, ?, ?)",
                    (topic, self.waker_name, self._pid, now_ms()),
                )
                conn.execute(
                    "INSERT OR IGNORE INTO consumer_offsets (grp, topic, seq) VALUES (?, ?, ?)",
                    (self.group, topic, end),
                )
                row = conn.execute(
                    "SELECT seq FROM consumer_offsets WHERE grp = ? AND topic = ?", (self.group, topic)
                ).fetchone()
                self._positions[topic] = int(row[0])

    def poll(self, timeout: float) -> list[Message]:
        if self._closed:
            raise RuntimeError("poll() on a closed consumer")
        deadline = time.monotonic() + max(timeout, 0.0)
        self._commit()
        while True:
            woken = self._drain() or self._woken
            self._woken = False
            messages = self._fetch()
            if messages:
                for m in messages:
                    self._positions[m.topic] = m.offset
                    self._pending[m.topic] = m.offset
                return messages
            remaining = deadline - time.monotonic()
            if woken or remaining <= 0:
                return []
            select.select([self._sock], [], [], min(remaining, SAFETY_INTERVAL))

    def _drain(self) -> bool:
        """Empty the socket; True if :meth:`wakeup` was called."""
        woken = False
        while True:
            try:
                data = self._sock.recv(16)
            except (BlockingIOError, InterruptedError):
                return woken
            woken = woken or _WAKEUP in data

    def _fetch(self) -> list[Message]:
        where = " OR ".join("(topic = ? AND seq > ?)" for _ in self.topics)
        args: list[object] = []
        for topic in self.topics:
            args.extend((topic, self._positions[topic]))
        rows = (
            self._bus._pool.get()
            .execute(
                f"SELECT seq, topic, key, value, ts_ms FROM events WHERE {where} ORDER BY seq LIMIT ?",
                (*args, BATCH),
            )
            .fetchall()
        )
        messages = []
        for seq, topic, key, value, ts in rows:
            message = _row_message(int(seq), topic, key, value, ts)
            if message is None:
                # Not a message any producer of ours writes: step over it (and commit that), so
                # one foreign or damaged row never blocks the topic.
                self._positions[topic] = self._pending[topic] = int(seq)
                continue
            messages.append(message)
        return messages

    def _commit(self) -> None:
        if not self._pending:
            return
        conn = self._bus._pool.get()
        with write_tx(conn):
            for topic, seq in self._pending.items():
                conn.execute(
                    "UPDATE consumer_offsets SET seq = MAX(seq, ?) WHERE grp = ? AND topic = ?",
                    (seq, self.group, topic),
                )
        self._pending.clear()

    def wakeup(self) -> None:
        self._woken = True
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s,
        ):
            s.setblocking(False)
            s.sendto(_WAKEUP, b"\0" + self.waker_name.encode())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if os.getpid() == self._pid:
                self._commit()
                conn = self._bus._pool.get()
                with write_tx(conn):
                    conn.execute("DELETE FROM wakers WHERE name = ?", (self.waker_name,))
        finally:
            self._sock.close()


class SqliteEventBus(EventBus):
    """Topics in the SQLite database at ``path`` (created if missing). Thread- and process-safe."""

    unavailable_errors = UNAVAILABLE_ERRORS

    def unavailable_message(self, exc: BaseException) -> str:
        return unavailable_message(self.backend_kind, self.path, exc)

    def __init__(self, path: str, *, max_events: int = 10_000, retention_s: float = 3600.0) -> None:
        self._pool = ConnectionPool(path)
        self.path = self._pool.path
        self.url = f"sqlite:///{self.path}"
        self.max_events = max_events
        self.retention_s = retention_s
        self._send_sock: tuple[int, socket.socket] | None = None

    def publish(self, topic: str, key: str | None, value: bytes | str) -> None:
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        conn = self._pool.get()
        with write_tx(conn):
            cur = conn.execute(
                "INSERT INTO events (topic, key, value, ts_ms) VALUES (?, ?, ?, ?)",
                (topic, key, data, now_ms()),
            )
            seq = cur.lastrowid or 0
            if seq % TRIM_EVERY == 0:
                self._trim(conn, seq)
        self._wake(conn, topic)

    def publish_many(self, topic: str, messages: Sequence[tuple[str | None, bytes | str]]) -> None:
        """All of them in one transaction, and one wake-up."""
        if not messages:
            return
        stamp = now_ms()
        rows = [
            (topic, key, value.encode("utf-8") if isinstance(value, str) else bytes(value), stamp)
            for key, value in messages
        ]
        conn = self._pool.get()
        with write_tx(conn):
            conn.executemany("INSERT INTO events (topic, key, value, ts_ms) VALUES (?, ?, ?, ?)", rows)
            last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
            if last // TRIM_EVERY != (last - len(rows)) // TRIM_EVERY:  # passed a multiple, as publish() trims
                self._trim(conn, last)
        self._wake(conn, topic)

    def _trim(self, conn: sqlite3.Connection, seq: int) -> None:
        cutoff = now_ms() - int(self.retention_s * 1000)
        conn.execute("DELETE FROM events WHERE seq <= ? OR ts_ms < ?", (seq - self.max_events, cutoff))

    def _wake(self, conn: sqlite3.Connection, topic: str) -> None:
        names = [r[0] for r in conn.execute("SELECT name FROM wakers WHERE topic = ?", (topic,))]
        if not names:
            return
        sock = self._sender()
        dead = []
        for name in names:
            try:
                sock.sendto(_PUBLISHED, b"\0" + name.encode())
            except (ConnectionRefusedError, FileNotFoundError):
                dead.append(name)
            except OSError:
                pass  # queue full (the consumer has wake-ups pending anyway) or transient
        if dead:
            with write_tx(conn):
                conn.executemany("DELETE FROM wakers WHERE name = ?", [(n,) for n in dead])

    def _sender(self) -> socket.socket:
        pid = os.getpid()
        if self._send_sock is None or self._send_sock[0] != pid:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._send_sock = (pid, sock)
        return self._send_sock[1]

    def subscribe(self, group: str, topics: tuple[str, ...] | list[str], *, since_ms: int | None = None) -> Consumer:
        wanted = tuple(dict.fromkeys(getattr(t, "value", t) for t in topics))
        if not wanted:
            raise ValueError("subscribe() needs at least one topic")
        return SqliteConsumer(self, group, wanted, since_ms)

    def close(self) -> None:
        if self._send_sock is not None and self._send_sock[0] == os.getpid():
            self._send_sock[1].close()
        self._send_sock = None
        self._pool.close()
