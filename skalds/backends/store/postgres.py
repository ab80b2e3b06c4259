"""The PostgreSQL task store (psycopg 3, sync API).

Layout: one row per task in ``tasks`` (created in the connection's current schema when missing).
``doc`` (jsonb) holds the whole task by alias, so the row round-trips any task, attachments included,
and attachments stay queryable with ``doc->'attachments'``. Next to it live real columns for what
listings filter and sort on (``class_name``, ``lifecycle_status``, ``executor``, ``mode``,
``priority``, ``create_date_time``, ``version``, ``name``), indexed for the dispatcher's queries;
every write sets them from the same values as the document, so the two never disagree.

Concurrency: compare-and-set on ``version``. ``_cas`` is one statement,
``UPDATE tasks SET doc = doc || $fields, <columns> WHERE id = $id AND version = $expected``; the row
lock PostgreSQL takes for the UPDATE makes it atomic, so of two writers holding the same version
exactly one changes a row (rowcount 1) and the other re-reads and retries (see
:meth:`TaskStore.modify`). No explicit transactions, no ``SELECT ... FOR UPDATE``: connections run
in autocommit mode and never sit idle in a transaction.

Connections: one per (process, thread), opened lazily. A connection is never used across ``fork``:
a child that finds its parent's connection opens its own and leaves the inherited one untouched
(closing it would end the parent's session). A connection that broke (server restarted, network
cut) is dropped when the failing call raises :class:`psycopg.OperationalError`; the next call
reconnects. Values always travel as bound parameters; only fixed column names are spelled in SQL.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from skalds.backends.store.base import TaskQuery, TaskStore
from skalds.backends.store.document_query import SEARCH_FIELDS, Conditions, conditions, page, sort_keys
from skalds.errors import ConfigError, TaskExists
from skalds.utils.logging import mask_secrets

#: Document field (alias) -> column. Every write sets the columns of the fields it changes.
COLUMNS: dict[str, str] = {
    "id": "id",
    "className": "class_name",
    "lifecycleStatus": "lifecycle_status",
    "executor": "executor",
    "mode": "mode",
    "priority": "priority",
    "createDateTime": "create_date_time",
    "version": "version",
    "name": "name",
}
#: Text columns sort byte-wise (``COLLATE "C"``), as SQLite and MongoDB do, whatever the database locale.
_TEXT_COLUMNS = frozenset({"id", "class_name", "lifecycle_status", "executor", "mode", "name"})

#: Index name -> definition: the dispatcher's queue, an executor's live tasks, per-class listings,
#: the default listing order.
INDEXES: dict[str, str] = {
    "tasks_status_priority_created": "(lifecycle_status, priority DESC, create_date_time)",
    "tasks_executor_status": "(executor, lifecycle_status)",
    "tasks_class_name": "(class_name)",
    "tasks_create_date_time": "(create_date_time)",
}

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS tasks (
    id text PRIMARY KEY,
    doc jsonb NOT NULL,
    class_name text NOT NULL,
    lifecycle_status text NOT NULL,
    executor text,
    mode text,
    priority integer NOT NULL DEFAULT 0,
    create_date_time bigint NOT NULL,
    version bigint NOT NULL,
    name text
)"""
#: Serialises schema creation of concurrent first connections (two ``CREATE TABLE IF NOT EXISTS``
#: racing can fail with a unique violation in the catalog). Key: this constant + the schema.
_SCHEMA_LOCK_CLASS = 0x536B6C64  # "Skld"

_INSERT_COLUMNS = (*COLUMNS.values(), "doc")
_INSERT = f"INSERT INTO tasks ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_INSERT_COLUMNS))})"

#: Connections inherited through fork: referenced forever so the child never closes (nor uses) them.
_FORK_ORPHANS: list[psycopg.Connection[Any]] = []
#: Guards the bookkeeping of every store; replaced in a forked child, where it may have been copied
#: while held by a thread that does not exist there.
_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_after_fork)


class PostgresTaskStore(TaskStore):
    """Tasks in the PostgreSQL database at ``url`` (``postgresql://user:pw@host:port/db?options=...``).

    ``connect_timeout`` (seconds; libpq waits at least 2) bounds each connection attempt, so a
    server that is down is reported quickly. Thread-, process- and fork-safe.
    """

    #: Unreachable, restarted, shutting down, out of disk, statement timeout: all OperationalError.
    unavailable_errors = (psycopg.OperationalError, OSError)

    def unavailable_message(self, exc: BaseException) -> str:
        return self._mask(super().unavailable_message(exc))

    def __init__(self, url: str, *, connect_timeout: float = 2.0) -> None:
        self.url = url
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise ConfigError(f"PostgreSQL URL {self._mask(url)!r} cannot be parsed: {self._mask(str(exc))}") from None
        password = params.get("password")
        self._password = str(password) if password else None
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, math.ceil(connect_timeout)),
        }
        if "application_name" not in params:
            self._connect_kwargs["application_name"] = "skalds"
        self._local = threading.local()
        # (pid, owning thread, connection): dead threads' connections are closed by us (from the
        # thread that notices), never by the garbage collector in a forked child.
        self._opened: list[tuple[int, weakref.ref[threading.Thread], psycopg.Connection[Any]]] = []

    def __repr__(self) -> str:
        return f"PostgresTaskStore({self._mask(self.url)!r})"

    # ---- connections -------------------------------------------------------------------
    def _mask(self, text: str) -> str:
        text = mask_secrets(text)
        if getattr(self, "_password", None):
            text = text.replace(self._password or "", "***")
        return text

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.url, **self._connect_kwargs)
        except psycopg.Error as exc:
            masked = self._mask(str(exc))
            if masked == str(exc):
                raise
            raise type(exc)(masked) from None
        try:
            _ensure_schema(conn)
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                conn.close()
            raise
        return conn

    def _conn(self) -> psycopg.Connection[Any]:
        """This thread's connection in this process, (re)opened when missing, closed or inherited."""
        pid = os.getpid()
        entry: tuple[int, psycopg.Connection[Any]] | None = getattr(self._local, "entry", None)
        if entry is not None and entry[0] == pid and not entry[1].closed:
            return entry[1]
        conn = self._connect()
        with _lock:
            stale = self._prune(pid)
            self._opened.append((pid, weakref.ref(threading.current_thread()), conn))
        for old in stale:
            with contextlib.suppress(psycopg.Error):
                old.close()
        self._local.entry = (pid, conn)
        return conn

    def _prune(self, pid: int) -> list[psycopg.Connection[Any]]:
        """Forget closed connections, those of dead threads (returned, to be closed) and of other processes."""
        keep, stale = [], []
        for owner_pid, thread_ref, conn in self._opened:
            thread = thread_ref()
            if owner_pid != pid:
                _FORK_ORPHANS.append(conn)
            elif conn.closed or thread is None or not thread.is_alive():
                stale.append(conn)
            else:
                keep.append((owner_pid, thread_ref, conn))
        self._opened = keep
        return stale

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor on this thread's connection; a connection that broke meanwhile is dropped.

        The error itself propagates (psycopg.OperationalError for a server that went away): the
        caller treats it as "backend down, retry later", and its next call reconnects.
        """
        conn = self._conn()
        try:
            with conn.cursor() as cur:
                yield cur
        except psycopg.Error:
            if conn.closed:
                self._local.entry = None
                with contextlib.suppress(psycopg.Error):
                    conn.close()
            raise

    # ---- driver primitives -------------------------------------------------------------
    def _insert(self, doc: dict[str, Any]) -> None:
        values = [doc.get(alias) for alias in COLUMNS]
        try:
            with self._cursor() as cur:
                cur.execute(_INSERT, [*values, Jsonb(doc)])
        except psycopg.errors.UniqueViolation as exc:
            raise TaskExists(f"a task with id {doc.get('id')!r} already exists") from exc

    def _insert_many(self, docs: list[dict[str, Any]]) -> None:
        ids = [str(d.get("id")) for d in docs]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise TaskExists(f"tasks with these ids already exist: {', '.join(map(repr, dupes[:10]))}")
        conn = self._conn()
        try:
            with conn.transaction(), conn.cursor() as cur:  # all or none
                cur.executemany(_INSERT, [[*(d.get(alias) for alias in COLUMNS), Jsonb(d)] for d in docs])
        except psycopg.errors.UniqueViolation as exc:
            with self._cursor() as cur:
                rows = cur.execute("SELECT id FROM tasks WHERE id = ANY(%s::text[])", [ids]).fetchall()
            taken = sorted(str(r[0]) for r in rows)
            raise TaskExists(f"tasks with these ids already exist: {', '.join(map(repr, taken[:10]))}") from exc

    def _get(self, task_id: str) -> dict[str, Any] | None:
        with self._cursor() as cur:
            row = cur.execute("SELECT doc FROM tasks WHERE id = %s", (task_id,)).fetchone()
        return _as_doc(row[0]) if row is not None else None

    def _query(self, query: TaskQuery) -> tuple[list[dict[str, Any]], int]:
        order = ", ".join(_order_by(alias, direction) for alias, direction in sort_keys(query))
        where, args = _where(conditions(query))
        offset, limit = page(query)
        with self._cursor() as cur:
            # The window count sees every matching row before LIMIT/OFFSET apply: one round trip.
            rows = cur.execute(
                f"SELECT doc, count(*) OVER () FROM tasks {where} ORDER BY {order} LIMIT %s OFFSET %s",
                [*args, limit, offset],
            ).fetchall()
            if rows:
                total = int(rows[0][1])
            elif offset > 0 or limit == 0:  # an empty page says nothing about the total
                count = cur.execute(f"SELECT count(*) FROM tasks {where}", args).fetchone()
                total = int(count[0]) if count is not None else 0
            else:
                total = 0
        return [_as_doc(r[0]) for r in rows], total

    def _counts(self) -> dict[tuple[str, str], int]:
        with self._cursor() as cur:
            rows = cur.execute("SELECT lifecycle_status, class_name, count(*) FROM tasks GROUP BY 1, 2").fetchall()
        return {(str(status), str(cls)): int(n) for status, cls, n in rows}

    def _versions(self, query: TaskQuery) -> dict[str, int]:
        where, args = _where(conditions(query))
        with self._cursor() as cur:
            rows = cur.execute(f"SELECT id, version FROM tasks {where}", args).fetchall()
        return {str(i): int(v) for i, v in rows}

    def _cas(self, task_id: str, expected_version: int, fields: dict[str, Any]) -> bool:
        changed = [(COLUMNS[alias], value) for alias, value in fields.items() if alias in COLUMNS and alias != "id"]
        assignments = ", ".join(["doc = doc || %s", *(f"{column} = %s" for column, _ in changed)])
        with self._cursor() as cur:
            cur.execute(
                f"UPDATE tasks SET {assignments} WHERE id = %s AND version = %s",
                [Jsonb(fields), *(value for _, value in changed), task_id, expected_version],
            )
            return cur.rowcount == 1

    def _cas_many(
        self, writes: Sequence[tuple[str, int, dict[str, Any]]], *, stop_at_failure: bool = False
    ) -> list[bool]:
        """Every compare-and-set in one transaction (one commit); each written or not on its own."""
        conn = self._conn()
        written = []
        with conn.transaction(), conn.cursor() as cur:
            for task_id, expected_version, fields in writes:
                changed = [(COLUMNS[a], v) for a, v in fields.items() if a in COLUMNS and a != "id"]
                assignments = ", ".join(["doc = doc || %s", *(f"{column} = %s" for column, _ in changed)])
                cur.execute(
                    f"UPDATE tasks SET {assignments} WHERE id = %s AND version = %s",
                    [Jsonb(fields), *(value for _, value in changed), task_id, expected_version],
                )
                written.append(cur.rowcount == 1)
                if stop_at_failure and not written[-1]:
                    break
        return written

    def _delete(self, task_id: str) -> bool:
        with self._cursor() as cur:
            cur.execute("DELETE FROM tasks WHERE id = %s", (task_id,))
            return cur.rowcount > 0

    def close(self) -> None:
        """Close every connection this process opened. No other thread may be using the store."""
        pid = os.getpid()
        with _lock:
            opened, self._opened = self._opened, []
        for owner_pid, _thread, conn in opened:
            if owner_pid != pid:
                _FORK_ORPHANS.append(conn)
            else:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
        self._local = threading.local()


def _ensure_schema(conn: psycopg.Connection[Any]) -> None:
    """Create ``tasks`` and its indexes in the current schema unless they are all there."""
    names = list(INDEXES)
    row = conn.execute(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'tasks'"
        " AND indexname = ANY(%s::text[])",
        [names],
    ).fetchone()
    if row is not None and row[0] == len(names):
        return  # the common case: no DDL, so no lock that would wait for running writers
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", [_SCHEMA_LOCK_CLASS])
        conn.execute(_CREATE_TABLE)
        for name, definition in INDEXES.items():
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON tasks {definition}")


def _column(alias: str) -> str:
    return COLUMNS[alias]


def _order_by(alias: str, direction: int) -> str:
    if alias not in COLUMNS:  # a document field without a column of its own (updateDateTime)
        return f"(doc->>'{alias}')::bigint {'ASC' if direction > 0 else 'DESC'}"
    column = _column(alias)
    collate = ' COLLATE "C"' if column in _TEXT_COLUMNS else ""
    return f"{column}{collate} {'ASC' if direction > 0 else 'DESC'}"


def _where(cond: Conditions) -> tuple[str, list[Any]]:
    """``WHERE ...`` (or "") and its parameters."""
    parts: list[str] = []
    args: list[Any] = []
    for alias, values in cond.one_of.items():
        # Both list filters (status, id) are text columns; ANY of an empty array matches nothing.
        parts.append(f"{_column(alias)} = ANY(%s::text[])")
        args.append(list(values))
    for alias, value in cond.equal.items():
        parts.append(f"{_column(alias)} = %s")
        args.append(value)
    if cond.substring is not None:
        # strpos, not LIKE: the text is taken literally (no wildcards to escape), case-sensitive.
        parts.append(f"({' OR '.join(f'strpos({_column(a)}, %s) > 0' for a in SEARCH_FIELDS)})")
        args.extend([cond.substring] * len(SEARCH_FIELDS))
    return (f"WHERE {' AND '.join(parts)}" if parts else ""), args


def _as_doc(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"stored task document is a {type(value).__name__}, not an object")
    return value
