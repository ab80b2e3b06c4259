"""``LeaderLease``: at most one controller runs the dispatcher sweep and failover at a time.

Several controllers may serve the API at once (for availability); two of them dispatching would
still be *safe* — every assignment is a compare-and-set in the store — but they would fight over
the same tasks and double the store traffic. So the controllers that could dispatch compete for a
lease in the state cache, ``skalds:controller:leader`` = the holder's id with a TTL (liveness is
a lease: docs/design.md, principle 3):

* **Acquire** with :meth:`StateCache.set_if_absent` (``SET NX PX``): only a free key is taken.
* **Renew** every ``renew_interval`` (about a third of the TTL) with
  :meth:`StateCache.compare_and_expire`, which extends the key only while it still holds our id;
  a holder that was too slow and lost it finds out here and steps down.
* **Step down safely.** The holder believes it leads only until ``ttl - renew_interval`` after
  its last successful write (local monotonic clock), so when the cache is unreachable it stops
  acting as leader *before* the key can expire and another controller can take it.
* **Release** on shutdown (compare-and-expire to 0), so a standby takes over at its next try
  instead of after a full TTL.

A SIGKILLed leader's key simply expires: a standby takes over within ``ttl + renew_interval``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

from skalds.backends.cache.base import StateCache
from skalds.utils.logging import logger

LEADER_KEY = "skalds:controller:leader"
#: Default lease lifetime and renewal period, seconds.
LEASE_TTL = 5.0
RENEW_INTERVAL = 1.5


class LeaderLease:
    """One controller's claim on the leader lease; call :meth:`tick` every ``renew_interval``."""

    def __init__(
        self,
        cache: StateCache | Callable[[], StateCache],
        holder: str | None = None,
        *,
        ttl: float = LEASE_TTL,
        renew_interval: float = RENEW_INTERVAL,
        key: str = LEADER_KEY,
    ) -> None:
        if not 0 < renew_interval < ttl:
            raise ValueError(f"the lease renew interval ({renew_interval} s) must be below its TTL ({ttl} s)")
        self._cache = cache
        # The pid makes the holder easy to find among processes (logs, tests); the suffix unique.
        self.holder = holder or f"controller-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.ttl = ttl
        self.renew_interval = renew_interval
        self.key = key
        self._valid_until = 0.0  # monotonic; we act as leader only before this
        self.changes = 0  # how often leadership was gained or lost (for status and tests)

    @property
    def cache(self) -> StateCache:
        """The state cache (given, or opened on first use through the given function)."""
        return self._cache if isinstance(self._cache, StateCache) else self._cache()

    @property
    def is_leader(self) -> bool:
        return time.monotonic() < self._valid_until

    def tick(self) -> bool:
        """Acquire or renew the lease; returns whether this controller leads now.

        Raises what the cache raises (the caller's loop logs it); an unreachable cache makes us
        stop leading once our local deadline passes, without any further call.
        """
        was = self.is_leader
        started = time.monotonic()
        if self._valid_until > 0.0 and self.cache.compare_and_expire(self.key, self.holder, self.ttl):
            held = True
        else:
            held = self.cache.set_if_absent(self.key, self.holder, self.ttl)
        # Count from before the write: the key may have been set at any moment of the call.
        self._valid_until = started + self.ttl - self.renew_interval if held else 0.0
        if held != was:
            self.changes += 1
            if held:
                logger.info(f"{self.holder} is now the leading controller (dispatch and failover)")
            else:
                current = self.cache.get(self.key)
                logger.warning(f"{self.holder} is no longer the leading controller (held by {current})")
        return held

    def release(self) -> None:
        """Give the lease up now (on shutdown) if we hold it."""
        if self._valid_until > 0.0:
            self._valid_until = 0.0
            try:
                self.cache.compare_and_expire(self.key, self.holder, 0)
            except Exception as exc:
                logger.debug(f"leader lease not released ({exc}); it expires on its own")

    def status(self) -> dict[str, object]:
        return {"holder": self.holder, "leader": self.is_leader, "ttl": self.ttl, "changes": self.changes}


__all__ = ["LEADER_KEY", "LeaderLease"]
