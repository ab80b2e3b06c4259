"""Backends as the agent sees them: opened lazily, and never fatal when they are down.

Edge autonomy (DESIGN principle 6): a backend that cannot be opened or fails a call is marked
down for a while and retried later; callers get ``None`` and carry on. Workers keep running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from skalds.backends.bus.base import EventBus
from skalds.backends.cache.state import StateView
from skalds.backends.factory import open_bus, open_cache, open_store
from skalds.backends.store.base import TaskStore
from skalds.config.skald_config import SkaldConfig
from skalds.errors import ConfigError, MissingDriver, StoreError
from skalds.utils.logging import logger, mask_secrets

R = TypeVar("R")
RETRY_AFTER = 5.0


class _Slot:
    def __init__(self, kind: str, url: str, opener: Callable[[str], Any]) -> None:
        self.kind = kind
        self.url = url
        self.opener = opener
        self.value: Any = None
        self.retry_at = 0.0
        self.permanent_error: str | None = None
        self.warned = False

    def get(self) -> Any:
        if self.value is not None or self.permanent_error is not None:
            return self.value
        now = time.monotonic()
        if now < self.retry_at:
            return None
        try:
            self.value = self.opener(self.url)
        except (MissingDriver, ConfigError) as exc:
            self.permanent_error = str(exc)
            logger.error(f"{self.kind} unavailable, running without it: {exc}")
            return None
        except Exception as exc:
            self.retry_at = now + RETRY_AFTER
            if not self.warned:
                logger.warning(
                    f"{self.kind} at {mask_secrets(self.url)} unreachable ({exc}); retrying every {RETRY_AFTER:.0f} s"
                )
                self.warned = True
            return None
        if self.warned:
            logger.success(f"{self.kind} at {mask_secrets(self.url)} is back")
        self.warned = False
        return self.value

    def failed(self, exc: BaseException) -> None:
        if not self.warned:
            logger.warning(f"{self.kind} call failed ({exc!r}); will retry")
            self.warned = True
        self.retry_at = time.monotonic() + 1.0
        value, self.value = self.value, None
        try:
            if value is not None and hasattr(value, "close"):
                value.close()
        except Exception:
            pass


class Backends:
    """The agent's store, bus and cache; each may be ``None`` while unavailable."""

    def __init__(self, config: SkaldConfig) -> None:
        self.config = config
        self._store = _Slot("task store", config.resolved_store_url(), open_store)
        self._bus = _Slot("event bus", config.resolved_bus_url(), open_bus)
        self._cache = _Slot("state cache", config.resolved_cache_url(), open_cache)
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
        """Run ``fn(store)``; on a backend failure log, mark the store down, return None.

        Domain errors (Conflict, IllegalTransition, TaskNotFound) propagate to the caller.
        """
        store = self.store()
        if store is None:
            return None
        try:
            return fn(store)
        except StoreError:
            raise
        except Exception as exc:
            if _is_domain_error(exc):
                raise
            logger.debug(f"store: {what} failed: {exc!r}")
            self._store.failed(exc)
            return None

    def with_state(self, what: str, fn: Callable[[StateView], R]) -> R | None:
        view = self.state()
        if view is None:
            return None
        try:
            return fn(view)
        except Exception as exc:
            logger.debug(f"cache: {what} failed: {exc!r}")
            self._cache.failed(exc)
            return None

    def close(self) -> None:
        for slot in (self._store, self._bus, self._cache):
            value, slot.value = slot.value, None
            if value is not None:
                try:
                    value.close()
                except Exception:
                    pass


def _is_domain_error(exc: BaseException) -> bool:
    from skalds.errors import SkaldsError

    return isinstance(exc, SkaldsError) and not isinstance(exc, MissingDriver)
