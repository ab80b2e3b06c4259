"""Fixtures of the backend contract suites, parametrised over every driver.

To run the suites against another driver, add a factory to ``STORE_DRIVERS``, ``BUS_DRIVERS`` or
``CACHE_DRIVERS``. A factory gets the test's ``tmp_path`` and returns a fresh client; called twice
with the same ``tmp_path`` (possibly in another process) it must reach the same data, because the
multi-process tests build one client per process through the ``*_factory`` fixtures.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from skalds.backends.bus.base import EventBus
from skalds.backends.bus.sqlite import SqliteEventBus
from skalds.backends.cache.base import StateCache
from skalds.backends.cache.sqlite import SqliteStateCache
from skalds.backends.store.base import TaskStore
from skalds.backends.store.sqlite import SqliteTaskStore


def _sqlite_file(tmp_path: Path) -> str:
    return str(tmp_path / "embedded" / "skalds.db")


class Driver(NamedTuple):
    """How to build one driver's client for a test.

    ``server`` names a session fixture (tests/conftest.py) giving the running server, or None.
    ``build(server, tmp_path, ns)`` returns a fresh client; ``ns`` is unique per test and isolates
    its data (a Kafka topic prefix, a PostgreSQL schema, a MongoDB database, a flushed Redis db).
    Called twice in one test (possibly in another process), it must reach the same data.
    """

    server: str | None
    build: Callable[[Any, Path, str], Any]
    prepare: Callable[[Any, str], None] | None = None


def _redis_flush(server: Any, ns: str) -> None:
    import redis

    redis.Redis.from_url(server.url).flushdb()


def _pg_schema(server: Any, ns: str) -> None:
    import psycopg

    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{ns}"')


def _pg_url(server: Any, ns: str) -> str:
    return f"{server.url}?options=-csearch_path%3D{ns}"


def _redis_cache(server: Any, tmp_path: Path, ns: str) -> StateCache:
    from skalds.backends.cache.redis import RedisStateCache

    return RedisStateCache(server.url)


def _kafka_bus(server: Any, tmp_path: Path, ns: str) -> EventBus:
    from skalds.backends.bus.kafka import KafkaEventBus

    return KafkaEventBus(f"{server.url}?prefix={ns}.&session_timeout_ms=2000")


def _pg_store(server: Any, tmp_path: Path, ns: str) -> TaskStore:
    from skalds.backends.store.postgres import PostgresTaskStore

    return PostgresTaskStore(_pg_url(server, ns))


def _mongo_store(server: Any, tmp_path: Path, ns: str) -> TaskStore:
    from skalds.backends.store.mongo import MongoTaskStore

    return MongoTaskStore(server, db_name=ns)


STORE_DRIVERS: dict[str, Driver] = {
    "sqlite": Driver(None, lambda server, tmp_path, ns: SqliteTaskStore(_sqlite_file(tmp_path))),
    "postgres": Driver("postgres_server", _pg_store, _pg_schema),
    "mongo": Driver("mongo_uri", _mongo_store),
}
BUS_DRIVERS: dict[str, Driver] = {
    "sqlite": Driver(None, lambda server, tmp_path, ns: SqliteEventBus(_sqlite_file(tmp_path))),
    "kafka": Driver("kafka_server", _kafka_bus),
}
CACHE_DRIVERS: dict[str, Driver] = {
    "sqlite": Driver(None, lambda server, tmp_path, ns: SqliteStateCache(_sqlite_file(tmp_path))),
    "redis-7.0": Driver("redis_server", _redis_cache, _redis_flush),
    "valkey-9": Driver("valkey_server", _redis_cache, _redis_flush),
}


def _factory_fixture(request: pytest.FixtureRequest, drivers: dict[str, Driver], tmp_path: Path) -> Iterator[Callable]:
    driver = drivers[request.param]
    server = request.getfixturevalue(driver.server) if driver.server else None
    ns = "t" + uuid.uuid4().hex[:12]
    if driver.prepare is not None:
        driver.prepare(server, ns)
    made: list = []

    def make():
        client = driver.build(server, tmp_path, ns)
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
