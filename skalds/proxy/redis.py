"""``RedisProxy``: the Skalds 0.3.x Redis handle, kept for user code written against it.

Programs written for Skalds 0.3.x build ``RedisProxy(RedisConfig(host=..., port=...))`` to read the
heartbeats and errors Skalds keeps in Redis, or to keep a few keys of their own next to them. This
facade keeps that working on the same data: it wraps the state cache driver
(:class:`~skalds.backends.cache.redis.RedisStateCache`) instead of opening a second kind of client,
so it has the same short timeouts, fork safety and error behaviour (redis-py exceptions propagate).
:class:`RedisKey` names the cache keys (docs/wire-formats.md) with the same functions Skalds writes them with.

Values, kept simple on purpose:

* a ``str`` is stored as it is; anything else (dict, list, number, bool, None) is stored as JSON;
* reads return the stored string (or None / empty when missing): ``json.loads`` it if you stored
  JSON. Reads do not guess, because the string ``"42"`` and the number ``42`` are stored alike.

Lists are appended at the tail and read oldest first. A key of another kind reads as missing and is
replaced when written (as everywhere in the state cache). ``is_block=True`` (the default) waits for
the server at construction, up to ``connect_wait`` seconds (10), then raises
:class:`~skalds.errors.BackendUnavailable`; ``is_block=False`` connects on the first call.

``RedisConfig`` is always explicit: its ``host`` default only applies when a user builds one; Skalds
never falls back to it by itself (no implicit ``localhost`` server; see docs/configuration.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

import redis
from redis.exceptions import ResponseError

from skalds.backends.cache.redis import RedisStateCache, redact_url
from skalds.backends.cache.state import (
    SKALDS_HASH,
    SKALDS_MODE_HASH,
    skald_classes_key,
    skald_heartbeat_key,
    skald_schemas_key,
    skald_tasks_key,
    task_error_key,
    task_exception_key,
    task_heartbeat_key,
)
from skalds.errors import BackendUnavailable

__all__ = ["RedisConfig", "RedisKey", "RedisProxy"]


@dataclass
class RedisConfig:
    """Where the Redis server is. The password is left out of ``repr()``."""

    host: str = "127.0.0.1"
    port: int = 6379
    password: str | None = field(default=None, repr=False)
    db: int = 0

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this configuration (the password percent-encoded)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"redis://{auth}{host}:{self.port}/{self.db}"


class RedisKey:
    """The Redis keys of Skalds (docs/wire-formats.md), exactly as Skalds 0.3.x names them."""

    #: Hash: skald id → its last activity (epoch ms).
    SKALDS_HASH = SKALDS_HASH
    #: Hash: skald id → its mode (``node`` / ``edge``).
    SKALDS_MODE_HASH = SKALDS_MODE_HASH

    @staticmethod
    def skald_heartbeat(skald_id: str) -> str:
        """String: the skald's lease (a counter); missing once the skald is gone."""
        return skald_heartbeat_key(skald_id)

    @staticmethod
    def skald_allow_task_class_name(skald_id: str) -> str:
        """List: the worker class names the skald can run."""
        return skald_classes_key(skald_id)

    @staticmethod
    def skald_all_task(skald_id: str) -> str:
        """List: the ids of the tasks the skald runs."""
        return skald_tasks_key(skald_id)

    @staticmethod
    def skald_task_schemas(skald_id: str) -> str:
        """String (JSON): class name → JSON schema of its attachments."""
        return skald_schemas_key(skald_id)

    @staticmethod
    def task_heartbeat(task_id: str) -> str:
        """String: 0–199 while alive; 200 finished, -1 failed, -2 cancelled."""
        return task_heartbeat_key(task_id)

    @staticmethod
    def task_has_error(task_id: str) -> str:
        """String: the task's last error message."""
        return task_error_key(task_id)

    @staticmethod
    def task_exception(task_id: str) -> str:
        """String: the text of the task's last exception."""
        return task_exception_key(task_id)


def _encode(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class _SeedCache(RedisStateCache):
    """The state cache driver with redis-py's own exceptions (code written for 0.3.x catches
    ``redis.ConnectionError``), not :class:`~skalds.errors.BackendUnavailable`."""

    unavailable_errors = ()


class RedisProxy:
    """The 0.3.x Redis facade over the state cache driver (see the module docstring)."""

    def __init__(
        self,
        redis_config: RedisConfig,
        is_block: bool = True,
        *,
        connect_wait: float = 10.0,
        socket_timeout: float = 1.0,
        connect_timeout: float = 0.5,
    ) -> None:
        self.config = redis_config
        self.cache = _SeedCache(redis_config.url, socket_timeout=socket_timeout, connect_timeout=connect_timeout)
        if is_block:
            self.wait_until_ready(connect_wait)

    def __repr__(self) -> str:
        return f"RedisProxy({redact_url(self.cache.url)!r})"

    def __enter__(self) -> RedisProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def client(self) -> redis.Redis:
        """This process's redis-py client (``decode_responses=True``), for anything not wrapped here."""
        return self.cache.client

    def wait_until_ready(self, timeout: float = 10.0) -> None:
        """PING until the server answers; :class:`BackendUnavailable` after ``timeout`` seconds.

        A rejected password is not waited out: ``redis.AuthenticationError`` propagates at once.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.ping()
                return
            except redis.AuthenticationError:
                raise
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BackendUnavailable(
                        f"Redis at {redact_url(self.cache.url)} did not answer within {timeout:g} s: {exc}"
                    ) from exc
                time.sleep(min(0.2, left))

    # ---- hashes ----------------------------------------------------------------------------
    def set_hash(self, key: str, field: str, value: Any) -> None:
        """Set one field of the hash ``key``."""
        self.cache.hset(key, {field: _encode(value)})

    def get_hash(self, key: str, field: str) -> str | None:
        """One field of the hash ``key``, or None."""
        try:
            value = self.client.hget(key, field)
        except ResponseError as exc:
            if "WRONGTYPE" in str(exc):
                return None
            raise
        return None if value is None else str(value)

    def get_all_hash(self, key: str) -> dict[str, str]:
        """Every field of the hash ``key`` (empty when missing)."""
        return self.cache.hgetall(key)

    # ---- lists -----------------------------------------------------------------------------
    def push_list(self, key: str, value: Any) -> None:
        """Append ``value`` to the list ``key``."""
        self.cache.push_list(key, _encode(value))

    def get_list(self, key: str) -> list[str]:
        """The whole list ``key``, oldest first (empty when missing)."""
        return self.cache.lrange(key)

    # ---- strings ---------------------------------------------------------------------------
    def set_message(self, key: str, message: Any, expire_seconds: float | None = None) -> None:
        """Set the string ``key``; it expires after ``expire_seconds`` (≤ 0 deletes it) or never."""
        self.cache.set(key, _encode(message), ttl=expire_seconds)

    def get_message(self, key: str) -> str | None:
        """The string ``key``, or None."""
        return self.cache.get(key)

    # ---- any kind --------------------------------------------------------------------------
    def delete_key(self, key: str) -> None:
        """Delete ``key``, whatever its kind (nothing happens when it is missing)."""
        self.cache.delete(key)

    def close(self) -> None:
        """Close this process's connections (a later call reconnects)."""
        self.cache.close()
