from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import Proc


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
