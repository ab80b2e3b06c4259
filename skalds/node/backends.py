"""Backends as the agent sees them: never fatal, never blocking the loop for long.

Edge autonomy (docs/design.md, principle 6): a backend that cannot be reached is marked *down*; callers get
``None`` at once and carry on, workers keep running. While it is down, a background thread probes
it (open + one cheap read) every ``RETRY_AFTER`` seconds and marks it *up* again when the probe
succeeds, so the agent's loop never waits on a connect timeout more than once per outage.

Only the backend failing is an outage: :class:`~skalds.errors.BackendUnavailable` (every driver
raises it for its own connection, timeout and disk errors, :mod:`skalds.backends.guard`), a missing
driver, or a driver error of that kind that reached the caller unnamed. Any other error of a
``with_*`` call is the caller's to handle (a domain error such as
:class:`~skalds.errors.LostWrite`) or a bug (logged at ERROR with its traceback): both propagate and
leave the backend up — marking it down would only hide the bug behind an outage that is not one.

The embedded SQLite backend is opened synchronously on first use (it is a local file).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from skalds.backends.bus.base import EventBus
from skalds.backends.cache.state import StateView
from skalds.backends.factory import bus_options, open_bus, open_cache, open_store, store_options
from skalds.backends.guard import Guarded
from skalds.backends.store.base import TaskStore
from skalds.config.skald_config import SkaldConfig
from skalds.errors import BackendUnavailable, ConfigError, MissingDriver, SkaldsError
from skalds.utils.logging import logger, mask_secrets

R = TypeVar("R")
RETRY_AFTER = 2.0


class _Slot:
    def __init__(
        self,
        kind: str,
        url: str,
        opener: Callable[[str], Any],
        probe: Callable[[Any], object] | None,
    ) -> None:
        self.kind = kind
        self.url = url
        self.opener = opener
        self.probe = probe
        self.local = urlsplit(url).scheme == "sqlite"
        self.value: Any = None
        self.permanent_error: str | None = None
        self.down_since: float | None = None
        self._probing = False
        self._next_probe = 0.0
        self._lock = threading.Lock()
        self._probe_thread: threading.Thread | None = None

    def get(self) -> Any:
        if self.value is not None or self.permanent_error is not None:
            return self.value
        if self.local:
            self._connect()
            return self.value
        self._start_probe()
        return None

    def _connect(self) -> bool:
        """Open (and probe) the backend in this thread; True when it is usable."""
        try:
            value = self.opener(self.url)
        except (MissingDriver, ConfigError) as exc:
            self.permanent_error = str(exc)
            logger.error(f"{self.kind} unavailable, running without it: {exc}")
            return False
        except Exception as exc:
            self._mark_down(exc)
            return False
        try:
            if self.probe is not None:
                self.probe(value)
        except Exception as exc:
            _close(value)
            self._mark_down(exc)
            return False
        if self.down_since is not None:
            logger.success(
                f"{self.kind} at {mask_secrets(self.url)} is back after {time.monotonic() - self.down_since:.1f} s"
            )
        else:
            logger.info(f"{self.kind}: {mask_secrets(self.url)}")
        self.down_since = None
        self.value = value
        return True

    def _start_probe(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._probing or now < self._next_probe:
                return
            self._probing = True
            self._next_probe = now + RETRY_AFTER

        def run() -> None:
            try:
                self._connect()
            finally:
                self._probing = False

        self._probe_thread = threading.Thread(target=run, name=f"skalds-probe-{self.kind}", daemon=True)
        self._probe_thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Wait for a probe in flight (a thread inside a driver call when the process exits can
        crash it), then close the backend."""
        with self._lock:
            self._next_probe = float("inf")  # no new probe
            thread = self._probe_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        value, self.value = self.value, None
        _close(value)

    def _mark_down(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            logger.warning(
                f"{self.kind} at {mask_secrets(self.url)} unreachable ({mask_secrets(str(exc))}); "
                f"workers keep running, retrying every {RETRY_AFTER:.0f} s"
            )

    def failed(self, exc: BaseException) -> None:
        """A call on the open backend failed: treat it as down until a probe succeeds."""
        value, self.value = self.value, None
        self._mark_down(exc)
        if self.local:
            self.value = value  # a local file: the next call simply tries again
            return
        _close(value)
        self._next_probe = time.monotonic() + RETRY_AFTER / 2


def _is_outage(exc: Exception, backend: Guarded) -> bool:
    """Whether ``exc`` means the backend cannot serve (rather than a domain error or a bug)."""
    return isinstance(exc, (BackendUnavailable, MissingDriver, *backend.unavailable_errors))


def _call(slot: _Slot, backend: Guarded, what: str, run: Callable[[], R]) -> R | None:
    """``run()``; on an outage mark ``slot`` down and return None, else let the error through."""
    try:
        return run()
    except Exception as exc:
        if not _is_outage(exc, backend):
            if not isinstance(exc, SkaldsError):
                logger.opt(exception=exc).error(f"{slot.kind}: {what} failed (a bug, not an outage): {exc!r}")
            raise
        logger.debug(f"{slot.kind}: {what} failed: {exc!r}")
        slot.failed(exc)
        return None


def _close(value: Any) -> None:
    try:
        if value is not None and hasattr(value, "close"):
            value.close()
    except Exception:
        pass


class Backends:
    """The agent's store, bus and cache; each may be ``None`` while unavailable."""

    def __init__(self, config: SkaldConfig) -> None:
        self.config = config
        store_url = config.resolved_store_url()
        bus_url = config.resolved_bus_url()
        self._store = _Slot(
            "task store", store_url, lambda u: open_store(u, **store_options(u, config)), lambda s: s.get("-")
        )
        self._bus = _Slot("event bus", bus_url, lambda u: open_bus(u, **bus_options(u, config)), None)
        self._cache = _Slot("state cache", config.resolved_cache_url(), open_cache, lambda c: c.get("-"))
        self._view: StateView | None = None

    @property
    def bus_url(self) -> str:
        return self._bus.url

    def store(self) -> TaskStore | None:
        value: TaskStore | None = self._store.get()
        return value

    def bus(self) -> EventBus | None:
        value: EventBus | None = self._bus.get()
        return value

    def state(self) -> StateView | None:
        cache = self._cache.get()
        if cache is None:
            self._view = None
            return None
        if self._view is None or self._view.cache is not cache:
            self._view = StateView(cache, self.config.redis_key_ttl)
        return self._view

    def with_store(self, what: str, fn: Callable[[TaskStore], R]) -> R | None:
        """Run ``fn(store)``; when the store cannot serve, mark it down and return None.

        Domain errors (a :class:`~skalds.errors.LostWrite`, ...) and bugs propagate to the caller
        and leave the store up (see the module docstring).
        """
        store = self.store()
        if store is None:
            return None
        return _call(self._store, store, what, lambda: fn(store))

    def with_state(self, what: str, fn: Callable[[StateView], R]) -> R | None:
        """:meth:`with_store` for the state cache."""
        view = self.state()
        if view is None:
            return None
        return _call(self._cache, view.cache, what, lambda: fn(view))

    def close(self) -> None:
        for slot in (self._store, self._bus, self._cache):
            slot.close()
