"""``skalds task …`` against a running controller: create, list, update, pause, resume, cancel."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

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


def test_list_paging_sort_search_history_logs_delete_and_bulk(start_controller, start_skald, events, home):
    # Given a controller, a node skald and three long tasks of priorities 1, 9, 5 plus one other
    controller = start_controller()
    start_skald("node-cli")
    for task_id, priority in (("p-1", 1), ("p-2", 9), ("p-3", 5)):
        controller.create(id=task_id, className="Recorder", priority=priority, attachments={"duration": 60})
    controller.create(id="other", className="Recorder", attachments={"duration": 60})
    running = ("p-1", "p-2", "p-3")
    wait_for(lambda: all(controller.status_is(t, "Running") for t in (*running, "other")), timeout=15, what="Running")
    env = base_env(home, SKALDS_CONTROLLER_URL=controller.url, COLUMNS="200")
    store_env = base_env(home, COLUMNS="200")  # no controller: the store directly

    def skalds(*args: str, ok: bool = True, via: dict[str, str] = env, stdin: str = "") -> str:
        result = subprocess.run(
            [sys.executable, "-m", "skalds", "task", *args], env=via, capture_output=True, text=True, input=stdin
        )
        assert (result.returncode == 0) == ok, result.stdout + result.stderr
        return result.stdout + result.stderr

    def ids(*args: str, via: dict[str, str] = env) -> list[str]:
        return [t["id"] for t in json.loads(skalds("list", "--json", *args, via=via))]

    # When tasks are listed by search, sorted by priority (highest first), one page at a time
    # Then through the controller and straight from the store alike, the pages hold the right tasks
    for via in (env, store_env):
        assert ids("--search", "p-", "--sort", "priority", "--desc", via=via) == ["p-2", "p-3", "p-1"]
        assert ids("--search", "p-", "--sort", "priority", "--page", "2", "--page-size", "2", via=via) == ["p-2"]
    table = skalds("list", "--search", "p-", "--status", "running,paused", "--page", "2", "--page-size", "2")
    assert "tasks 3-3 of 3 (page 2 of 2, by created)" in table and "p-3" in table
    assert "unknown sort" in skalds("list", "--sort", "colour", ok=False)

    # When one is paused, it is the most recently changed, and its history and logs show it
    skalds("pause", "p-1")
    assert ids("--search", "p-", "--sort", "updated", "--desc")[0] == "p-1"
    for via in (env, store_env):
        history = skalds("history", "p-1", via=via)
        assert "Created" in history and "Running" in history and "Paused" in history and "node-cli" in history
    wait_for(lambda: "recorder main" in skalds("logs", "p-1"), timeout=10, what="log line through the API")
    assert "recorder main: someValue=0" in skalds("logs", "p-1", via=store_env)
    lines = [json.loads(line) for line in skalds("logs", "p-1", "--json").splitlines()]
    assert lines and all({"seq", "timestamp", "level", "message"} <= set(line) for line in lines)
    assert "no task with id 'nope'" in skalds("history", "nope", via=store_env, ok=False)

    # When the logs of a short task are followed, they end when the task does
    controller.create(id="short", className="Recorder", attachments={"duration": 0.5, "someValue": 7})
    followed = skalds("logs", "short", "--follow", "--interval", "0.2")
    assert "recorder main: someValue=7" in followed and controller.status_is("short", "Finished")

    # When a bulk cancel is previewed, nothing changes
    preview = skalds("cancel", "--search", "p-", "--dry-run")
    assert "cancel (dry run): 3 matched, 3 would be done, 0 skipped" in preview
    assert controller.status_is("p-2", "Running")
    # When a bulk pause by status and search is confirmed with --yes, the running ones are paused
    paused = json.loads(skalds("pause", "--status", "Running", "--search", "p-", "--yes", "--json"))
    assert (paused["matched"], paused["done"]) == (2, 2)
    assert all(controller.status_is(t, "Paused") for t in running) and controller.status_is("other", "Running")
    # When a bulk delete is not confirmed, nothing is deleted; confirmed, they are gone
    refused = skalds("delete", "--search", "p-", ok=False, stdin="n\n")
    assert "Delete 3 task(s)?" in refused and controller.status_is("p-1", "Paused")
    deleted = skalds("delete", "--class", "Recorder", "--status", "paused", stdin="y\n")
    assert "delete: 3 matched, 3 done" in deleted
    assert controller.http.get("/api/tasks/p-2").status_code == 404
    # When one task is deleted, a confirmation is asked (or skipped with --yes)
    assert "task short deleted" in skalds("delete", "short", stdin="y\n")
    assert "deleted" in skalds("delete", "other", "--yes")
    assert controller.http.get("/api/tasks", params={"q": ""}).json()["total"] == 0

    # And the mistakes say what to do
    assert "give a task id, or a filter" in skalds("cancel", ok=False)
    assert "not both" in skalds("pause", "x", "--status", "running", ok=False)
    assert "unknown status 'sleeping'" in skalds("cancel", "--status", "sleeping", ok=False)
    assert "needs a controller" in skalds("delete", "x", "--yes", via=store_env, ok=False)


def test_delayed_start_deadline_and_requirements_from_the_command_line(start_controller, start_skald, home):
    import time

    # Given a controller and a node with one GPU
    controller = start_controller()
    start_skald("node-cli", SKALD_RESOURCES="gpu=1")
    env = base_env(home, SKALDS_CONTROLLER_URL=controller.url, COLUMNS="200")

    def skalds(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "skalds", "task", *args], env=env, capture_output=True, text=True
        )
        assert result.returncode == code, result.stdout + result.stderr
        return result

    def item(*args: str) -> dict[str, Any]:
        return json.loads(skalds(*args, "--json").stdout)

    def now() -> int:
        return int(time.time() * 1000)

    # When a task is created to start in an hour, Then it waits with notBefore an hour ahead
    before = now()
    late = item("create", "--class", "Recorder", "--id", "late", "--not-before", "1h")
    assert late["status"] == "Created" and before + 3_600_000 <= late["notBefore"] <= now() + 3_600_000
    # and an ISO time with an offset, or ms since the epoch, are taken as they are
    assert (
        item("create", "--class", "Recorder", "--id", "iso", "--not-before", "2030-01-01T01:00:00+01:00")["notBefore"]
        == 1_893_456_000_000
    )
    assert item("create", "--class", "Recorder", "--id", "ms", "--not-before", "1893456000000")["notBefore"] == (
        1_893_456_000_000
    )

    # When its deadline is set in 2 hours, at a time, then cleared, Then the task says so each time
    before = now()
    assert before + 7_200_000 <= item("deadline", "late", "--in", "2h")["deadlineDateTime"] <= now() + 7_200_000
    assert item("deadline", "late", "--at", "2031-01-01T00:00:00Z")["deadlineDateTime"] == 1_924_992_000_000
    assert item("deadline", "late", "--clear")["deadlineDateTime"] is None

    # And bad times are refused before anything is sent, saying what is accepted
    assert "give exactly one of --at TIME, --in DURATION" in skalds("deadline", "late", code=2).stderr
    assert "is not a duration such as 90s" in skalds("deadline", "late", "--in", "10 minutes", code=2).stderr
    assert (
        "for 5 seconds from now give 5s" in skalds("create", "--class", "Recorder", "--not-before", "5", code=2).stderr
    )
    assert "'soon' is not a time" in skalds("create", "--class", "Recorder", "--not-before", "soon", code=2).stderr
    # and a deadline in the past gets the API's message
    assert "already in the past" in skalds("deadline", "late", "--at", "1600000000000", code=1).stderr

    # Given a task that needs two GPUs, and so waits
    controller.create(id="big", className="Recorder", attachments={"duration": 300}, requires={"gpu": 2})
    assert item("show", "big")["placement"] == "no online node has gpu ≥ 2 free"
    # When it is told to need one, Then it is dispatched at once
    placed = item("requirements", "big", "--requires", "gpu=1")
    assert placed["executor"] == "node-cli" and placed["placement"] is None and placed["requires"] == {"gpu": 1.0}
    wait_for(lambda: controller.status_is("big", "Running"), timeout=15, what="big Running")
    # When a running task's node selector changes, Then it keeps running and the command warns it was not moved
    moved = skalds("requirements", "big", "--node-selector", "zone=eu-1")
    assert "warning:" in moved.stderr and "it is not moved" in moved.stderr
    shown = item("show", "big")
    assert shown["status"] == "Running" and (shown["requires"], shown["nodeSelector"]) == (
        {"gpu": 1.0},
        {"zone": "eu-1"},
    )
    # and --clear gives both back to the class, and bad values are refused naming the option
    cleared = item("requirements", "big", "--clear")
    assert (cleared["requires"], cleared["nodeSelector"]) == (None, None)
    bad = skalds("requirements", "big", "--requires", "gpu=-1", code=2).stderr
    assert "--requires: amount of 'gpu' must be a number ≥ 0" in bad
    assert "give --requires gpu=1" in skalds("requirements", "big", code=2).stderr
    assert "give it alone" in skalds("requirements", "big", "--clear", "--requires", "gpu=1", code=2).stderr
    # and a task that ended for good gets the API's answer
    skalds("cancel", "big")
    assert "task_ended" in skalds("requirements", "big", "--requires", "gpu=2", code=1).stderr
