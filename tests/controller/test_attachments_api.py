"""The API checks attachments with the worker's own model semantics (real skald, README's model),
and stores a task of a class no online skald runs yet, to wait for one."""

from __future__ import annotations

from tests.controller.conftest import online
from tests.controller.test_errors import error_of
from tests.support.procs import wait_for


def test_names_and_aliases_are_taken_as_the_worker_takes_them(start_controller, start_skald, events):
    # Given a skald running the README's model (rtspUrl / rtsp_url, fixFrame / fix_frame)
    api = start_controller()
    start_skald("node-a", SKALDS_TEST_CAMERA="1")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    # When a task gives the fields by name
    created = api.create(id="cam", className="Camera", attachments={"rtsp_url": "rtsp://cam/1", "fix_frame": 3})
    # Then it is stored by alias (what forms and updates read) and the worker runs with those values
    assert created["attachments"] == {"rtspUrl": "rtsp://cam/1", "fixFrame": 3} and created["warnings"] == []
    wait_for(lambda: events("cam", "main"), what="main")
    assert events("cam", "main")[0]["rtsp_url"] == "rtsp://cam/1" and events("cam", "main")[0]["fix_frame"] == 3
    # When an update gives a field by name, Then it replaces the stored value and reaches the worker
    response = api.http.put("/api/tasks/cam/attachments", json={"attachments": {"fix_frame": 5}})
    assert response.status_code == 200, response.text
    assert response.json()["attachments"] == {"rtspUrl": "rtsp://cam/1", "fixFrame": 5}
    wait_for(lambda: [e["fix_frame"] for e in events("cam", "update")] == [5], what="update 5")

    # When a key is misspelled (the model would drop it silently)
    body = {
        "id": "typo",
        "className": "Camera",
        "attachments": {"rtspUrl": "rtsp://cam/2", "fixFrame": 1, "fixframe": 3},
    }
    error = error_of(api.http.post("/api/tasks", json=body), 422, "invalid_attachments")
    # Then 422 names the key and the close match, and nothing is stored
    assert error["details"] == [
        {"field": "attachments.fixframe", "message": "unknown attachment 'fixframe' (did you mean 'fixFrame'?)"}
    ]
    error_of(api.http.get("/api/tasks/typo"), 404, "not_found")
    # And an update with a misspelled key changes nothing
    response = api.http.put("/api/tasks/cam/attachments", json={"attachments": {"fixframe": 9}})
    error_of(response, 422, "invalid_attachments")
    assert api.task("cam")["attachments"] == {"rtspUrl": "rtsp://cam/1", "fixFrame": 5}

    # And a model with extra="allow" keeps keys it does not declare
    api.create(id="loose", className="Loose", attachments={"fix_frame": 2, "anything": [1]})
    wait_for(lambda: events("loose", "main"), what="loose main")
    assert events("loose", "main")[0]["extra"] == {"anything": [1]}


def test_a_class_no_online_skald_runs_waits_for_one(start_controller, start_skald, events):
    # Given a controller and a skald without the class
    api = start_controller()
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    # When tasks of a class no online skald runs are created, alone and in a batch
    created = api.create(id="early", className="Camera", attachments={"rtsp_url": "rtsp://cam/1", "fix_frame": 2})
    response = api.http.post(
        "/api/tasks/batch",
        json={
            "tasks": [
                {"id": f"b{n}", "className": "Camera", "attachments": {"rtspUrl": "x", "fixFrame": 1}} for n in range(3)
            ]
        },
    )
    # Then they are stored Created, and the answers warn that they wait and were not validated
    assert created["status"] == "Created" and created["executor"] is None
    assert created["warnings"] == [
        "no online skald runs class 'Camera'; the task waits until one does, and its attachments could not be validated"
    ]
    assert response.status_code == 201, response.text
    assert response.json()["warnings"] == [
        "tasks[0] and 2 more: no online skald runs class 'Camera'; the task waits until one does, "
        "and its attachments could not be validated"
    ]
    # When a waiting task's attachments are updated, Then they are stored and the answer warns they were not checked
    updated = api.http.put("/api/tasks/early/attachments", json={"attachments": {"rtsp_url": "rtsp://cam/2"}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["attachments"] == {"rtsp_url": "rtsp://cam/2", "fix_frame": 2}
    assert updated.json()["warnings"] == [
        "no online skald runs class 'Camera'; the new attachments were stored without being validated "
        "(a worker checks them when it starts the task)"
    ]
    # When a skald with the class comes, Then it runs them (field names as the worker takes them)
    start_skald("node-b", SKALDS_TEST_CAMERA="1")
    wait_for(lambda: events("early", "main"), timeout=20, what="early runs on node-b")
    assert events("early", "main")[0]["fix_frame"] == 2
    wait_for(lambda: all(events(f"b{n}", "main") for n in range(3)), timeout=20, what="batch runs")
    # And now that the class is known, invalid attachments are refused again
    body = {"className": "Camera", "attachments": {"rtspUrl": "x", "fixFrame": "many"}}
    error_of(api.http.post("/api/tasks", json=body), 422, "invalid_attachments")
