"""The embedded task store: one row per task in the shared SQLite file.

Each row holds the whole task document (by alias) as JSON in ``doc``, plus copies of the fields
that listings filter and sort on (``className``, ``lifecycleStatus``, ``executor``, ``mode``,
``priority``, ``createDateTime``, ``version``, ``name``). Every write rewrites document and columns
together, so they never disagree. Compare-and-set is a read and an ``UPDATE ... WHERE id=? AND
version=?`` inside one ``BEGIN IMMEDIATE`` transaction, which makes it atomic across processes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from skalds.backends.sqlite_db import (
    UNAVAILABLE_ERRORS,
    ConnectionPool,
    check_free_space,
    read_tx,
    unavailable_message,
    write_tx,
)
from skalds.backends.store.base import TaskQuery, TaskStore
from skalds.errors import TaskExists

_COLUMNS = ("id", "className", "lifecycleStatus", "executor", "mode", "priority", "createDateTime", "version")
_ORDERS = {
    "createDateTime": "createDateTime ASC, id ASC",
    "-createDateTime": "createDateTime DESC, id DESC",
    "-priority": "priority DESC, createDateTime ASC, id ASC",
    "priority": "priority ASC, createDateTime ASC, id ASC",
    # Not a column: these two read every matching document (fine for listings, not for queues).
    "updateDateTime": "json_extract(doc, '$.updateDateTime') ASC, id ASC",
    "-updateDateTime": "json_extract(doc, '$.updateDateTime') DESC, id DESC",
    "lifecycleStatus": "lifecycleStatus ASC, createDateTime ASC, id ASC",
    "-lifecycleStatus": "lifecycleStatus DESC, createDateTime DESC, id DESC",
}


def _taken_message(ids: list[str]) -> str:
    shown = ", ".join(repr(i) for i in sorted(set(ids))[:10])
    return f"tasks with these ids already exist: {shown}" + (" …" if len(set(ids)) > 10 else "")


def _row(doc: dict[str, Any]) -> tuple[Any, ...]:
    """Indexed column values and the JSON document, in the order of ``_COLUMNS``, name, doc."""
    return (
        *(doc.get(c) for c in _COLUMNS),
        doc.get("name"),
        json.dumps(doc, separators=(",", ":"), ensure_ascii=False),
    )


class SqliteTaskStore(TaskStore):
    """Tasks in the SQLite database at ``path`` (created if missing). Thread- and process-safe."""

    unavailable_errors = UNAVAILABLE_ERRORS

    def unavailable_message(self, exc: BaseException) -> str:
        return unavailable_message(self.backend_kind, self.path, exc)

    def __init__(self, path: str) -> None:
        self._pool = ConnectionPool(path)
        self.path = self._pool.path
        self.url = f"sqlite:///{self.path}"

    def _conn(self) -> sqlite3.Connection:
        return self._pool.get()

    def health(self) -> None:
        super().health()
        check_free_space(self.backend_kind, self.path)

    # ---- driver primitives -------------------------------------------------------------
    def _insert(self, doc: dict[str, Any]) -> None:
        conn = self._conn()
        placeholders = ", ".join("?" * (len(_COLUMNS) + 2))
        try:
            with write_tx(conn):
                conn.execute(
                    f"INSERT INTO tasks ({', '.join(_COLUMNS)}, name, doc) VALUES ({placeholders})",
                    _row(doc),
                )
        except sqlite3.IntegrityError as exc:
            raise TaskExists(f"a task with id {doc.get('id')!r} already exists") from exc

    def _insert_many(self, docs: list[dict[str, Any]]) -> None:
        conn = self._conn()
        placeholders = ", ".join("?" * (len(_COLUMNS) + 2))
        ids = [str(d.get("id")) for d in docs]
        with write_tx(conn):  # one transaction: all or none
            taken = [
                str(row[0])
                for i in range(0, len(ids), 500)
                for row in conn.execute(
                    f"SELECT id FROM tasks WHERE {_in('id', len(ids[i : i + 500]))}", ids[i : i + 500]
                ).fetchall()
            ]
            if taken or len(set(ids)) != len(ids):
                raise TaskExists(_taken_message(taken or [i for i in ids if ids.count(i) > 1]))
            conn.executemany(
                f"INSERT INTO tasks ({', '.join(_COLUMNS)}, name, doc) VALUES ({placeholders})", map(_row, docs)
            )

    def _get(self, task_id: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT doc FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return _load(row[0]) if row is not None else None

    def _where(self, query: TaskQuery) -> tuple[str, list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if query.statuses is not None:
            where.append(_in("lifecycleStatus", len(query.statuses)))
            args.extend(getattr(s, "value", s) for s in query.statuses)
        if query.ids is not None:
            where.append(_in("id", len(query.ids)))
            args.extend(query.ids)
        for column, value in (
            ("className", query.class_name),
            ("executor", query.executor),
            ("mode", getattr(query.mode, "value", query.mode)),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.search:
            where.append("(instr(id, ?) > 0 OR instr(COALESCE(name, ''), ?) > 0)")
            args.extend((query.search, query.search))
        return (f"WHERE {' AND '.join(where)}" if where else ""), args

    def _query(self, query: TaskQuery) -> tuple[list[dict[str, Any]], int]:
        order = _ORDERS.get(query.order)
        if order is None:
            raise ValueError(f"unknown task order {query.order!r} (use one of {', '.join(_ORDERS)})")
        clause, args = self._where(query)
        limit = -1 if query.limit is None else max(query.limit, 0)
        conn = self._conn()
        with read_tx(conn):
            total = conn.execute(f"SELECT COUNT(*) FROM tasks {clause}", args).fetchone()[0]
            # The page is chosen on the sort columns alone, then only its documents are read:
            # sorting whole documents would cost as much as the matching rows (a long queue).
            rows = conn.execute(
                f"SELECT doc FROM tasks WHERE rowid IN "
                f"(SELECT rowid FROM tasks {clause} ORDER BY {order} LIMIT ? OFFSET ?) ORDER BY {order}",
                [*args, limit, max(query.offset, 0)],
            ).fetchall()
        return [_load(r[0]) for r in rows], int(total)

    def _counts(self) -> dict[tuple[str, str], int]:
        rows = self._conn().execute("SELECT lifecycleStatus, className, COUNT(*) FROM tasks GROUP BY 1, 2").fetchall()
        return {(str(status), str(cls)): int(n) for status, cls, n in rows}

    def _versions(self, query: TaskQuery) -> dict[str, int]:
        clause, args = self._where(query)
        rows = self._conn().execute(f"SELECT id, version FROM tasks {clause}", args).fetchall()
        return {str(i): int(v) for i, v in rows}

    def _cas(self, task_id: str, expected_version: int, fields: dict[str, Any]) -> bool:
        return self._cas_many([(task_id, expected_version, fields)])[0]

    def _cas_many(
        self, writes: Sequence[tuple[str, int, dict[str, Any]]], *, stop_at_failure: bool = False
    ) -> list[bool]:
        """Every compare-and-set in one write transaction."""
        conn = self._conn()
        assignments = ", ".join(f"{c} = ?" for c in (*_COLUMNS, "name", "doc"))
        written = []
        with write_tx(conn):
            for task_id, expected_version, fields in writes:
                row = conn.execute(
                    "SELECT doc FROM tasks WHERE id = ? AND version = ?", (task_id, expected_version)
                ).fetchone()
                if row is None:
                    written.append(False)
                    if stop_at_failure:
                        break
                    continue
                doc = {**_load(row[0]), **fields}
                cur = conn.execute(
                    f"UPDATE tasks SET {assignments} WHERE id = ? AND version = ?",
                    (*_row({**doc, "id": task_id}), task_id, expected_version),
                )
                written.append(cur.rowcount == 1)
                if stop_at_failure and not written[-1]:
                    break
        return written

    def _delete(self, task_id: str) -> bool:
        conn = self._conn()
        with write_tx(conn):
            return conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,)).rowcount > 0

    def close(self) -> None:
        self._pool.close()


def _in(column: str, count: int) -> str:
    if count == 0:
        return "0"  # an empty filter matches nothing
    return f"{column} IN ({', '.join('?' * count)})"


def _load(text: str) -> dict[str, Any]:
    doc = json.loads(text)
    assert isinstance(doc, dict)
    return doc
