"""Hostile task input: odd ids, NUL characters, absurd nesting. Always a 422 that says what to fix,
never a 500, and nothing stored."""

from __future__ import annotations

import uuid
from typing import Any

from skalds.controller.schemas import MAX_ATTACHMENT_DEPTH
from tests.controller.conftest import Controller, online
from tests.controller.test_errors import error_of
from tests.support.procs import wait_for


def nested(depth: int) -> dict[str, Any]:
    """Attachments whose objects nest ``depth`` levels (the attachments object is level 1)."""
    value: Any = 1
    for _ in range(depth - 1):
        value = {"d": value}
    # "returns" takes any JSON in the test workers' model (an undeclared key would be refused)
    return {"duration": 0, **({"returns": value} if depth > 1 else {})}


def nothing_stored(api: Controller) -> None:
    assert api.http.get("/api/tasks").json()["total"] == 0


BAD_IDS = ["é", "tâche-1", "a\x00b", "a b", "a/b", "a?b", "a%2Fb", "x" * 129, "", "\u202etxt.exe", "a\nb"]


def test_ids_outside_the_documented_characters_are_422(api):
    for bad in BAD_IDS:
        # When a task is created with an id outside [A-Za-z0-9._:@-]{1,128}
        response = api.http.post("/api/tasks", json={"id": bad, "className": "Recorder", "attachments": {}})
        # Then 422 naming the id field, and nothing is stored
        error = error_of(response, 422, "invalid_request")
        assert error["details"][0]["field"] == "body.id", error
    nothing_stored(api)
    # And a batch with one bad id stores none of its tasks
    tasks = [{"id": "fine", "className": "Recorder", "attachments": {}}, {"id": "bäd", "className": "Recorder"}]
    tasks[1]["attachments"] = {}
    error = error_of(api.http.post("/api/tasks/batch", json={"tasks": tasks}), 422, "invalid_request")
    assert error["details"][0]["field"] == "body.tasks.1.id"
    nothing_stored(api)

    # And ids inside the documented characters work, the Location header included
    for good in ("t1", "job:42", "report@2024-01", "a.b_c-D", "x" * 128):
        response = api.http.post("/api/tasks", json={"id": good, "className": "Recorder", "attachments": {}})
        assert response.status_code == 201, response.text
        assert response.headers["location"] == f"/api/tasks/{good}"


def test_nul_in_any_string_is_422(api):
    for field in ("name", "description", "source", "className"):
        # When a text field carries a NUL, Then 422 naming it
        body = {"id": "t", "className": "Recorder", "attachments": {}, field: "evil\x00text"}
        error = error_of(api.http.post("/api/tasks", json=body), 422, "invalid_request")
        assert error["details"][0]["field"] == f"body.{field}" and "NUL" in error["message"]
    body = {"id": "t", "className": "Recorder", "attachments": {}, "dependencies": ["a\x00"]}
    error = error_of(api.http.post("/api/tasks", json=body), 422, "invalid_request")
    assert error["details"][0]["field"].startswith("body.dependencies")
    nothing_stored(api)
    # When the attachments carry one, in a value or a key, at any depth, Then invalid_attachments
    for attachments in ({"label": "a\x00b"}, {"x\x00": 1}, {"list": [{"s": ["\x00"]}]}):
        response = api.http.post("/api/tasks", json={"id": "t", "className": "Recorder", "attachments": attachments})
        error = error_of(response, 422, "invalid_attachments")
        assert "NUL" in error["message"] and error["details"][0]["field"] == "body.attachments"
    nothing_stored(api)
    # Given a stored task, When its update carries a NUL, Then 422 and the stored attachments are kept
    api.create(id="kept", className="Recorder", attachments={"label": "before", "duration": 30})
    response = api.http.put("/api/tasks/kept/attachments", json={"attachments": {"label": "after\x00"}})
    error_of(response, 422, "invalid_attachments")
    assert api.task("kept")["attachments"]["label"] == "before"


def test_attachments_nested_too_deep_are_422(api):
    api.create(id="shallow", className="Recorder", attachments={"duration": 30})
    for depth in (MAX_ATTACHMENT_DEPTH + 1, 500, 800, 999, 5000):
        # When attachments nest deeper than the documented limit (hundreds of levels broke the store)
        body = '{"id": "deep", "className": "Recorder", "attachments": ' + _deep_json(depth) + "}"
        response = api.http.post("/api/tasks", content=body, headers={"Content-Type": "application/json"})
        # Then 422 that names the limit, and nothing is stored
        assert response.status_code == 422, (depth, response.text[:300])
        error = response.json()["error"]
        assert str(MAX_ATTACHMENT_DEPTH) in error["message"], error
        assert error["code"] == ("invalid_attachments" if depth < 900 else "invalid_request"), (depth, error)
        error_of(api.http.get("/api/tasks/deep"), 404, "not_found")
        # And an update that nests too deep is refused the same way, keeping what was stored
        body = '{"attachments": ' + _deep_json(depth) + "}"
        response = api.http.put(
            "/api/tasks/shallow/attachments", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (depth, response.text[:300])
        assert api.task("shallow")["attachments"].get("returns") is None
    # And attachments at the limit are fine
    response = api.http.post(
        "/api/tasks", json={"id": "limit", "className": "Recorder", "attachments": nested(MAX_ATTACHMENT_DEPTH)}
    )
    assert response.status_code == 201, response.text[:300]


def _deep_json(depth: int) -> str:
    """Like :func:`nested`, as JSON text (the client's encoder would refuse the deepest)."""
    return '{"duration": 0, "returns": ' + '{"d": ' * (depth - 1) + "1" + "}" * (depth - 1) + "}"


def test_nul_in_the_url_is_422(api):
    for path in ("/api/tasks/a%00b", "/api/tasks?q=%00", "/api/tasks?type=a%00", "/api/skalds/x%00"):
        error = error_of(api.http.get(path), 422, "invalid_request")
        assert "NUL" in error["message"]


def test_nul_never_reaches_postgresql(start_controller, start_skald, postgres_server):
    # Given a controller and a skald on PostgreSQL (which cannot store a NUL in text)
    import psycopg

    schema = "hostile_" + uuid.uuid4().hex[:8]
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    store = f"{postgres_server.url}?options=-csearch_path%3D{schema}"
    api = start_controller(SKALDS_STORE_URL=store)
    start_skald("node-pg", SKALDS_STORE_URL=store)
    wait_for(lambda: online(api, "node-pg"), what="node-pg online")
    try:
        # When a create, an update, a search and a lookup carry a NUL, Then 422 each, never a 500
        body = {"id": "t", "className": "Recorder", "attachments": {}, "name": "a\x00"}
        error_of(api.http.post("/api/tasks", json=body), 422, "invalid_request")
        body = {"id": "t", "className": "Recorder", "attachments": {"label": "a\x00"}}
        error_of(api.http.post("/api/tasks", json=body), 422, "invalid_attachments")
        error_of(api.http.get("/api/tasks?q=a%00"), 422, "invalid_request")
        error_of(api.http.get("/api/tasks/a%00"), 422, "invalid_request")
        nothing_stored(api)
        api.create(id="pg", className="Recorder", attachments={"label": "kept", "duration": 30})
        response = api.http.put("/api/tasks/pg/attachments", json={"attachments": {"label": "\x00"}})
        error_of(response, 422, "invalid_attachments")
        assert api.task("pg")["attachments"]["label"] == "kept"
    finally:
        with psycopg.connect(postgres_server.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_an_edge_yaml_id_outside_the_characters_is_an_error_naming_file_and_line(tmp_path):
    from pydantic import BaseModel

    from skalds.taskfile import load_task_file

    class Model(BaseModel):
        n: int = 0

    # Given an edge file whose second task id has a space and a non-ASCII letter
    path = tmp_path / "edge.yml"
    path.write_text("TaskWorkers:\n  good-1:\n    className: W\n  bad id é:\n    className: W\n", encoding="utf-8")
    # When it is loaded
    entries, errors = load_task_file(path, {"W": Model})
    # Then the good entry loads, and the bad one is reported with its file, line and characters
    assert list(entries) == ["good-1"]
    assert len(errors) == 1, [str(e) for e in errors]
    message = str(errors[0])
    assert "edge.yml, line 4" in message and "'bad id é'" in message and "' '" in message and "'é'" in message
