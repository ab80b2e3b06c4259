"""Bad input gets a JSON error with a code and a message, never a 500, and harms nothing."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.procs import wait_for


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]
    return error


def test_unknown_things_are_404(api):
    # Given nothing by these names
    # When they are asked for, Then 404 with code not_found
    error_of(api.http.get("/api/tasks/nope"), 404, "not_found")
    error_of(api.http.get("/api/tasks/nope/heartbeat"), 404, "not_found")
    error_of(api.set_status("nope", "Cancelled"), 404, "not_found")
    error_of(api.http.put("/api/tasks/nope/attachments", json={"attachments": {}}), 404, "not_found")
    error_of(api.http.delete("/api/tasks/nope"), 404, "not_found")
    error_of(api.http.get("/api/skalds/nope"), 404, "not_found")
    error_of(api.http.get("/api/skalds/nope/tasks"), 404, "not_found")
    error_of(api.http.get("/api/no/such/route"), 404, "not_found")


def test_create_rejects_invalid_attachments(api):
    # When the class is not advertised by any online skald, Then it is stored to wait, with a warning
    response = api.http.post("/api/tasks", json={"id": "later", "className": "Nope", "attachments": {}})
    assert response.status_code == 201, response.text
    assert "no online skald runs class 'Nope'" in response.json()["warnings"][0]

    # When the attachments break the class's schema in two places
    body = {"id": "bad", "className": "Recorder", "attachments": {"someValue": "x", "duration": -1}}
    error = error_of(api.http.post("/api/tasks", json=body), 422, "invalid_attachments")
    # Then each error names its field, and nothing was stored
    fields = {d["field"] for d in error["details"]}
    assert fields == {"attachments.someValue", "attachments.duration"}
    assert "someValue" in error["message"]
    error_of(api.http.get("/api/tasks/bad"), 404, "not_found")

    # When required fields are missing or have the wrong shape
    error = error_of(api.http.post("/api/tasks", json={"className": "Recorder"}), 422, "invalid_request")
    assert error["details"][0]["field"] == "body.attachments"
    error_of(api.http.post("/api/tasks", json={"className": "Recorder", "attachments": [1]}), 422, "invalid_request")
    error_of(
        api.http.post("/api/tasks", json={"className": "Recorder", "attachments": {}, "priority": 11}),
        422,
        "invalid_request",
    )
    error_of(
        api.http.post("/api/tasks", json={"className": "Recorder", "attachments": {}, "dependencies": ["ghost"]}),
        422,
        "unknown_dependency",
    )
    error_of(
        api.http.post("/api/tasks", json={"id": "a/b", "className": "Recorder", "attachments": {}}),
        422,
        "invalid_request",
    )


def test_a_taken_id_is_409(api):
    # Given a task "dup"
    api.create(id="dup", className="Recorder")
    # When another task is created with the same id
    error = error_of(
        api.http.post("/api/tasks", json={"id": "dup", "className": "Recorder", "attachments": {}}), 409, "task_exists"
    )
    # Then the message names the id
    assert "'dup'" in error["message"]


def test_illegal_transitions_are_409_with_the_state_machine_message(api):
    # Given a task that finished
    api.create(id="done", className="Recorder", attachments={"duration": 0})
    wait_for(lambda: api.status_is("done", "Finished"), what="Finished")

    # When it is paused or cancelled
    error = error_of(api.set_status("done", "Paused"), 409, "illegal_transition")
    # Then the state machine says why, and the task is untouched
    assert "cannot change status from Finished to Paused" in error["message"]
    error_of(api.set_status("done", "Cancelled"), 409, "illegal_transition")
    assert api.status_is("done", "Finished")

    # When a status that only workers set is requested
    error = error_of(api.set_status("done", "Finished"), 422, "invalid_request")
    assert "Cancelled" in error["message"]
    error_of(api.set_status("done", "Bogus"), 422, "invalid_request")


def test_invalid_updates_leave_the_task_as_it_was(api):
    # Given a stored task
    api.create(id="keep", className="Recorder", attachments={"someValue": 3})
    # When an update breaks the schema
    error = error_of(
        api.http.put("/api/tasks/keep/attachments", json={"attachments": {"someValue": "many"}}),
        422,
        "invalid_attachments",
    )
    # Then the field is named and the stored attachments did not change
    assert error["details"] == [{"field": "attachments.someValue", "message": "'many' is not of type 'integer'"}]
    assert api.task("keep")["attachments"] == {"someValue": 3}
    error_of(api.http.put("/api/tasks/keep/attachments", json={"someValue": 4}), 422, "invalid_request")


def test_malformed_requests(api):
    # When the body is not JSON
    response = api.http.post(
        "/api/tasks", content=b'{"className": "Recorder", ', headers={"content-type": "application/json"}
    )
    # Then 422 says it is malformed JSON
    error = error_of(response, 422, "invalid_request")
    assert "malformed JSON" in error["message"]

    # When a page is too large, or a filter names no status
    error = error_of(api.http.get("/api/tasks", params={"pageSize": 1000}), 422, "invalid_request")
    assert error["details"][0]["field"] == "query.pageSize"
    error_of(api.http.get("/api/tasks", params={"page": 0}), 422, "invalid_request")
    error = error_of(api.http.get("/api/tasks", params={"status": "Sleeping"}), 422, "invalid_request")
    assert "Running" in error["message"]

    # When the body is larger than the limit (1 MB)
    big = {"className": "Recorder", "attachments": {"label": "x" * 1_100_000}}
    error_of(api.http.post("/api/tasks", json=big), 413, "payload_too_large")

    # Then the controller still serves normally
    assert api.http.get("/api/system/health").json()["status"] == "ok"


def test_openapi_is_served(api):
    # When the docs are asked for, Then both the page and the schema are there
    docs = api.http.get("/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = api.http.get("/api/openapi.json").json()
    assert {"/api/tasks", "/api/tasks/{task_id}/status", "/api/skalds", "/api/system/health"} <= set(schema["paths"])
