"""The agent's backends: only a backend failing is an outage; a caller's bug or a domain error
propagates and leaves the backend up."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from skalds.config.skald_config import SkaldConfig
from skalds.errors import BackendUnavailable, LostWrite, TaskNotFound
from skalds.node.backends import Backends
from skalds.utils.logging import logger


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    b = Backends(SkaldConfig(skalds_home=str(tmp_path)))  # the embedded SQLite backends
    yield b
    b.close()


@pytest.fixture
def errors() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="ERROR", format="{message}")
    yield lines
    logger.remove(sink)


def test_a_callers_bug_propagates_and_leaves_the_store_up(backends: Backends, errors: list[str]) -> None:
    # When the function given to with_store has a bug
    with pytest.raises(ZeroDivisionError):
        backends.with_store("count", lambda s: 1 // 0)
    # Then it is logged at ERROR with its traceback, and the store is not taken for down
    assert len(errors) == 1 and "a bug, not an outage" in errors[0] and "ZeroDivisionError" in errors[0]
    assert backends._store.down_since is None
    assert backends.with_store("count", lambda s: s.counts()) == {}


def test_a_domain_error_propagates_quietly(backends: Backends, errors: list[str]) -> None:
    # When a fenced write loses (here: the task is gone), Then the caller gets it to decide
    with pytest.raises(LostWrite) as lost:
        backends.with_store("status", lambda s: s.modify("nope", lambda t: None))
    assert isinstance(lost.value, TaskNotFound)
    assert errors == [] and backends._store.down_since is None


def test_backend_unavailable_marks_the_store_down(backends: Backends, errors: list[str]) -> None:
    def unavailable(store: object) -> None:
        raise BackendUnavailable("the task store cannot be used right now", backend="task store")

    # When the store cannot serve, Then the call answers None and the store is down until it works again
    assert backends.with_store("count", unavailable) is None
    assert backends._store.down_since is not None and errors == []


def test_cache_driver_errors_are_an_outage_and_bugs_are_not(backends: Backends, errors: list[str]) -> None:
    def driver_error(view: object) -> None:
        raise sqlite3.OperationalError("database is locked")  # the driver's own error, not yet named

    with pytest.raises(KeyError):
        backends.with_state("read", lambda v: {}["missing"])
    assert backends._cache.down_since is None and len(errors) == 1
    assert backends.with_state("read", driver_error) is None
    assert backends._cache.down_since is not None and len(errors) == 1
