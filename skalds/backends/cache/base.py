"""The state cache contract: a tiny Redis-shaped key/value store with TTLs.

The key layout of Skalds 0.3.x (docs/wire-formats.md) is written by :class:`skalds.backends.cache.state.StateView`
on top of these primitives, so the Redis driver maps one to one and the embedded driver emulates
the same data. Values are strings. A TTL of ``None`` means no expiry. Expired keys read as missing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from skalds.backends.guard import Guarded


class StateCache(Guarded, ABC):
    backend_kind = "state cache"
    url: str = ""

    @abstractmethod
    def set(self, key: str, value: str, ttl: float | None = None) -> None: ...

    @abstractmethod
    def get(self, key: str) -> str | None: ...

    @abstractmethod
    def delete(self, *keys: str) -> None: ...

    @abstractmethod
    def expire(self, key: str, ttl: float) -> None:
        """Set a TTL on an existing key (string, hash or list)."""

    @abstractmethod
    def hset(self, key: str, mapping: Mapping[str, str], field_ttl: float | None = None) -> None:
        """Set hash fields; ``field_ttl`` expires those fields individually where the backend can
        (embedded, Redis ≥ 7.4); elsewhere the fields stay and readers judge them by value."""

    @abstractmethod
    def hgetall(self, key: str) -> dict[str, str]: ...

    @abstractmethod
    def hdel(self, key: str, *fields: str) -> None: ...

    @abstractmethod
    def list_replace(self, key: str, values: list[str], ttl: float | None = None) -> None:
        """Replace a list with ``values`` atomically."""

    def push_list(self, key: str, value: str, max_len: int | None = None, ttl: float | None = None) -> None:
        """Append to a list, keeping only the last ``max_len`` items when given."""
        self.extend_list(key, [value], max_len, ttl)

    @abstractmethod
    def extend_list(
        self, key: str, values: Sequence[str], max_len: int | None = None, ttl: float | None = None
    ) -> None:
        """Append ``values`` in order (atomically), keeping only the last ``max_len`` items when
        given; ``ttl`` (re)sets the list's expiry. Appending nothing changes nothing."""

    @abstractmethod
    def lrange(self, key: str, start: int = 0, end: int = -1) -> list[str]: ...

    @abstractmethod
    def keys(self, prefix: str) -> list[str]:
        """Live keys starting with ``prefix`` (for monitors and tests; not on hot paths)."""

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """The string values of ``keys``, in order (None where missing, expired or not a string):
        one round trip where the driver can (Redis ``MGET``), for passes over thousands of keys."""
        return [self.get(key) for key in keys]

    def lrange_many(self, keys: Sequence[str]) -> list[list[str]]:
        """The whole of each list in ``keys``, in order (empty where missing): one round trip where
        the driver can."""
        return [self.lrange(key) for key in keys]

    def pipeline_set(self, items: Mapping[str, tuple[str, float | None]]) -> None:
        """Set many string keys at once (drivers batch this); value and TTL per key."""
        for key, (value, ttl) in items.items():
            self.set(key, value, ttl)

    # ---- leases (optional: drivers that back a controller leader lease implement these) ------
    def set_if_absent(self, key: str, value: str, ttl: float) -> bool:
        """Set the string ``key`` to ``value`` with ``ttl`` only if no live key of that name
        exists (Redis ``SET NX PX``); True if it was set. Atomic across processes."""
        raise NotImplementedError(f"{type(self).__name__} has no atomic set-if-absent")

    def compare_and_expire(self, key: str, value: str, ttl: float) -> bool:
        """If the live string ``key`` holds ``value``, give it a new ``ttl`` (``ttl`` ≤ 0 deletes
        it) and return True; otherwise change nothing and return False. Atomic: a lease owner
        renews or releases its lease, never someone else's."""
        raise NotImplementedError(f"{type(self).__name__} has no atomic compare-and-expire")

    def close(self) -> None:  # optional hook
        """Release connections."""

    def health(self) -> None:
        """Return if the cache can serve now, else raise (BackendUnavailable): one cheap read;
        drivers add what a read cannot see (a full disk)."""
        self.get("skalds:health:probe")
