"""The Redis state cache: the Skalds 0.3.x key layout (docs/wire-formats.md) on a real Redis or Valkey server.

Why it is built this way:

* **One round trip per call.** A call that needs several commands (``list_replace``, ``push_list``,
  ``pipeline_set``, ``hset`` with a field TTL) sends them as one ``MULTI``/``EXEC`` pipeline, so it
  costs one round trip and readers (monitors, the dashboard) never see half of it.
* **A dead server fails fast.** Socket timeouts are short (1 s read, 0.5 s connect), a timeout is
  never retried, and a broken connection is retried once at once (a pooled socket that died with
  a restarted server). While the server is down every call raises a redis ``ConnectionError`` or
  ``TimeoutError`` within about a second; the agent's wrapper treats those as "backend down, retry
  later". The same object works again once the server is back.
* **Fork-safe.** Skalds forks worker processes from the agent. The client is created lazily and
  re-created whenever ``os.getpid()`` changed, so a child never talks over its parent's sockets.
* **Hash-field TTL where the server has it.** ``hset(..., field_ttl=)`` uses ``HPEXPIRE`` on Redis
  ≥ 7.4 and Valkey ≥ 9. Whether the server has it is found out once per cache object by sending
  ``HPEXPIRE`` for a key that does not exist (no side effect): an error (unknown command on Redis
  7.0) means no. Without it the fields are just written; readers judge them by value (the contract).
* **Same semantics as the embedded driver.** Writing a key of another kind replaces it and reading
  a key of another kind reads as missing, where Redis itself would answer ``WRONGTYPE``. This costs
  nothing on the normal path: only a ``WRONGTYPE`` answer triggers the fallback. A hash whose
  fields have all expired is left out of ``keys()`` at once (the server deletes it a little later).
* TTLs are float seconds in the contract and whole milliseconds (``PX``/``PEXPIRE``) here, at least
  1 ms; a TTL ≤ 0 deletes, as a key written already expired reads as missing in the embedded driver.
* **No secrets leak.** ``repr()`` and the errors raised here mask the URL's password (redis-py's
  own errors never carry it). A malformed URL raises :class:`~skalds.errors.ConfigError` at
  construction; no connection is opened before the first command.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.retry import Retry

from skalds.backends.cache.base import StateCache
from skalds.errors import ConfigError
from skalds.utils.logging import logger, mask_secrets

#: Seconds a pooled connection may sit idle before it is checked with a PING on its next use.
HEALTH_CHECK_INTERVAL = 10
#: Keys asked for per SCAN step in :meth:`RedisStateCache.keys`.
SCAN_COUNT = 1000

_SCHEMES = ("redis", "rediss", "unix")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")

#: One command, applied to a client or to a pipeline (a pipeline is a ``redis.Redis`` too).
Op = Callable[[redis.Redis], object]
#: Keys per MGET / pipeline in the batched reads.
_BATCH = 1000


def redact_url(url: str) -> str:
    """``url`` with its password (in the user part or as ``?password=``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            userinfo, _, hostport = parts.netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            url = urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))
    except ValueError:
        pass
    return mask_secrets(url)


def _ms(ttl: float) -> int:
    """A positive TTL in float seconds as whole milliseconds, at least 1 (0 would delete)."""
    return max(1, round(ttl * 1000))


def _wrong_type(exc: ResponseError) -> bool:
    return "WRONGTYPE" in str(exc)


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a SCAN ``MATCH`` pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def _check_url(url: str) -> None:
    """Raise :class:`ConfigError` unless ``url`` is a usable Redis URL (no connection is made)."""

    def bad(reason: str) -> ConfigError:
        return ConfigError(f"state cache URL {redact_url(url)!r}: {mask_secrets(reason)}")

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        password_free = str(exc).replace(url, redact_url(url))
        raise bad(f"cannot be parsed ({password_free})") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise bad(f"unknown scheme {scheme!r} (use redis://, rediss:// or unix://)")
    if scheme == "unix":
        if not parts.path:
            raise bad("a unix:// URL needs the socket path")
    else:
        if not parts.hostname:
            raise bad("names no host (write redis://HOST:PORT/DB)")
        if port == 0:
            raise bad("port 0 is not a server port")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise bad(f"the database must be a number, not {db!r}")
    try:
        # redis-py's own parsing of the query options; building (not opening) a connection also
        # rejects option names it does not know.
        redis.ConnectionPool.from_url(url).make_connection()
    except ValueError as exc:
        raise bad(str(exc)) from None
    except TypeError as exc:
        raise bad(f"an option is not a redis-py connection option ({exc})") from None


class RedisStateCache(StateCache):
    """A state cache on the Redis (or Valkey) server at ``url`` (``redis://``, ``rediss://`` or
    ``unix://``; redis-py URL options such as ``?socket_timeout=`` override the keyword defaults).

    Thread-safe (one connection pool per process) and fork-safe (see the module docstring).
    A server that cannot serve (unreachable, timed out, loading, read-only replica, out of
    memory) raises ``BackendUnavailable``; a malformed URL raises ``ConfigError``.
    """

    unavailable_errors: tuple[type[BaseException], ...] = (
        redis.exceptions.ConnectionError,  # also BusyLoadingError
        redis.exceptions.TimeoutError,
        redis.exceptions.ReadOnlyError,
        redis.exceptions.OutOfMemoryError,
        redis.exceptions.TryAgainError,
        OSError,
    )

    def __init__(self, url: str, *, socket_timeout: float = 1.0, connect_timeout: float = 0.5) -> None:
        _check_url(url)
        self._setup(url, socket_timeout, connect_timeout)

    def _setup(self, url: str, socket_timeout: float, connect_timeout: float) -> None:
        self.url = url
        self._url = url
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._client: redis.Redis | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        #: Whether the server has hash-field TTL; None until first needed.
        self._field_ttl: bool | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.url)!r})"

    def __getstate__(self) -> dict[str, Any]:
        """Pickles as its settings (for spawned processes); the copy connects on first use."""
        return {
            "url": self._url,
            "socket_timeout": self._socket_timeout,
            "connect_timeout": self._connect_timeout,
            "field_ttl": self._field_ttl,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._setup(state["url"], state["socket_timeout"], state["connect_timeout"])
        self._field_ttl = state["field_ttl"]

    # ---- connection ------------------------------------------------------------------------
    @property
    def client(self) -> redis.Redis:
        """The redis-py client of this process (created on first use, again after a fork)."""
        pid = os.getpid()
        if pid != self._pid:
            # A forked child: never touch the parent's pool (its sockets are shared with the
            # parent) nor its lock (it may have been held by another thread at fork time).
            self._lock = threading.Lock()
            self._client = None
            self._pid = pid
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    client = self._client = self._new_client()
        return client

    def _new_client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self._url,
            decode_responses=True,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._connect_timeout,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            # Retry a broken connection once, at once; never retry a timeout (the server may be
            # stuck, or may have executed the command): this is ``retry_on_timeout=False``.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )

    @property
    def supports_field_ttl(self) -> bool:
        """Whether the server expires hash fields (``HPEXPIRE``); probed once, then cached."""
        if self._field_ttl is None:
            probe = f"skalds:probe:{uuid.uuid4().hex}"
            try:
                # On a missing key this changes nothing and answers [-2] where HPEXPIRE exists.
                self.client.hpexpire(probe, 60_000, "f")
            except ResponseError as exc:
                logger.debug("state cache {}: no hash-field TTL ({})", redact_url(self.url), exc)
                self._field_ttl = False
            else:
                self._field_ttl = True
        return self._field_ttl

    def _exec(self, ops: Sequence[Op]) -> list[Any]:
        """Run ``ops`` in one round trip, atomically (``MULTI``/``EXEC``) when more than one."""
        client = self.client
        if len(ops) == 1:
            return [ops[0](client)]
        with client.pipeline(transaction=True) as pipe:
            for op in ops:
                op(pipe)
            return list(pipe.execute())

    def _write(self, key: str, ops: Sequence[Op]) -> list[Any]:
        """:meth:`_exec`, replacing ``key`` first if it holds another kind (as the embedded driver)."""
        try:
            return self._exec(ops)
        except ResponseError as exc:
            if not _wrong_type(exc):
                raise
        return self._exec([lambda r: r.delete(key), *ops])

    # ---- strings ---------------------------------------------------------------------------
    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._exec([_set_op(key, value, ttl)])

    def get(self, key: str) -> str | None:
        try:
            value = self.client.get(key)
        except ResponseError as exc:
            if _wrong_type(exc):
                return None
            raise
        return None if value is None else str(value)

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        values: list[str | None] = []
        for i in range(0, len(keys), _BATCH):
            # MGET answers nil for keys of another kind, as get() does.
            values.extend(None if v is None else str(v) for v in self.client.mget(list(keys[i : i + _BATCH])))
        return values

    def lrange_many(self, keys: Sequence[str]) -> list[list[str]]:
        lists: list[list[str]] = []
        for i in range(0, len(keys), _BATCH):
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys[i : i + _BATCH]:
                    pipe.lrange(key, 0, -1)
                replies = pipe.execute(raise_on_error=False)
            lists.extend([str(x) for x in r] if isinstance(r, list) else [] for r in replies)
        return lists

    def pipeline_set(self, items: Mapping[str, tuple[str, float | None]]) -> None:
        if items:
            self._exec([_set_op(key, value, ttl) for key, (value, ttl) in items.items()])

    def set_if_absent(self, key: str, value: str, ttl: float) -> bool:
        if ttl <= 0:
            return False  # written already expired: nothing to hold
        return bool(self.client.set(key, value, px=_ms(ttl), nx=True))

    def compare_and_expire(self, key: str, value: str, ttl: float) -> bool:
        # One script, so nobody can take the key between our check and our write.
        try:
            done = self.client.eval(_COMPARE_AND_EXPIRE, 1, key, value, _ms(ttl) if ttl > 0 else 0)
        except ResponseError as exc:
            if _wrong_type(exc):
                return False
            raise
        return bool(done)

    # ---- any kind --------------------------------------------------------------------------
    def delete(self, *keys: str) -> None:
        if keys:
            self.client.delete(*keys)

    def expire(self, key: str, ttl: float) -> None:
        # PEXPIRE on a missing key does nothing, as the contract wants.
        if ttl > 0:
            self.client.pexpire(key, _ms(ttl))
        else:
            self.client.delete(key)

    def keys(self, prefix: str) -> list[str]:
        pattern = _glob_escape(prefix) + "*"
        found = sorted({str(key) for key in self.client.scan_iter(match=pattern, count=SCAN_COUNT)})
        if found and self.supports_field_ttl:
            found = self._without_dead_hashes(found)
        return found

    def _without_dead_hashes(self, keys: list[str]) -> list[str]:
        """``keys`` without hashes whose fields have all expired.

        Such a hash still exists (``EXISTS``, ``SCAN``) until the server's active expiry deletes it,
        about 0.1 s later, while ``HGETALL`` already reads it as empty; the embedded driver drops it
        at once. ``HRANDFIELD`` answers None for it (and for a key gone meanwhile) and WRONGTYPE for
        keys of other kinds, so one pipelined round trip per :data:`SCAN_COUNT` keys tells them apart.
        """
        live: list[str] = []
        for i in range(0, len(keys), SCAN_COUNT):
            chunk = keys[i : i + SCAN_COUNT]
            with self.client.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.hrandfield(key)
                answers = pipe.execute(raise_on_error=False)
            live.extend(key for key, answer in zip(chunk, answers, strict=True) if answer is not None)
        return live

    # ---- hashes ----------------------------------------------------------------------------
    def hset(self, key: str, mapping: Mapping[str, str], field_ttl: float | None = None) -> None:
        if not mapping:
            return
        fields = list(mapping)
        if field_ttl is not None and field_ttl <= 0:
            # Written already expired: the fields are gone (the embedded driver does the same).
            self._write(key, [lambda r: r.hdel(key, *fields)])
            return
        flat = [part for item in mapping.items() for part in item]

        def hset(r: redis.Redis) -> object:
            return r.hset(key, items=flat)

        if field_ttl is None or not self.supports_field_ttl:
            self._write(key, [hset])
            return
        ms = _ms(field_ttl)
        try:
            self._write(key, [hset, lambda r: r.hpexpire(key, ms, *fields)])
        except ResponseError as exc:
            if "unknown command" not in str(exc).lower():
                raise
            # The server changed under us (failover to an older one): stop using field TTL.
            logger.warning("state cache {}: HPEXPIRE is gone, hash fields no longer expire", redact_url(self.url))
            self._field_ttl = False
            self._write(key, [hset])

    def hgetall(self, key: str) -> dict[str, str]:
        try:
            raw = self.client.hgetall(key)
        except ResponseError as exc:
            if _wrong_type(exc):
                return {}
            raise
        return {str(field): str(value) for field, value in dict(raw).items()}

    def hdel(self, key: str, *fields: str) -> None:
        if not fields:
            return
        try:
            self.client.hdel(key, *fields)
        except ResponseError as exc:
            if not _wrong_type(exc):
                raise

    # ---- lists -----------------------------------------------------------------------------
    def list_replace(self, key: str, values: list[str], ttl: float | None = None) -> None:
        ops: list[Op] = [lambda r: r.delete(key)]
        if values and (ttl is None or ttl > 0):
            items = list(values)
            ops.append(lambda r: r.rpush(key, *items))
            if ttl is not None:
                ms = _ms(ttl)
                ops.append(lambda r: r.pexpire(key, ms))
        self._exec(ops)

    def extend_list(
        self, key: str, values: Sequence[str], max_len: int | None = None, ttl: float | None = None
    ) -> None:
        if not values:
            return
        items = list(values)
        ops: list[Op] = [lambda r: r.rpush(key, *items)]
        if max_len is not None:
            keep = max_len
            ops.append(lambda r: r.ltrim(key, -keep, -1) if keep > 0 else r.delete(key))
        if ttl is not None:
            ms = _ms(ttl) if ttl > 0 else 0
            ops.append(lambda r: r.pexpire(key, ms) if ms else r.delete(key))
        self._write(key, ops)

    def lrange(self, key: str, start: int = 0, end: int = -1) -> list[str]:
        try:
            items = self.client.lrange(key, start, end)
        except ResponseError as exc:
            if _wrong_type(exc):
                return []
            raise
        return [str(item) for item in list(items)]

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()
            client.connection_pool.disconnect()


#: KEYS[1] holds ARGV[1]? then PEXPIRE it by ARGV[2] ms (0 = delete) and answer 1, else 0.
_COMPARE_AND_EXPIRE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) else redis.call('DEL', KEYS[1]) end
return 1
"""


def _set_op(key: str, value: str, ttl: float | None) -> Op:
    if ttl is None:
        return lambda r: r.set(key, value)  # no expiry, and clears an earlier one
    if ttl <= 0:
        return lambda r: r.delete(key)  # written already expired
    ms = _ms(ttl)
    return lambda r: r.set(key, value, px=ms)
