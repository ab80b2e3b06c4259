"""One task's whole life through the REST API, against a real controller and a real node skald."""

from __future__ import annotations

from tests.controller.conftest import online
from tests.support.procs import alive, wait_for


def test_create_run_update_pause_resume_cancel_delete(start_controller, start_skald, events):
    # Given a controller (DISPATCHER mode) and one node skald
    api = start_controller()
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")

    # When a task is created through the API
    response = api.http.post(
        "/api/tasks", json={"id": "life", "className": "Recorder", "attachments": {"someValue": 1}}
    )

    # Then it is stored, dispatched at once to the node, and its worker runs
    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/api/tasks/life"
    created = response.json()
    assert created["type"] == "Recorder" and created["source"] == "API" and created["executor"] == "node-a"
    assert created["status"] in ("Assigning", "Running")
    first = wait_for(lambda: events("life", "main"), what="main of life")[0]
    wait_for(lambda: api.status_is("life", "Running"), what="Running")

    # When its attachments are updated
    response = api.http.put("/api/tasks/life/attachments", json={"attachments": {"someValue": 7}})

    # Then the stored attachments are merged and the worker's update handler gets a typed model
    assert response.status_code == 200, response.text
    assert response.json()["attachments"] == {"someValue": 7}
    update = wait_for(lambda: events("life", "update"), what="update handled")[0]
    assert update["value"] == 7 and update["typed"] == "RecorderModel"

    # When it is paused
    response = api.set_status("life", "Paused")

    # Then the worker is released and gone, and the task stays Paused (out of dispatch)
    assert response.status_code == 200 and response.json()["status"] == "Paused"
    wait_for(lambda: events("life", "release"), what="release after pause")
    wait_for(lambda: not alive(first["pid"]), what="worker gone")
    wait_for(lambda: api.task("life")["heartbeat"] == -2, what="heartbeat -2")
    assert api.status_is("life", "Paused")

    # When it is resumed ("Running" asks for it to run again)
    response = api.set_status("life", "Running")

    # Then it is dispatched again and runs with the stored (updated) attachments
    assert response.status_code == 200, response.text
    second = wait_for(lambda: events("life", "main")[1:], what="second main")[0]
    assert second["pid"] != first["pid"] and second["value"] == 7
    wait_for(lambda: api.status_is("life", "Running"), what="Running again")
    # and the controller samples its heartbeat while it runs
    live = wait_for(
        lambda: (b := api.http.get("/api/tasks/life/heartbeat").json())["heartbeatHistory"] and b, what="samples"
    )
    assert live["isAlive"] is True and 0 <= live["heartbeat"] < 200

    # When it is cancelled
    response = api.set_status("life", "Cancelled")

    # Then its worker is released and the task is Cancelled for good
    assert response.status_code == 200 and response.json()["status"] == "Cancelled"
    wait_for(lambda: len(events("life", "release")) == 2, what="second release")
    wait_for(lambda: not alive(second["pid"]), what="second worker gone")
    beat = wait_for(lambda: (b := api.http.get("/api/tasks/life/heartbeat").json())["heartbeat"] == -2 and b, what="-2")
    assert beat["taskId"] == "life" and beat["status"] == "Cancelled" and beat["isAlive"] is False
    assert all(set(s) == {"timestamp", "heartbeat"} for s in beat["heartbeatHistory"])

    # When it is deleted
    assert api.http.delete("/api/tasks/life").status_code == 204

    # Then it is gone
    assert api.http.get("/api/tasks/life").status_code == 404


def test_skalds_listing_and_summary(start_controller, start_skald):
    # Given a node skald with one running task
    api = start_controller()
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    api.create(id="s1", className="Recorder")
    wait_for(lambda: api.status_is("s1", "Running"), what="Running")

    # When the skalds are listed
    skalds = api.http.get("/api/skalds").json()

    # Then the node is online, with its classes and its task
    assert skalds["total"] == 1
    item = skalds["items"][0]
    assert item["id"] == "node-a" and item["type"] == "node" and item["status"] == "online"
    assert {"Recorder", "Stubborn"} <= set(item["supportedTasks"])
    assert isinstance(item["lastHeartbeat"], int) and isinstance(item["heartbeat"], int)
    wait_for(lambda: api.http.get("/api/skalds/node-a").json()["currentTasks"] == ["s1"], what="currentTasks")
    assert api.http.get("/api/skalds/node-a").json()["taskCount"] == 1
    assert api.http.get("/api/skalds/node-a/status").json()["status"] == "online"
    tasks = api.http.get("/api/skalds/node-a/tasks").json()
    assert [t["id"] for t in tasks["items"]] == ["s1"] and tasks["total"] == 1

    # And the task list filters, the classes and the summary agree
    page = api.http.get("/api/tasks", params={"status": "Running", "type": "Recorder", "executor": "node-a"}).json()
    assert page["total"] == 1 and page["page"] == 1 and page["pageSize"] == 20
    assert api.http.get("/api/tasks", params={"status": "Finished"}).json()["total"] == 0
    classes = api.http.get("/api/tasks/classes").json()
    recorder = next(c for c in classes["items"] if c["className"] == "Recorder")
    assert recorder["skalds"] == ["node-a"] and "someValue" in recorder["schema"]["properties"]
    summary = api.http.get("/api/system/dashboard/summary").json()
    assert summary["totalSkalds"] == summary["onlineSkalds"] == summary["nodeSkalds"] == 1
    assert summary["totalTasks"] == summary["runningTasks"] == 1 and summary["edgeSkalds"] == 0
    status = api.http.get("/api/system/status").json()
    assert status["mode"] == "DISPATCHER" and status["dispatcher"]["strategy"] == "LEAST_TASKS"


def test_max_run_time_through_the_api(start_controller, start_skald, events):
    api = start_controller()
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    # Zero or a negative number is refused, naming the field, and nothing is stored
    before = api.http.get("/api/tasks").json()["total"]
    bad = api.http.post("/api/tasks", json={"className": "Recorder", "attachments": {}, "maxRunTime": 0})
    assert bad.status_code == 422 and "maxRunTime" in bad.text
    assert api.http.get("/api/tasks").json()["total"] == before
    # A task given 0.5 s that would run 30 s is stored with it, stopped, and fails saying why
    body = {"id": "capped", "className": "Recorder", "attachments": {"duration": 30}, "maxRunTime": 0.5}
    created = api.http.post("/api/tasks", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["maxRunTime"] == 0.5
    wait_for(lambda: events("capped", "release"), timeout=10, what="stopped")
    failed = wait_for(lambda: next((t for t in [api.task("capped")] if t["status"] == "Failed"), None), what="Failed")
    assert failed["exception"] == "stopped after its max run time of 0.5 s"
