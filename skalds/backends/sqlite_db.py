"""Shared plumbing of the embedded backend: one SQLite file, many processes.

The task store, event bus and state cache all live in one database file in WAL mode, so readers
never block the writer and many processes on one machine can share it. Every write runs in an
explicit ``BEGIN IMMEDIATE`` transaction (:func:`write_tx`): the write lock is taken up front, so
a transaction never has to upgrade a read snapshot (which would fail with ``SQLITE_BUSY`` instead
of waiting), and a lock held too long by another process is retried before giving up.

Connections are never shared between threads nor carried across ``fork``. :class:`ConnectionPool`
opens one connection per thread on first use and opens a fresh one when ``os.getpid()`` changed;
a connection inherited from the parent is parked forever in :data:`_FORK_ORPHANS` (never used,
never closed) because SQLite forbids touching a connection in a forked child. Nothing is opened at
import time.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TypeVar

from skalds.errors import BackendUnavailable, ConfigError

T = TypeVar("T")

SCHEMA_VERSION = 1

_SCHEMA: tuple[str, ...] = (
    # ---- task store: the whole document as JSON, plus the columns queries filter/sort on ----
    """CREATE TABLE IF NOT EXISTS tasks (
        id TEXT PRIMARY KEY,
        className TEXT NOT NULL,
        lifecycleStatus TEXT NOT NULL,
        executor TEXT,
        mode TEXT,
        priority INTEGER NOT NULL DEFAULT 0,
        createDateTime INTEGER NOT NULL,
        version INTEGER NOT NULL,
        name TEXT,
        doc TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS tasks_executor_status ON tasks (executor, lifecycleStatus)",
    "CREATE INDEX IF NOT EXISTS tasks_status_priority ON tasks (lifecycleStatus, priority, createDateTime)",
    "CREATE INDEX IF NOT EXISTS tasks_class ON tasks (className)",
    "CREATE INDEX IF NOT EXISTS tasks_created ON tasks (createDateTime)",
    # ---- event bus ----
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        key TEXT,
        value BLOB NOT NULL,
        ts_ms INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_topic_seq ON events (topic, seq)",
    "CREATE INDEX IF NOT EXISTS events_ts ON events (ts_ms)",
    """CREATE TABLE IF NOT EXISTS consumer_offsets (
        grp TEXT NOT NULL,
        topic TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (grp, topic)
    ) WITHOUT ROWID""",
    # One row per (consumer socket, topic): publishers wake exactly the consumers of a topic.
    """CREATE TABLE IF NOT EXISTS wakers (
        topic TEXT NOT NULL,
        name TEXT NOT NULL,
        pid INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (topic, name)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS wakers_name ON wakers (name)",
    # ---- state cache: kv has one row per key of any kind and carries the key's TTL ----
    """CREATE TABLE IF NOT EXISTS kv (
        key TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        value TEXT,
        expires_at REAL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS kv_hash (
        key TEXT NOT NULL,
        field TEXT NOT NULL,
        value TEXT NOT NULL,
        expires_at REAL,
        PRIMARY KEY (key, field)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS kv_hash_expires ON kv_hash (expires_at) WHERE expires_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS kv_list (
        key TEXT NOT NULL,
        idx INTEGER NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (key, idx)
    ) WITHOUT ROWID""",
)

#: How long one attempt waits for the write lock (SQLite's own busy handler), in milliseconds.
BUSY_TIMEOUT_MS = 10_000
#: Attempts of :func:`write_tx` before it gives up with BackendUnavailable.
LOCK_ATTEMPTS = 5


def sqlite_path_from_url(url: str) -> str:
    """The file path of a ``sqlite:///PATH`` URL.

    ``PATH`` is used as written: ``sqlite:////var/lib/skalds.db`` (four slashes) is absolute,
    ``sqlite:///./data/skalds.db`` and ``sqlite:///skalds.db`` are relative to the working
    directory, ``~`` is expanded. In-memory databases cannot be shared by processes and are refused.
    """
    prefix = "sqlite:///"
    if not isinstance(url, str) or not url.startswith(prefix):
        raise ConfigError(
            f"embedded backend URL must look like 'sqlite:////abs/path/skalds.db' or "
            f"'sqlite:///./rel/path.db' (got {url!r})"
        )
    path = url[len(prefix) :]
    if not path or path.endswith("/") or "?" in path or "#" in path or "\0" in path:
        raise ConfigError(f"embedded backend URL {url!r} must end with a database file path (no query)")
    if path == ":memory:" or path.startswith("file:"):
        raise ConfigError(
            f"embedded backend URL {url!r}: an in-memory database cannot be shared between processes; give a file path"
        )
    return os.path.expanduser(path)


def open_db(path: str) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` with WAL and the full schema."""
    path = os.path.abspath(os.path.expanduser(path))
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
        conn.execute("PRAGMA synchronous=NORMAL")
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            with write_tx(conn):
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _retry_locked(op: Callable[[], T]) -> T:
    for attempt in range(LOCK_ATTEMPTS):
        try:
            return op()
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc) or attempt == LOCK_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def write_tx(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error), retrying a locked database.

    Raises :class:`BackendUnavailable` when the write lock cannot be had after several attempts
    (another process held it for far too long).
    """
    for attempt in range(LOCK_ATTEMPTS):
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc):
                raise
            if attempt == LOCK_ATTEMPTS - 1:
                raise BackendUnavailable(f"SQLite database is locked by another process for too long ({exc})") from exc
            time.sleep(0.05 * (attempt + 1))
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    try:
        _retry_locked(lambda: conn.execute("COMMIT"))
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def read_tx(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A deferred transaction: several SELECTs see one consistent snapshot."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


#: Connections inherited through fork: kept referenced so they are never closed (nor used) in the
#: child, as SQLite requires.
_FORK_ORPHANS: list[sqlite3.Connection] = []
#: Guards the bookkeeping lists of every pool; replaced in a forked child, where it may have been
#: copied while held by a thread that does not exist there.
_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_after_fork)


class ConnectionPool:
    """One lazily opened connection per (process, thread) to one database file."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(os.path.expanduser(path))
        self._local = threading.local()
        # (pid, owning thread, connection): strong references, so dead threads' connections are
        # closed by us (from the thread that notices), never by the garbage collector in a child.
        self._opened: list[tuple[int, weakref.ref[threading.Thread], sqlite3.Connection]] = []

    def get(self) -> sqlite3.Connection:
        """This thread's connection in this process, opened on first use."""
        pid = os.getpid()
        entry: tuple[int, sqlite3.Connection] | None = getattr(self._local, "entry", None)
        if entry is not None and entry[0] == pid:
            return entry[1]
        conn = open_db(self.path)
        with _lock:
            stale = self._prune(pid)
            self._opened.append((pid, weakref.ref(threading.current_thread()), conn))
        for old in stale:
            with contextlib.suppress(sqlite3.Error):
                old.close()
        self._local.entry = (pid, conn)
        return conn

    def _prune(self, pid: int) -> list[sqlite3.Connection]:
        """Forget connections of dead threads (returned, to be closed) and of other processes."""
        keep, stale = [], []
        for owner_pid, thread_ref, conn in self._opened:
            thread = thread_ref()
            if owner_pid != pid:
                _FORK_ORPHANS.append(conn)
            elif thread is None or not thread.is_alive():
                stale.append(conn)
            else:
                keep.append((owner_pid, thread_ref, conn))
        self._opened = keep
        return stale

    def close(self) -> None:
        """Close every connection this process opened. No other thread may be using the pool."""
        pid = os.getpid()
        with _lock:
            opened, self._opened = self._opened, []
        for owner_pid, _thread, conn in opened:
            if owner_pid != pid:
                _FORK_ORPHANS.append(conn)
            else:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
        self._local = threading.local()
