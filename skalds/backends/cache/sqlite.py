"""The embedded state cache: Redis-shaped strings, hashes and lists in the shared SQLite file.

``kv`` has one row per key of any kind (``string``, ``hash`` or ``list``) with the key's expiry;
strings keep their value there, hash fields live in ``kv_hash`` (each with its own optional
expiry, like Redis 7.4 ``HEXPIRE``) and list items in ``kv_list`` (ordered by ``idx``). Expiries
are absolute wall-clock seconds, so every process agrees on them. Readers treat expired rows as
missing; writers purge an expired key before touching it, and every :data:`PURGE_EVERY` writes a
sweep deletes all expired rows. As in Redis, writing a key with another kind replaces it, a hash
whose fields all expired is gone, and an emptied list is deleted.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Mapping, Sequence

from skalds.backends.cache.base import StateCache
from skalds.backends.sqlite_db import (
    UNAVAILABLE_ERRORS,
    ConnectionPool,
    check_free_space,
    read_tx,
    unavailable_message,
    write_tx,
)

#: Purge all expired rows after this many writes (per cache object).
PURGE_EVERY = 200

_LIVE = "(expires_at IS NULL OR expires_at > ?)"


def _chunks(keys: list[str], size: int = 500) -> list[list[str]]:
    """``keys`` in slices small enough for SQLite's bound-parameter limit."""
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def _deadline(now: float, ttl: float | None) -> float | None:
    return None if ttl is None else now + ttl


class SqliteStateCache(StateCache):
    """A state cache in the SQLite database at ``path`` (created if missing). Thread- and
    process-safe."""

    unavailable_errors = UNAVAILABLE_ERRORS

    def unavailable_message(self, exc: BaseException) -> str:
        return unavailable_message(self.backend_kind, self.path, exc)

    def __init__(self, path: str) -> None:
        self._pool = ConnectionPool(path)
        self.path = self._pool.path
        self.url = f"sqlite:///{self.path}"
        self._writes = 0

    # ---- helpers -----------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        return self._pool.get()

    def health(self) -> None:
        super().health()
        check_free_space(self.backend_kind, self.path)

    def _kind(self, conn: sqlite3.Connection, key: str, now: float) -> str | None:
        row = conn.execute(f"SELECT kind FROM kv WHERE key = ? AND {_LIVE}", (key, now)).fetchone()
        return str(row[0]) if row else None

    def _drop(self, conn: sqlite3.Connection, key: str) -> None:
        conn.execute("DELETE FROM kv WHERE key = ?", (key,))
        conn.execute("DELETE FROM kv_hash WHERE key = ?", (key,))
        conn.execute("DELETE FROM kv_list WHERE key = ?", (key,))

    def _prepare(self, conn: sqlite3.Connection, key: str, kind: str, now: float) -> None:
        """Make ``key`` a live key of ``kind``: drop it if expired or of another kind, then create it."""
        current = self._kind(conn, key, now)
        if current != kind:
            self._drop(conn, key)
            conn.execute("INSERT INTO kv (key, kind) VALUES (?, ?)", (key, kind))

    def _wrote(self, conn: sqlite3.Connection) -> None:
        self._writes += 1
        if self._writes % PURGE_EVERY == 0:
            self.purge_expired(conn)

    def purge_expired(self, conn: sqlite3.Connection | None = None) -> None:
        """Delete every expired key and hash field now (otherwise done every few writes)."""
        conn = conn or self._conn()
        now = (time.time(),)
        sweep = (
            ("DELETE FROM kv_hash WHERE key IN (SELECT key FROM kv WHERE expires_at <= ?)", now),
            ("DELETE FROM kv_list WHERE key IN (SELECT key FROM kv WHERE expires_at <= ?)", now),
            ("DELETE FROM kv WHERE expires_at <= ?", now),
            ("DELETE FROM kv_hash WHERE expires_at <= ?", now),
            (
                "DELETE FROM kv WHERE kind = 'hash' AND NOT EXISTS (SELECT 1 FROM kv_hash h WHERE h.key = kv.key)",
                (),
            ),
        )
        with contextlib.nullcontext(conn) if conn.in_transaction else write_tx(conn):
            for statement, args in sweep:
                conn.execute(statement, args)

    # ---- strings -----------------------------------------------------------------------
    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        conn = self._conn()
        with write_tx(conn):
            self._set(conn, key, value, ttl, time.time())
            self._wrote(conn)

    def _set(self, conn: sqlite3.Connection, key: str, value: str, ttl: float | None, now: float) -> None:
        conn.execute("DELETE FROM kv_hash WHERE key = ?", (key,))
        conn.execute("DELETE FROM kv_list WHERE key = ?", (key,))
        conn.execute(
            "INSERT OR REPLACE INTO kv (key, kind, value, expires_at) VALUES (?, 'string', ?, ?)",
            (key, value, _deadline(now, ttl)),
        )

    def get(self, key: str) -> str | None:
        row = (
            self._conn()
            .execute(f"SELECT value FROM kv WHERE key = ? AND kind = 'string' AND {_LIVE}", (key, time.time()))
            .fetchone()
        )
        return str(row[0]) if row else None

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        found = dict(
            self._rows_for(keys, "SELECT key, value FROM kv WHERE key IN ({marks}) AND kind = 'string' AND " + _LIVE)
        )
        return [found.get(key) for key in keys]

    def lrange_many(self, keys: Sequence[str]) -> list[list[str]]:
        lists: dict[str, list[str]] = {}
        rows = self._rows_for(
            keys,
            """SELECT l.key, l.value FROM kv_list l JOIN kv ON kv.key = l.key
                WHERE l.key IN ({marks}) AND kv.kind = 'list' AND (kv.expires_at IS NULL OR kv.expires_at > ?)
                ORDER BY l.key, l.idx""",
        )
        for key, value in rows:
            lists.setdefault(key, []).append(value)
        return [list(lists.get(key, ())) for key in keys]

    def _rows_for(self, keys: Sequence[str], sql: str) -> list[tuple[str, str]]:
        """``(key, value)`` rows of ``sql`` — whose ``{marks}`` is a list of keys and whose last
        parameter is now — run over the distinct ``keys`` in slices, in one read transaction."""
        conn = self._conn()
        now = time.time()
        rows: list[tuple[str, str]] = []
        with read_tx(conn):
            for chunk in _chunks(list(dict.fromkeys(keys))):
                query = sql.format(marks=", ".join("?" * len(chunk)))
                rows.extend((str(k), str(v)) for k, v in conn.execute(query, (*chunk, now)).fetchall())
        return rows

    def pipeline_set(self, items: Mapping[str, tuple[str, float | None]]) -> None:
        if not items:
            return
        conn = self._conn()
        now = time.time()
        with write_tx(conn):
            for key, (value, ttl) in items.items():
                self._set(conn, key, value, ttl, now)
            self._wrote(conn)

    def set_if_absent(self, key: str, value: str, ttl: float) -> bool:
        conn = self._conn()
        now = time.time()
        with write_tx(conn):  # BEGIN IMMEDIATE: the check and the write are one step
            if self._kind(conn, key, now) is not None:
                return False
            self._drop(conn, key)  # an expired row of any kind
            if ttl > 0:
                self._set(conn, key, value, ttl, now)
            self._wrote(conn)
            return ttl > 0

    def compare_and_expire(self, key: str, value: str, ttl: float) -> bool:
        conn = self._conn()
        now = time.time()
        with write_tx(conn):
            row = conn.execute(
                f"SELECT value FROM kv WHERE key = ? AND kind = 'string' AND {_LIVE}", (key, now)
            ).fetchone()
            if row is None or str(row[0]) != value:
                return False
            if ttl > 0:
                conn.execute("UPDATE kv SET expires_at = ? WHERE key = ?", (now + ttl, key))
            else:
                self._drop(conn, key)
            return True

    # ---- any kind ----------------------------------------------------------------------
    def delete(self, *keys: str) -> None:
        if not keys:
            return
        conn = self._conn()
        with write_tx(conn):
            for key in keys:
                self._drop(conn, key)

    def expire(self, key: str, ttl: float) -> None:
        conn = self._conn()
        now = time.time()
        with write_tx(conn):
            if ttl <= 0:
                self._drop(conn, key)
            else:
                conn.execute(f"UPDATE kv SET expires_at = ? WHERE key = ? AND {_LIVE}", (now + ttl, key, now))

    def keys(self, prefix: str) -> list[str]:
        now = time.time()
        rows = self._conn().execute(
            f"""SELECT key FROM kv WHERE substr(key, 1, ?) = ? AND {_LIVE}
                AND (kind != 'hash' OR EXISTS (SELECT 1 FROM kv_hash h
                    WHERE h.key = kv.key AND (h.expires_at IS NULL OR h.expires_at > ?)))
                ORDER BY key""",
            (len(prefix), prefix, now, now),
        )
        return [str(r[0]) for r in rows]

    # ---- hashes ------------------------------------------------------------------------
    def hset(self, key: str, mapping: Mapping[str, str], field_ttl: float | None = None) -> None:
        if not mapping:
            return
        conn = self._conn()
        now = time.time()
        with write_tx(conn):
            self._prepare(conn, key, "hash", now)
            conn.executemany(
                "INSERT OR REPLACE INTO kv_hash (key, field, value, expires_at) VALUES (?, ?, ?, ?)",
                [(key, f, v, _deadline(now, field_ttl)) for f, v in mapping.items()],
            )
            self._wrote(conn)

    def hgetall(self, key: str) -> dict[str, str]:
        conn = self._conn()
        now = time.time()
        rows = conn.execute(
            """SELECT h.field, h.value FROM kv_hash h JOIN kv ON kv.key = h.key
                WHERE h.key = ? AND kv.kind = 'hash' AND (kv.expires_at IS NULL OR kv.expires_at > ?)
                AND (h.expires_at IS NULL OR h.expires_at > ?)""",
            (key, now, now),
        ).fetchall()
        return {str(f): str(v) for f, v in rows}

    def hdel(self, key: str, *fields: str) -> None:
        if not fields:
            return
        conn = self._conn()
        with write_tx(conn):
            conn.executemany("DELETE FROM kv_hash WHERE key = ? AND field = ?", [(key, f) for f in fields])
            if conn.execute("SELECT 1 FROM kv_hash WHERE key = ? LIMIT 1", (key,)).fetchone() is None:
                conn.execute("DELETE FROM kv WHERE key = ? AND kind = 'hash'", (key,))

    # ---- lists -------------------------------------------------------------------------
    def list_replace(self, key: str, values: list[str], ttl: float | None = None) -> None:
        conn = self._conn()
        now = time.time()
        with write_tx(conn):
            self._drop(conn, key)
            if values:
                conn.execute("INSERT INTO kv (key, kind, expires_at) VALUES (?, 'list', ?)", (key, _deadline(now, ttl)))
                conn.executemany(
                    "INSERT INTO kv_list (key, idx, value) VALUES (?, ?, ?)",
                    [(key, i, v) for i, v in enumerate(values)],
                )
            self._wrote(conn)

    def extend_list(
        self, key: str, values: Sequence[str], max_len: int | None = None, ttl: float | None = None
    ) -> None:
        if not values:
            return
        conn = self._conn()
        now = time.time()
        with write_tx(conn):
            self._prepare(conn, key, "list", now)
            row = conn.execute("SELECT MAX(idx) FROM kv_list WHERE key = ?", (key,)).fetchone()
            first = 0 if row[0] is None else int(row[0]) + 1
            conn.executemany(
                "INSERT INTO kv_list (key, idx, value) VALUES (?, ?, ?)",
                [(key, first + i, v) for i, v in enumerate(values)],
            )
            last = first + len(values) - 1
            if max_len is not None:
                conn.execute("DELETE FROM kv_list WHERE key = ? AND idx <= ?", (key, last - max(max_len, 0)))
                if max_len <= 0:
                    conn.execute("DELETE FROM kv WHERE key = ?", (key,))
            if ttl is not None:
                conn.execute("UPDATE kv SET expires_at = ? WHERE key = ?", (now + ttl, key))
            self._wrote(conn)

    def lrange(self, key: str, start: int = 0, end: int = -1) -> list[str]:
        """Items ``start`` to ``end`` inclusive; negative indexes count from the end (as Redis)."""
        conn = self._conn()
        now = time.time()
        rows = conn.execute(
            """SELECT l.value FROM kv_list l JOIN kv ON kv.key = l.key
                WHERE l.key = ? AND kv.kind = 'list' AND (kv.expires_at IS NULL OR kv.expires_at > ?)
                ORDER BY l.idx""",
            (key, now),
        ).fetchall()
        items = [str(r[0]) for r in rows]
        n = len(items)
        lo = start + n if start < 0 else start
        hi = end + n if end < 0 else end
        lo = max(lo, 0)
        hi = min(hi, n - 1)
        return items[lo : hi + 1] if lo <= hi else []

    def close(self) -> None:
        self._pool.close()
