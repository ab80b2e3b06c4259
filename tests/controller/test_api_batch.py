"""``POST /api/tasks/batch``: many tasks in one request, all or none (real controller, real skald)."""

from __future__ import annotations

from tests.controller.conftest import online
from tests.support.procs import wait_for


def test_a_batch_is_created_and_dispatched_all_or_none(start_controller, start_skald, events):
    # Given a controller (DISPATCHER mode) and a node skald
    api = start_controller()
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")

    # When 20 short tasks are created in one request, the last waiting for the first
    tasks = [
        {"id": f"b{i}", "className": "Recorder", "attachments": {"duration": 0, "someValue": i}} for i in range(19)
    ]
    tasks.append({"id": "b19", "className": "Recorder", "attachments": {"duration": 0}, "dependencies": ["b0"]})
    response = api.http.post("/api/tasks/batch", json={"tasks": tasks})

    # Then all are stored in order and dispatched at once, and every one runs (b19 after b0)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["total"] == 20 and [t["id"] for t in body["items"]] == [f"b{i}" for i in range(20)]
    assert all(t["executor"] == "node-a" for t in body["items"][:19])
    wait_for(lambda: all(api.status_is(f"b{i}", "Finished") for i in range(20)), timeout=30, what="all Finished")
    assert [e["value"] for e in events("b7", "main")] == [7]
    assert events("b19", "main")[0]["t"] >= events("b0", "main")[0]["t"]

    # When a batch has one invalid task (the fourth)
    bad = [{"id": f"c{i}", "className": "Recorder", "attachments": {"someValue": i}} for i in range(5)]
    bad[3]["attachments"] = {"someValue": "three"}
    response = api.http.post("/api/tasks/batch", json={"tasks": bad})
    # Then nothing is stored and the error names that task and its field
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_attachments" and error["message"].startswith("tasks[3]: ")
    assert [d["field"] for d in error["details"]] == ["tasks[3].attachments.someValue"]
    assert api.http.get("/api/tasks", params={"q": "c"}).json()["total"] == 0

    # And the same id twice, an id already taken, an unknown dependency, an empty or too large batch
    twice = api.http.post("/api/tasks/batch", json={"tasks": [bad[0], bad[0]]})
    assert twice.status_code == 422 and twice.json()["error"]["details"][0]["field"] == "tasks[1].id"
    taken = api.http.post("/api/tasks/batch", json={"tasks": [bad[0], {**bad[1], "id": "b1"}]})
    assert taken.status_code == 409 and "'b1'" in taken.json()["error"]["message"]
    unknown = api.http.post(
        "/api/tasks/batch", json={"tasks": [bad[0], {**bad[1], "dependencies": ["c2"]}, {**bad[2]}]}
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["message"].startswith("tasks[1]: ")
    assert api.http.post("/api/tasks/batch", json={"tasks": []}).status_code == 422
    many = [{"className": "Recorder", "attachments": {}}] * 1001
    assert api.http.post("/api/tasks/batch", json={"tasks": many}).status_code == 422
    assert api.http.get("/api/tasks", params={"q": "c"}).json()["total"] == 0
