"""The 0.3.x names and shapes the Skalds 0.3.8 dashboard relies on, beside ours (in-process)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from skalds.backends.cache.state import task_heartbeat_key
from skalds.controller.app import create_app
from skalds.controller.config import ControllerConfig
from skalds.controller.events import EventHub
from skalds.model.task import Task
from skalds.model.task import TaskLifecycleStatus as S


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    app = create_app(ControllerConfig(skalds_home=str(home)))
    with TestClient(app, base_url="http://127.0.0.1") as http:
        store = app.state.service.store
        for task_id, class_name in (("a-1", "Alpha"), ("b-1", "Beta"), ("b-2", "Beta")):
            store.create(Task(id=task_id, class_name=class_name, attachments={}))
        store.set_status("b-2", S.CANCELLED)
        yield http


def test_the_03x_task_list_filters_newest_first(client: TestClient) -> None:
    page: dict[str, Any] = client.get("/api/tasks/", params={"page": 1, "pageSize": 10}).json()
    assert [t["id"] for t in page["items"]] == ["b-2", "b-1", "a-1"] and page["total"] == 3
    assert {"className", "lifecycleStatus", "mode", "executor", "heartbeat"} <= set(page["items"][0])
    only = client.get("/api/tasks/", params={"lifecycleStatus": "Created", "className": "Beta"}).json()
    assert [t["id"] for t in only["items"]] == ["b-1"]
    assert [t["id"] for t in client.get("/api/tasks/", params={"id": "-2"}).json()["items"]] == ["b-2"]
    # and ours is unchanged: its own names, oldest first
    assert [t["id"] for t in client.get("/api/tasks", params={"type": "Beta"}).json()["items"]] == ["b-1", "b-2"]


def test_classnames_and_the_skald_list_with_a_slash(client: TestClient) -> None:
    assert client.get("/api/tasks/classnames").json() == ["Alpha", "Beta"]
    assert client.get("/api/skalds/", follow_redirects=False).json() == {"items": [], "total": 0}


def test_a_03x_status_body_gets_the_03x_answer_and_ours_gets_ours(client: TestClient) -> None:
    legacy = client.put("/api/tasks/a-1/status", json={"lifecycleStatus": "Cancelled"})
    assert legacy.status_code == 200
    assert legacy.json() == {
        "success": True,
        "message": "Task status updated to Cancelled",
        "data": {"taskId": "a-1", "status": "Cancelled"},
    }
    assert client.get("/api/tasks/a-1").json()["status"] == "Cancelled"
    refused = client.put("/api/tasks/a-1/status", json={"lifecycleStatus": "Paused"})
    assert refused.status_code == 422 and refused.json()["error"]["details"][0]["field"] == "body.lifecycleStatus"

    ours = client.put("/api/tasks/b-1/status", json={"status": "Paused"})
    assert ours.status_code == 200 and ours.json()["status"] == "Paused" and "success" not in ours.json()
    missing = client.put("/api/tasks/b-1/status", json={"state": "Paused"}).json()["error"]
    assert missing["code"] == "invalid_request" and missing["details"][0]["field"] == "body.status"
    assert client.put("/api/tasks/nope/status", json={"lifecycleStatus": "Created"}).status_code == 404


def test_status_changes_reach_03x_readers_as_heartbeat_events(home: Path) -> None:
    from skalds.controller.service import ControllerService

    service = ControllerService(ControllerConfig(skalds_home=str(home)))
    try:
        service.store.create(Task(id="r", class_name="Job"))
        service.store.assign("r", "node-1")
        service.store.set_status("r", S.RUNNING)
        service.state.cache.set(task_heartbeat_key("r"), "5", ttl=60)
        hub = EventHub(service, snapshot_age=0)
        hub.poll()
        # When the status changes while the heartbeat stays
        service.store.set_status("r", S.CANCELLED)
        events = hub.poll()
        # Then a task_heartbeat carries the new status (0.3.x reads it only there), besides task_status
        beats = [e for e in events if e["type"] == "task_heartbeat"]
        assert [e["data"]["lifecycleStatus"] for e in beats] == ["Cancelled"]
        assert beats[0]["data"]["heartbeat"] == 5
        assert [e["data"]["status"] for e in events if e["type"] == "task_status"] == ["Cancelled"]
    finally:
        service.close()
