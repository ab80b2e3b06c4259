"""Skalds 0.3.8's web dashboard (its React build, unchanged) served by our controller.

``scripts/test`` downloads the 0.3.8 wheel and unpacks its dashboard into ``.cache/dashboard038``
(``SKALDS_DASHBOARD_038`` names another place); the controller serves it at ``/dashboard`` through
``SKALDS_DASHBOARD_DIR``. Without it the tests skip, or fail under ``SKALDS_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.controller.conftest import events, start_controller, start_skald  # noqa: F401 (fixtures)
from tests.support.browser import unavailable
from tests.support.procs import ROOT


@pytest.fixture(scope="session")
def dashboard038() -> Path:
    """The directory of the 0.3.8 dashboard's ``index.html`` and ``assets/``."""
    directory = Path(os.environ.get("SKALDS_DASHBOARD_038") or ROOT / ".cache" / "dashboard038")
    if not (directory / "index.html").is_file():
        unavailable(f"no Skalds 0.3.8 dashboard in {directory}: scripts/test downloads it")
    return directory
