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

A full disk: SQLite refuses the write (``SQLITE_FULL``) and rolls the transaction back, so nothing
stored is lost; the drivers report it as :class:`BackendUnavailable` naming the file
(:func:`unavailable_message`). The write-ahead log must not keep the space once some is freed, so
it is checkpointed every :data:`WAL_AUTOCHECKPOINT_PAGES` pages (not SQLite's 4 MiB), kept to
:data:`JOURNAL_SIZE_LIMIT` once emptied, and checkpointed and truncated right after a disk-full
error and every :data:`CHECKPOINT_INTERVAL` seconds by each process that writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TypeVar

from skalds.backends.guard import describe_unavailable
from skalds.errors import BackendUnavailable, ConfigError

T = TypeVar("T")

SCHEMA_VERSION = 2

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
    # The dispatcher's queue in its exact order, so "the first N waiting" reads N entries however
    # long the queue is (the index it replaces could not give priority DESC, age ASC).
    "DROP INDEX IF EXISTS tasks_status_priority",
    "CREATE INDEX IF NOT EXISTS tasks_queue ON tasks (lifecycleStatus, mode, priority DESC, createDateTime, id)",
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
#: Pages in the write-ahead log after which a commit checkpoints it (SQLite's default is 1,000:
#: 4 MiB that a nearly full disk may not have).
WAL_AUTOCHECKPOINT_PAGES = 200
#: Bytes the write-ahead log keeps after a checkpoint emptied it (SQLite truncates it to this).
JOURNAL_SIZE_LIMIT = 1024 * 1024
#: Seconds between two truncating checkpoints of one database by one process (after a commit).
CHECKPOINT_INTERVAL = 10.0
#: How long a checkpoint waits for other connections' read snapshots, in milliseconds: it is
#: housekeeping and must never hold a write up for long.
CHECKPOINT_BUSY_MS = 100
#: Free bytes below which the disk of a database counts as full (health checks).
MIN_FREE_BYTES = 256 * 1024
#: The driver errors that mean "cannot serve right now" (locked, disk full, I/O error, no file).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.OperationalError, OSError)
_SQLITE_FULL = 13


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
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False, factory=_Connection
    )
    conn.db_path = path
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
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


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the database's disk (or the database's size limit) is full."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "full" in str(exc).lower()
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def unavailable_message(kind: str, path: str, exc: BaseException) -> str:
    """The ``BackendUnavailable`` message of an embedded backend: a full disk is named as such."""
    if is_disk_full(exc):
        return f"the {kind}'s disk is full ({path}); free some space there and writes resume"
    return describe_unavailable(kind, exc).replace("right now (", f"right now ({path}: ", 1)


def check_free_space(kind: str, path: str) -> None:
    """Raise :class:`BackendUnavailable` when the disk of ``path`` has almost no free space left
    (reads still work there, so a read probe alone would call it healthy)."""
    try:
        stat = os.statvfs(os.path.dirname(path) or ".")
    except OSError:
        return  # nothing to measure (e.g. the directory is gone): the read probe reports that
    free = stat.f_bavail * stat.f_frsize
    if free < MIN_FREE_BYTES:
        raise BackendUnavailable(
            f"the {kind}'s disk is full ({path}: {free // 1024} KiB free); free some space there and writes resume",
            backend=kind,
        )


def checkpoint(conn: sqlite3.Connection) -> bool:
    """Copy the write-ahead log into the database and truncate it, waiting only briefly for other
    connections; True if the log is now empty. Never raises (it is housekeeping)."""
    if conn.in_transaction:
        return False
    try:
        conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
        try:
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except sqlite3.Error:
        return False
    return not busy


#: Monotonic time of the next periodic checkpoint, per database file (in this process).
_next_checkpoint: dict[str, float] = {}


def _checkpoint_now_and_then(conn: sqlite3.Connection) -> None:
    """After a commit: a truncating checkpoint every :data:`CHECKPOINT_INTERVAL` seconds, so the
    log never grows into space freed after a full disk (SQLite's own automatic checkpoints start
    only at 1,000 pages and never shrink the file)."""
    now = time.monotonic()
    name = getattr(conn, "db_path", "")
    if _next_checkpoint.get(name, 0.0) > now:
        return
    _next_checkpoint[name] = now + CHECKPOINT_INTERVAL
    checkpoint(conn)


class _Connection(sqlite3.Connection):
    """A connection that knows its file (for per-file housekeeping)."""

    db_path = ""


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
        _retry_locked(lambda: conn.execute("COMMIT"))
    except BaseException as exc:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the error that matters is exc
                conn.execute("ROLLBACK")
        # A full disk: give the log's space back (it may be what filled the disk); if that needs
        # space too, the first commit that succeeds (once space is freed) does it.
        if is_disk_full(exc) and not checkpoint(conn):
            _next_checkpoint[getattr(conn, "db_path", "")] = 0.0
        raise
    _checkpoint_now_and_then(conn)


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
