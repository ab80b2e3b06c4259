from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import launch_browser, pages
from tests.support.procs import Proc
from tests.support.servers import PostgresServer, RedisServer, TansuServer, running


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
    with running("redis") as server:
        yield server


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[RedisServer]:
    with running("valkey") as server:
        yield server


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[TansuServer]:
    with running("kafka") as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running("postgres") as server:
        yield server


@pytest.fixture(scope="session")
def mongo_uri() -> str:
    uri = os.environ.get("SKALDS_TEST_MONGO_URI")
    if not uri:
        pytest.skip("SKALDS_TEST_MONGO_URI is not set: the MongoDB tests need a real MongoDB server")
    return uri


# ---- a real browser (tests/support/browser.py) ------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, once per test module. Not once per session: Playwright's sync API keeps
    an event loop running in this thread while it is open, and later tests that call
    ``asyncio.run`` would fail."""
    yield from launch_browser()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """``new_page(viewport=DESKTOP)``: a page in a fresh context; uncaught page errors fail the test."""
    yield from pages(browser)
