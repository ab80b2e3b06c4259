"""Fixtures of the backend contract suites, parametrised over every driver.

To run the suites against another driver, add a factory to ``STORE_DRIVERS``, ``BUS_DRIVERS`` or
``CACHE_DRIVERS``. A factory gets the test's ``tmp_path`` and returns a fresh client; called twice
with the same ``tmp_path`` (possibly in another process) it must reach the same data, because the
multi-process tests build one client per process through the ``*_factory`` fixtures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skalds.backends.bus.base import EventBus
from skalds.backends.bus.sqlite import SqliteEventBus
from skalds.backends.cache.base import StateCache
from skalds.backends.cache.sqlite import SqliteStateCache
from skalds.backends.store.base import TaskStore
from skalds.backends.store.sqlite import SqliteTaskStore


def _sqlite_file(tmp_path: Path) -> str:
    return str(tmp_path / "embedded" / "skalds.db")


STORE_DRIVERS: dict[str, Callable[[Path], TaskStore]] = {
    "sqlite": lambda tmp_path: SqliteTaskStore(_sqlite_file(tmp_path)),
}
BUS_DRIVERS: dict[str, Callable[[Path], EventBus]] = {
    "sqlite": lambda tmp_path: SqliteEventBus(_sqlite_file(tmp_path)),
}
CACHE_DRIVERS: dict[str, Callable[[Path], StateCache]] = {
    "sqlite": lambda tmp_path: SqliteStateCache(_sqlite_file(tmp_path)),
}


def _factory_fixture(request: pytest.FixtureRequest, drivers: dict, tmp_path: Path) -> Iterator[Callable]:
    made: list = []

    def make():
        client = drivers[request.param](tmp_path)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(params=list(STORE_DRIVERS))
def task_store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], TaskStore]]:
    yield from _factory_fixture(request, STORE_DRIVERS, tmp_path)


@pytest.fixture(params=list(BUS_DRIVERS))
def event_bus_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], EventBus]]:
    yield from _factory_fixture(request, BUS_DRIVERS, tmp_path)


@pytest.fixture(params=list(CACHE_DRIVERS))
def state_cache_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], StateCache]]:
    yield from _factory_fixture(request, CACHE_DRIVERS, tmp_path)


@pytest.fixture
def task_store(task_store_factory: Callable[[], TaskStore]) -> TaskStore:
    return task_store_factory()


@pytest.fixture
def event_bus(event_bus_factory: Callable[[], EventBus]) -> EventBus:
    return event_bus_factory()


@pytest.fixture
def state_cache(state_cache_factory: Callable[[], StateCache]) -> StateCache:
    return state_cache_factory()


def _wait_until(condition: Callable[[], object], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it is truthy (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    """``wait_until(condition, timeout=5.0)``: True once ``condition()`` holds, False on timeout."""
    return _wait_until
