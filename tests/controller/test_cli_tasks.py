"""``skalds task …`` against a running controller: create, list, update, pause, resume, cancel."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.procs import base_env, wait_for


def test_task_commands_through_the_controller(start_controller, start_skald, events, home):
    # Given a controller with a token and a node skald
    controller = start_controller(SKALDS_API_TOKEN="cli-token-123")
    start_skald("node-cli")
    env = base_env(home, SKALDS_CONTROLLER_URL=controller.url, SKALDS_API_TOKEN="cli-token-123", COLUMNS="200")

    def skalds(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "skalds", "task", *args], env=env, capture_output=True, text=True
        )
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    def status() -> str:
        return json.loads(skalds("show", "cli-1", "--json").stdout)["status"]

    # When a task is created from the command line, it is dispatched and runs
    skalds("create", "--class", "Recorder", "--id", "cli-1", "--attachments", '{"someValue": 1}')
    wait_for(lambda: events("cli-1", "main"), timeout=15, what="main")
    wait_for(lambda: status() == "Running", timeout=10, what="Running")
    listed = skalds("list").stdout
    assert "cli-1" in listed and "Running" in listed and "node-cli" in listed

    # When its attachments are updated, the worker's handler gets them
    skalds("update", "cli-1", "--attachments", '{"someValue": 5}')
    wait_for(lambda: [e["value"] for e in events("cli-1", "update")] == [5], timeout=10, what="update")

    # When it is paused and resumed, its worker is released and runs again
    skalds("pause", "cli-1")
    wait_for(lambda: events("cli-1", "release"), timeout=10, what="release on pause")
    assert status() == "Paused"
    skalds("resume", "cli-1")
    wait_for(lambda: len(events("cli-1", "main")) == 2, timeout=15, what="runs again")

    # When it is cancelled, it ends Cancelled
    skalds("cancel", "cli-1")
    wait_for(lambda: status() == "Cancelled", timeout=10, what="Cancelled")

    # And bad input gets the API's message, wrong tokens are refused
    bad = skalds("create", "--class", "Recorder", "--attachments", '{"someValue": "x"}', ok=False)
    assert bad.returncode == 1 and "invalid_attachments" in bad.stderr and "someValue" in bad.stderr
    env["SKALDS_API_TOKEN"] = "wrong"
    refused = skalds("list", ok=False)
    assert refused.returncode == 1 and "unauthorized" in refused.stderr
