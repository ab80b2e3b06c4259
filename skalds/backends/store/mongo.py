"""The MongoDB task store (pymongo 4, sync API), compatible with Skalds 0.3.x deployments.

Layout (as Skalds 0.3.x): database ``db_name`` (default ``skalds``), collection ``tasks``, one document
per task = the task dumped by alias, unique index on ``id``, plus indexes for the dispatcher's queries
(status + priority + age, executor + status, class name, age).

Concurrency: compare-and-set on ``version``. ``_cas`` is one ``update_one({"id": id, "version":
expected}, {"$set": fields})``; single-document updates are atomic in MongoDB, so of two writers
holding the same version exactly one matches the document and the other re-reads and retries (see
:meth:`TaskStore.modify`). No transactions are needed, so a standalone server works too.

This driver is deliberately thin: what a listing means (filters, empty lists, search, sort orders
and tie-breaks, paging) comes from :mod:`skalds.backends.store.document_query`, shared with the PostgreSQL
driver, and is spelled here by the pure functions :func:`task_filter` and :func:`task_sort`.

Clients: one ``MongoClient`` per process, created lazily on first use (pymongo clients must not be
used across ``fork``); a forked child creates its own and leaves the inherited one untouched.
pymongo reconnects by itself after a server restart; the failing call raises a
:class:`pymongo.errors.PyMongoError` (``ServerSelectionTimeoutError``, ``AutoReconnect``...).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    WTimeoutError,
)

from skalds.backends.store.base import TaskQuery, TaskStore
from skalds.backends.store.document_query import SEARCH_FIELDS, conditions, page, sort_keys
from skalds.errors import ConfigError, TaskExists
from skalds.utils.logging import logger, mask_secrets

Doc = dict[str, Any]

#: The collection of Skalds 0.3.x deployments.
COLLECTION = "tasks"

#: Index keys of the ``tasks`` collection (pymongo names them, e.g. ``id_1``, as 0.3.x's would be).
INDEXES: tuple[tuple[list[tuple[str, int]], bool], ...] = (
    ([("id", 1)], True),  # (keys, unique)
    ([("lifecycleStatus", 1), ("priority", -1), ("createDateTime", 1)], False),
    ([("executor", 1), ("lifecycleStatus", 1)], False),
    ([("className", 1)], False),
    ([("createDateTime", 1)], False),
)
#: Server error codes of "an equivalent index already exists under another name / other options".
_INDEX_CONFLICTS = frozenset({85, 86})

#: Never return MongoDB's own ``_id``: documents are tasks by alias, nothing else.
_PROJECTION = {"_id": False}

#: Guards client creation of every store; replaced in a forked child, where it may have been copied
#: while held by a thread that does not exist there.
_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_after_fork)


# ---- pure query building (no server) --------------------------------------------------------
def task_filter(query: TaskQuery) -> Doc:
    """The ``find`` filter of ``query``.

    An empty ``statuses``/``ids`` tuple becomes ``{"$in": []}``, which matches nothing; ``search``
    becomes a case-sensitive regex of the escaped text (a literal substring) on the id or the name.
    """
    cond = conditions(query)
    mongo_filter: Doc = {alias: {"$in": list(values)} for alias, values in cond.one_of.items()}
    mongo_filter.update(cond.equal)
    if cond.substring is not None:
        pattern = re.escape(cond.substring)
        mongo_filter["$or"] = [{alias: {"$regex": pattern}} for alias in SEARCH_FIELDS]
    return mongo_filter


def task_sort(query: TaskQuery) -> list[tuple[str, int]]:
    """The ``find`` sort of ``query.order`` (ValueError for an unknown order)."""
    return list(sort_keys(query))


def ensure_indexes(collection: Collection[Doc]) -> None:
    """Create the task indexes; an equivalent index under another name (older deployments) is kept."""
    for keys, unique in INDEXES:
        try:
            collection.create_index(keys, unique=unique)
        except OperationFailure as exc:
            if exc.code not in _INDEX_CONFLICTS:
                raise
            logger.warning(f"MongoDB index {keys} on {collection.name}: kept the existing one ({exc.code})")


def new_client(url: str, timeout_ms: int) -> MongoClient[Doc]:
    """A MongoClient for ``url`` that gives up after ``timeout_ms``; ConfigError (masked) for a bad URL."""
    try:
        return MongoClient(
            url,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            appname="skalds",
            connect=False,
        )
    except (ConfigurationError, ValueError, TypeError) as exc:  # pymongo raises ValueError for a bad port
        raise ConfigError(f"MongoDB URL {mask_secrets(url)!r}: {mask_secrets(str(exc))}") from None


class MongoTaskStore(TaskStore):
    """Tasks in collection ``tasks`` of database ``db_name`` at ``url`` (``mongodb://...``).

    ``timeout_ms`` bounds server selection and connecting, so a server that is down is reported
    quickly. Thread-, process- and fork-safe.
    """

    #: Unreachable (ServerSelectionTimeoutError, AutoReconnect, NetworkTimeout) or timed out.
    unavailable_errors = (ConnectionFailure, ExecutionTimeout, WTimeoutError, OSError)

    def __init__(self, url: str, *, db_name: str = "skalds", timeout_ms: int = 2000) -> None:
        self.url = url
        self.db_name = db_name
        self._timeout_ms = timeout_ms
        self._client: tuple[int, MongoClient[Doc], Collection[Doc]] | None = None
        self._inherited: list[MongoClient[Doc]] = []

    def __repr__(self) -> str:
        return f"MongoTaskStore({mask_secrets(self.url)!r}, db_name={self.db_name!r})"

    def _tasks(self) -> Collection[Doc]:
        """The ``tasks`` collection through this process's client, created (with indexes) on first use."""
        pid = os.getpid()
        current = self._client
        if current is not None and current[0] == pid:
            return current[2]
        client = new_client(self.url, self._timeout_ms)
        tasks = client[self.db_name][COLLECTION]
        try:
            ensure_indexes(tasks)  # outside the lock: it waits for the server
        except BaseException:
            client.close()
            raise
        with _lock:
            current = self._client
            if current is not None and current[0] == pid:  # another thread got there first
                spare: MongoClient[Doc] | None = client
                tasks = current[2]
            else:
                if current is not None:
                    self._inherited.append(current[1])  # the parent's: never used nor closed here
                self._client, spare = (pid, client, tasks), None
        if spare is not None:
            spare.close()
        return tasks

    # ---- driver primitives -------------------------------------------------------------
    def _insert(self, doc: dict[str, Any]) -> None:
        try:
            self._tasks().insert_one(dict(doc))  # a copy: insert_one adds "_id" to what it gets
        except DuplicateKeyError as exc:
            raise TaskExists(f"a task with id {doc.get('id')!r} already exists") from exc

    def _get(self, task_id: str) -> dict[str, Any] | None:
        return self._tasks().find_one({"id": task_id}, _PROJECTION)

    def _query(self, query: TaskQuery) -> tuple[list[dict[str, Any]], int]:
        mongo_filter, sort = task_filter(query), task_sort(query)
        offset, limit = page(query)
        tasks = self._tasks()
        total = tasks.count_documents(mongo_filter)
        if limit == 0 or offset >= total:
            return [], total
        # limit 0 means "no limit" to MongoDB, which is what limit None means here.
        cursor = tasks.find(mongo_filter, _PROJECTION, sort=sort, skip=offset, limit=limit or 0)
        return list(cursor), total

    def _counts(self) -> dict[tuple[str, str], int]:
        pipeline = [{"$group": {"_id": {"s": "$lifecycleStatus", "c": "$className"}, "n": {"$sum": 1}}}]
        return {(str(d["_id"]["s"]), str(d["_id"]["c"])): int(d["n"]) for d in self._tasks().aggregate(pipeline)}

    def _versions(self, query: TaskQuery) -> dict[str, int]:
        cursor = self._tasks().find(task_filter(query), {"_id": 0, "id": 1, "version": 1})
        return {str(d["id"]): int(d.get("version", 0)) for d in cursor}

    def _cas(self, task_id: str, expected_version: int, fields: dict[str, Any]) -> bool:
        result = self._tasks().update_one(version_filter(task_id, expected_version), {"$set": dict(fields)})
        return result.matched_count == 1

    def _delete(self, task_id: str) -> bool:
        return self._tasks().delete_one({"id": task_id}).deleted_count > 0


def version_filter(task_id: str, expected_version: int) -> dict[str, Any]:
    """The compare-and-set filter. A document written by Skalds 0.3.x has no ``version`` (it
    reads as 0): version 0 also matches a document without the field, or nothing could ever
    change such a task."""
    if expected_version == 0:
        return {"id": task_id, "$or": [{"version": 0}, {"version": {"$exists": False}}]}
    return {"id": task_id, "version": expected_version}

    def close(self) -> None:
        with _lock:
            current, self._client = self._client, None
        if current is not None and current[0] == os.getpid():
            current[1].close()
