"""Task semantics through the REST API with a real controller and a real node skald: dependencies
that can never finish, updates a worker rejects or that come too late, deadlines that passed, and
the activity of tasks that fail fast."""

from __future__ import annotations

from typing import Any

from skalds.model.task import now_ms
from tests.controller.conftest import Controller, online
from tests.support.procs import wait_for


def _ready(start_controller, start_skald, **env: str) -> Controller:
    api = start_controller(**env)
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    return api


def _is(api: Controller, task_id: str, status: str, **fields: Any) -> dict[str, Any] | None:
    task = api.task(task_id)
    return task if task["status"] == status and all(task[k] == v for k, v in fields.items()) else None


def test_a_task_fails_when_a_dependency_fails_for_good_is_cancelled_or_deleted(start_controller, start_skald):
    # Given a retry budget of 1, a task that fails fast, and two long ones, each with a dependent
    api = _ready(start_controller, start_skald, TASK_WORKER_RETRY="1")
    api.create(id="long", className="Recorder", attachments={"duration": 60})
    api.create(id="gone", className="Recorder", attachments={"duration": 60})
    api.create(id="flaky", className="Recorder", attachments={"duration": 0, "fail": True})
    for dep in ("flaky", "long", "gone"):
        api.create(id=f"on-{dep}", className="Recorder", dependencies=[dep], attachments={"duration": 60})

    # When the fast one fails but has a retry to come, Then its dependent still waits
    wait_for(lambda: _is(api, "flaky", "Failed", retries=0), timeout=15, what="flaky's first failure")
    assert api.task("on-flaky")["status"] == "Created"
    # When it fails again, with no retry left, Then the dependent fails, saying why
    failed = wait_for(lambda: _is(api, "on-flaky", "Failed"), timeout=20, what="on-flaky Failed")
    assert failed["exception"] == "dependency flaky failed"
    assert api.task("flaky")["retries"] == 1
    history = api.http.get("/api/tasks/on-flaky/history").json()["items"]
    assert [(i["status"], i["detail"]) for i in history] == [("Created", None), ("Failed", "dependency flaky failed")]

    # When a dependency is cancelled, and another deleted, Then their dependents fail too
    wait_for(lambda: _is(api, "long", "Running") and _is(api, "gone", "Running"), what="long and gone Running")
    assert api.set_status("long", "Cancelled").status_code == 200
    assert api.http.delete("/api/tasks/gone").status_code == 204
    cancelled = wait_for(lambda: _is(api, "on-long", "Failed"), timeout=10, what="on-long Failed")
    deleted = wait_for(lambda: _is(api, "on-gone", "Failed"), timeout=10, what="on-gone Failed")
    assert cancelled["exception"] == "dependency long was cancelled"
    assert deleted["exception"] == "dependency gone was deleted"
    # And the list shows the same
    listed = {t["id"]: t["exception"] for t in api.http.get("/api/tasks", params={"status": "Failed"}).json()["items"]}
    assert listed["on-long"] == "dependency long was cancelled"


def test_the_store_follows_the_worker_after_a_rejected_update_and_ended_tasks_refuse_updates(
    start_controller, start_skald, events
):
    # Given a running task
    api = _ready(start_controller, start_skald)
    api.create(id="upd", className="Recorder", attachments={"someValue": 1, "label": "a"})
    wait_for(lambda: _is(api, "upd", "Running"), what="upd Running")

    # When an update passes the API's checks but the worker's update handler rejects it
    response = api.http.put("/api/tasks/upd/attachments", json={"attachments": {"label": "refused"}})
    assert response.status_code == 200 and response.json()["attachments"]["label"] == "refused"

    # Then the record goes back to what the worker runs, and the task's error says why
    task = wait_for(
        lambda: _is(api, "upd", "Running", attachments={"someValue": 1, "label": "a"}), what="attachments restored"
    )
    assert "refuses label 'refused'" in task["error"]
    assert not events("upd", "update")

    # When a later update is accepted, Then the record and the worker agree on it
    assert api.http.put("/api/tasks/upd/attachments", json={"attachments": {"someValue": 7}}).status_code == 200
    wait_for(lambda: events("upd", "update"), what="update applied")
    assert events("upd", "update")[-1]["value"] == 7
    assert api.task("upd")["attachments"] == {"someValue": 7, "label": "a"}

    # Given a task that finished
    api.create(id="done", className="Recorder", attachments={"duration": 0, "someValue": 1})
    wait_for(lambda: _is(api, "done", "Finished"), what="done Finished")
    # When its attachments are updated, Then 409 task_ended says to retry it first, and nothing is stored
    refused = api.http.put("/api/tasks/done/attachments", json={"attachments": {"someValue": 2}})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "task_ended" and "retry it" in error["message"]
    assert api.task("done")["attachments"] == {"duration": 0, "someValue": 1}


def test_a_task_past_its_deadline_is_retried_only_after_its_deadline_moves(start_controller, start_skald):
    # Given a long task whose deadline passes while it runs
    api = _ready(start_controller, start_skald)
    api.create(id="late", className="Recorder", attachments={"duration": 60}, deadlineDateTime=now_ms() + 2500)
    wait_for(lambda: _is(api, "late", "Running"), what="late Running")
    wait_for(lambda: _is(api, "late", "Cancelled", exception="deadline passed"), timeout=10, what="deadline enforced")

    # When it is retried, Then 409 deadline_passed says how to change the deadline, and nothing changes
    response = api.set_status("late", "Created")
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "deadline_passed"
    assert "deadline passed" in error["message"] and "PUT /api/tasks/late/deadline" in error["message"]
    assert api.task("late")["status"] == "Cancelled"

    # When a deadline in the past, a malformed body or an unknown task is sent, Then they are refused
    put = api.http.put
    assert put("/api/tasks/late/deadline", json={"deadlineDateTime": now_ms() - 1000}).status_code == 422
    assert put("/api/tasks/late/deadline", json={}).status_code == 422
    assert put("/api/tasks/late/deadline", json={"deadlineDateTime": "soon"}).status_code == 422
    assert put("/api/tasks/nope/deadline", json={"deadlineDateTime": None}).status_code == 404

    # When the deadline moves later, Then the task shows it, and a retry runs it again
    later = now_ms() + 3_600_000
    moved = put("/api/tasks/late/deadline", json={"deadlineDateTime": later})
    assert moved.status_code == 200 and moved.json()["deadlineDateTime"] == later
    assert api.set_status("late", "Created").status_code == 200
    wait_for(lambda: _is(api, "late", "Running"), what="late Running again")
    # And clearing the deadline works the same way
    assert put("/api/tasks/late/deadline", json={"deadlineDateTime": None}).json()["deadlineDateTime"] is None


def test_activity_has_every_retry_of_a_task_that_fails_fast(start_controller, start_skald):
    # Given a controller whose monitor looks rarely, and a retry budget of 2
    api = _ready(start_controller, start_skald, TASK_WORKER_RETRY="2", MONITOR_TASK_INTERVAL="5")
    # When a task fails within milliseconds each time it runs (each retry starts and ends between two looks)
    api.create(id="fast", className="Recorder", attachments={"duration": 0, "fail": True})
    wait_for(lambda: _is(api, "fast", "Failed", retries=2), timeout=30, what="fast failed for good")

    # Then the activity log has every run of it, as its history has
    def kinds() -> list[str]:
        items = api.http.get("/api/system/activity", params={"limit": 100}).json()["items"]
        return [i["kind"] for i in reversed(items) if i["taskId"] == "fast"]

    run = ["assigned", "running", "failed"]
    expected = ["created", *run, "retried", *run, "retried", *run]
    wait_for(lambda: kinds() == expected, timeout=5, what=f"{expected} in the activity (have {kinds()})")
    history = api.http.get("/api/tasks/fast/history").json()["items"]
    assert len(history) == len(expected)
