"""Property-based fuzzing of the whole REST API from its own OpenAPI document: never a 5xx.

Schemathesis generates requests from ``/api/openapi.json`` (examples, boundary values, random
data, stateful sequences) and runs them against a real controller. Only ``not_a_server_error`` is
checked: bad input must get a 4xx with the error shape, whatever it is. The SSE streams are left
out (they never end, by design).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("schemathesis")
CLI = (
    shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    or shutil.which("schemathesis")
    or "schemathesis"
)


@pytest.mark.slow
def test_no_server_errors_on_generated_requests(start_controller, tmp_path):
    # Given a controller on loopback (auth off)
    api = start_controller()

    # When schemathesis throws generated requests at every operation of its schema
    run = subprocess.run(
        [
            CLI,
            "run",
            f"{api.url}/api/openapi.json",
            "--checks",
            "not_a_server_error",
            "--exclude-path-regex",
            "^/api/events/",
            "--max-examples",
            "30",
            "--request-timeout",
            "10",
            "--seed",
            "20260101",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )

    # Then nothing answered with a server error, and the controller logged no traceback
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Traceback" not in api.proc.output()
