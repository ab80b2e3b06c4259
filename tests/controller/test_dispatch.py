"""Dispatcher behaviour end to end: dependencies, priorities, retries, deadlines, strategies."""

from __future__ import annotations

import time
from collections import Counter

from skalds.backends.bus.base import Topic
from skalds.backends.factory import bus_for
from skalds.config.skald_config import SkaldConfig
from skalds.model.event import TaskEvent
from skalds.model.task import now_ms
from tests.controller.conftest import online
from tests.support.procs import wait_for

EDGE_YAML = """\
TaskWorkers:
  edge-cam:
    className: Recorder
    attachments:
      label: edge
"""


def test_a_task_waits_for_its_dependencies(start_controller, start_skald, events):
    # Given a node and a task A that runs for a moment
    api = start_controller()
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    api.create(id="A", className="Recorder", attachments={"duration": 1.0})

    # When B is created depending on A
    b = api.create(id="B", className="Recorder", attachments={"duration": 0}, dependencies=["A"])

    # Then B stays Created while A runs, and starts only after A finished
    assert b["status"] == "Created" and b["executor"] is None
    wait_for(lambda: events("A", "main"), what="A runs")
    assert api.status_is("B", "Created")
    wait_for(lambda: api.status_is("A", "Finished"), what="A Finished")
    wait_for(lambda: api.status_is("B", "Finished"), timeout=10, what="B Finished")
    assert events("B", "main")[0]["t"] >= events("A", "after")[0]["t"]


def test_higher_priority_is_dispatched_first(start_controller, start_skald, events, home, tmp_path):
    # Given an edge skald (it advertises Recorder, so tasks validate) and no node skald yet
    api = start_controller()
    (tmp_path / "edge.yml").write_text(EDGE_YAML)
    start_skald("edge-1", "edge", tmp_path / "edge.yml")
    wait_for(lambda: online(api, "edge-1"), what="edge-1 online")
    bus = bus_for(SkaldConfig(skalds_home=str(home)))
    observer = bus.subscribe("test-observer", [Topic.TASK_ASSIGN.value])
    try:
        # When a low then a high priority task are created
        api.create(id="low", className="Recorder", priority=1)
        api.create(id="high", className="Recorder", priority=9)

        # Then neither is dispatched (edges never receive dispatched tasks)
        assert api.status_is("low", "Created") and api.status_is("high", "Created")

        # When a node skald comes online
        start_skald("node-a")

        # Then the high priority task is assigned first, and both run on the node
        order: list[str] = []

        def two_assigned() -> bool:
            for m in observer.poll(0.1):
                order.extend(TaskEvent.model_validate_json(m.value).task_ids)
            return len(order) >= 2

        wait_for(two_assigned, timeout=10, what="two assignments")
        assert order[:2] == ["high", "low"]
        wait_for(lambda: events("high", "main") and events("low", "main"), what="both run")
        assert api.task("high")["executor"] == api.task("low")["executor"] == "node-a"
        assert api.task("edge-cam")["executor"] == "edge-1"
    finally:
        observer.close()
        bus.close()


def test_failures_are_retried_with_backoff_then_fail_for_good(start_controller, start_skald, events):
    # Given a controller with a retry budget of 2 and a node
    api = start_controller(TASK_WORKER_RETRY="2")
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")

    # When a task that always fails is created
    api.create(id="flaky", className="Recorder", attachments={"duration": 0, "fail": True})

    # Then it runs three times (the first run and two retries), waiting 1 s then 2 s before retrying
    wait_for(lambda: len(events("flaky", "main")) == 3, timeout=20, what="three runs")
    wait_for(lambda: api.status_is("flaky", "Failed"), what="Failed")
    errors, mains = events("flaky", "error"), events("flaky", "main")
    assert mains[1]["t"] - errors[0]["t"] >= 0.95
    assert mains[2]["t"] - errors[1]["t"] >= 1.95
    task = api.task("flaky")
    assert task["retries"] == 2 and "boom from main" in task["exception"]

    # And it stays Failed: no retry comes after the budget is spent (the next backoff would be 4 s)
    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline:
        assert len(events("flaky", "main")) == 3 and api.status_is("flaky", "Failed")
        time.sleep(0.25)

    # When an operator retries it
    response = api.set_status("flaky", "Created")

    # Then it runs again with a fresh budget
    assert response.status_code == 200 and response.json()["retries"] == 0
    wait_for(lambda: len(events("flaky", "main")) == 4, what="manual retry runs")


def test_a_passed_deadline_cancels_the_task(start_controller, start_skald, events):
    # Given a running task whose deadline is 1.5 s away
    api = start_controller()
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    api.create(id="late", className="Recorder", deadlineDateTime=now_ms() + 1500)
    wait_for(lambda: events("late", "main"), what="runs")

    # When the deadline passes
    # Then the task is cancelled, says why, and its worker is released
    wait_for(lambda: api.status_is("late", "Cancelled"), timeout=6, what="Cancelled by deadline")
    assert api.task("late")["exception"] == "deadline passed"
    wait_for(lambda: events("late", "release"), what="released")
    wait_for(lambda: api.task("late")["heartbeat"] == -2, what="heartbeat -2")


def test_least_tasks_spreads_tasks_evenly(start_controller, start_skald):
    # Given two node skalds and the default strategy (LEAST_TASKS)
    api = start_controller()
    start_skald("node-a")
    start_skald("node-b")
    wait_for(lambda: online(api, "node-a") and online(api, "node-b"), what="both online")

    # When six long tasks are created
    for i in range(6):
        api.create(id=f"w{i}", className="Recorder")

    # Then each node gets three
    executors = Counter(api.task(f"w{i}")["executor"] for i in range(6))
    assert executors == {"node-a": 3, "node-b": 3}
    wait_for(lambda: all(api.status_is(f"w{i}", "Running") for i in range(6)), what="all Running")
