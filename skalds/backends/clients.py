"""``BackendClients``: the store, bus and cache of one configuration, each opened on first use.

Shared by :class:`~skalds.client.SkaldsClient` and the controller's service, so both open, reuse
and close backends the same way. (The skald agent has its own, failure-tolerant holder:
:mod:`skalds.node.backends`.)
"""

from __future__ import annotations

from skalds.backends.bus.base import EventBus
from skalds.backends.cache.state import StateView
from skalds.backends.factory import bus_for, cache_for, store_for
from skalds.backends.store.base import TaskStore
from skalds.config.skald_config import SkaldConfig


class BackendClients:
    config: SkaldConfig

    def __init__(self, config: SkaldConfig) -> None:
        self.config = config
        self._store: TaskStore | None = None
        self._bus: EventBus | None = None
        self._state: StateView | None = None

    @property
    def store(self) -> TaskStore:
        if self._store is None:
            self._store = store_for(self.config)
        return self._store

    @property
    def bus(self) -> EventBus:
        if self._bus is None:
            self._bus = bus_for(self.config)
        return self._bus

    @property
    def state(self) -> StateView:
        if self._state is None:
            self._state = StateView(cache_for(self.config), self.config.redis_key_ttl)
        return self._state

    def close(self) -> None:
        for backend in (self._store, self._bus, self._state.cache if self._state else None):
            if backend is not None:
                backend.close()
        self._store = self._bus = self._state = None
