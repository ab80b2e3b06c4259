"""``MongoProxy``: the Skalds 0.3.x MongoDB handle, kept for code written against it.

New code goes through the task store (``skalds.backends.store.mongo.MongoTaskStore``); this facade
only hands out the pymongo database and creates the same indexes the store does, so programs that
used ``MongoProxy(MongoConfig(...)).db["tasks"]`` keep working on the same data.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from pymongo import MongoClient
from pymongo.database import Database

from skalds.backends.store.mongo import COLLECTION, Doc, ensure_indexes, new_client
from skalds.utils.logging import mask_secrets

#: Guards client creation; replaced in a forked child, where it may have been copied while held.
_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_after_fork)


@dataclass
class MongoConfig:
    """Where the 0.3.x MongoDB lives: ``host`` is a ``mongodb://`` URL (or ``host:port``)."""

    host: str
    db_name: str = "skalds"

    @property
    def url(self) -> str:
        return self.host if "://" in self.host else f"mongodb://{self.host}"


class MongoProxy:
    """A lazily connected pymongo client for ``mongo_config`` (one per process, fork-safe)."""

    def __init__(self, mongo_config: MongoConfig, *, timeout_ms: int = 2000) -> None:
        self.config = mongo_config
        self._timeout_ms = timeout_ms
        self._client: tuple[int, MongoClient[Doc]] | None = None

    def __repr__(self) -> str:
        return f"MongoProxy({mask_secrets(self.config.url)!r}, db_name={self.config.db_name!r})"

    @property
    def client(self) -> MongoClient[Doc]:
        """This process's client (a forked child gets its own; the parent's is left untouched)."""
        pid = os.getpid()
        with _lock:
            if self._client is None or self._client[0] != pid:
                self._client = (pid, new_client(self.config.url, self._timeout_ms))
            return self._client[1]

    @property
    def db(self) -> Database[Doc]:
        """The database ``db_name`` (collection ``tasks`` holds the tasks)."""
        return self.client[self.config.db_name]

    def init_db_index(self) -> None:
        """Create the indexes of the ``tasks`` collection (unique ``id`` and the query indexes)."""
        ensure_indexes(self.db[COLLECTION])

    def close(self) -> None:
        with _lock:
            current, self._client = self._client, None
        if current is not None and current[0] == os.getpid():
            current[1].close()
