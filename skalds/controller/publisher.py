"""``Publisher``: the controller's events go out in the background, and a request waits briefly.

After a store write the controller publishes an event (``task.assign``, ``task.cancel``, ...) so
the skald concerned reacts within milliseconds. The event is only a hint — the store is the truth
and every skald reconciles against it — so a bus that does not answer must never hold a request
up: the Kafka driver waits up to its publish timeout (5 s) for a broker that is down.

So every publish runs on one background thread (events keep their order) and the caller waits
for it at most :data:`WAIT` seconds: a healthy bus confirms well within that, so a response still
follows the event as before. Once a publish has failed the bus counts as down: callers do not wait
at all, and only one publish at a time is attempted (the others are dropped and counted as not
published) until one succeeds again. The dispatcher's sweep and the skalds' reconciliation deliver
what a dropped event would have said.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable

from skalds.utils.logging import logger

#: Seconds a caller waits for a publish to be confirmed before it goes on without knowing.
WAIT = 0.25
#: Publishes queued at most while the bus works (beyond, they are dropped: a burst that outruns
#: the bus must not grow memory without bound).
MAX_QUEUED = 10_000
#: Seconds a failed publish keeps the bus reported as failing when nothing was published since.
REPORT_FOR = 30.0


class Publisher:
    """Runs publish calls in order on one background thread; see the module docstring."""

    def __init__(self, wait: float = WAIT) -> None:
        self.wait = wait
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._queued = 0
        self._closed = False
        #: Monotonic time of the failure that made the bus count as down (None: it works).
        self.down_since: float | None = None
        self._failed_at = 0.0
        self.last_error: str | None = None
        self.dropped = 0

    def submit(self, send: Callable[[], None], what: str, on_done: Callable[[bool], None] | None = None) -> bool | None:
        """Run ``send()`` on the publisher thread; True if it was confirmed within the wait, False
        if it failed or was dropped, None if it is still running (its outcome is logged)."""
        with self._lock:
            down = self.down_since is not None
            if self._closed or self._queued >= (1 if down else MAX_QUEUED):
                self.dropped += 1
                dropped = True
            else:
                dropped = False
                self._queued += 1
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="skalds-publish")
                future = self._pool.submit(self._run, send, what, on_done, down)
        if dropped:
            logger.debug(f"{what}: not published (the event bus is down; the skalds reconcile)")
            if on_done is not None:
                on_done(False)
            return False
        try:
            return future.result(timeout=0 if down else self.wait)
        except concurrent.futures.TimeoutError:
            return None

    def _run(self, send: Callable[[], None], what: str, on_done: Callable[[bool], None] | None, probe: bool) -> bool:
        with self._lock:
            skip = self.down_since is not None and not probe
            if skip:  # queued while the bus worked, and it failed since: one attempt at a time
                self._queued -= 1
                self.dropped += 1
        if skip:
            if on_done is not None:
                on_done(False)
            return False
        try:
            send()
        except Exception as exc:
            with self._lock:
                self._queued -= 1
                first = self.down_since is None
                now = time.monotonic()
                self.down_since = self.down_since or now
                self._failed_at = now
                self.last_error = str(exc)
            if first:
                logger.warning(
                    f"{what} not published ({exc}); skalds will reconcile, later events are sent when it is back"
                )
            else:
                logger.debug(f"{what} not published ({exc})")
            ok = False
        else:
            with self._lock:
                self._queued -= 1
                was_down = self.down_since is not None
                self.down_since = None
                self.last_error = None
            if was_down:
                logger.info("event bus works again: events are published")
            ok = True
        if on_done is not None:
            on_done(ok)
        return ok

    def problem(self) -> str | None:
        """Why the bus counts as failing (its last error), or None: for the health check. A failure
        is reported for :data:`REPORT_FOR` seconds when nothing was published since."""
        with self._lock:
            if self.down_since is None or time.monotonic() - self._failed_at > REPORT_FOR:
                return None
            return self.last_error

    def close(self) -> None:
        """Drop what is queued, wait for the publish in flight (the bus closes after this)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["Publisher"]
