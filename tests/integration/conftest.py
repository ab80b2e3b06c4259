"""Fixtures shared by the integration tests (real skald processes on an embedded SKALDS_HOME)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skalds.backends.cache.state import StateView
from skalds.backends.factory import open_cache
from skalds.client import SkaldsClient
from skalds.config.skald_config import SkaldConfig


@pytest.fixture
def client(home: Path) -> Iterator[SkaldsClient]:
    """A client of the test's embedded backend."""
    c = SkaldsClient(SkaldConfig(skalds_home=str(home)))
    yield c
    c.close()


@pytest.fixture
def view(home: Path) -> Iterator[StateView]:
    """The state cache of the test's embedded backend, read as the controller reads it."""
    cache = open_cache(SkaldConfig(skalds_home=str(home)).embedded_url)
    yield StateView(cache, 5.0)
    cache.close()
