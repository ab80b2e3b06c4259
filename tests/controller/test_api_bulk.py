"""``POST /api/tasks/bulk``: cancel, pause, resume, retry, delete by filter (real controller, real skald)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skalds.backends.store.base import TaskQuery
from skalds.controller.bulk import run_bulk
from skalds.controller.config import ControllerConfig
from skalds.controller.service import ControllerService
from skalds.errors import InvalidRequest
from skalds.model.task import Task
from skalds.model.task import TaskLifecycleStatus as S
from tests.controller.conftest import online
from tests.support.procs import wait_for


def test_bulk_actions_go_through_the_state_machine_task_by_task(start_controller, start_skald, events):
    # Given three running tasks and a finished one, and another task outside the filter
    api = start_controller()
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    for task_id in ("bk-1", "bk-2", "bk-3"):
        api.create(id=task_id, className="Recorder", attachments={"duration": 60})
    api.create(id="bk-done", className="Recorder", attachments={"duration": 0})
    api.create(id="other", className="Recorder", attachments={"duration": 60})
    running = ("bk-1", "bk-2", "bk-3")
    wait_for(lambda: all(api.status_is(t, "Running") for t in running), timeout=15, what="Running")
    wait_for(lambda: api.status_is("bk-done", "Finished"), timeout=15, what="Finished")

    bulk = api.bulk

    # When a pause is previewed with a dry run
    preview = bulk("pause", dry_run=True, q="bk-")
    # Then it says what would happen per task (the Finished one cannot be paused) and changes nothing
    assert (preview["matched"], preview["done"], preview["skipped"], preview["failed"]) == (4, 3, 1, 0)
    skipped = next(i for i in preview["items"] if i["outcome"] == "skipped")
    assert skipped == {
        "id": "bk-done",
        "status": "Finished",
        "outcome": "skipped",
        "reason": "a Finished task cannot be paused",
    }
    assert all(api.status_is(t, "Running") for t in running)

    # When they are paused for real
    paused = bulk("pause", q="bk-")
    # Then each went through the single-task path: Paused, worker released, history kept
    assert (paused["done"], paused["skipped"]) == (3, 1)
    assert all(api.status_is(t, "Paused") for t in running) and api.status_is("other", "Running")
    wait_for(lambda: all(events(t, "release") for t in running), timeout=10, what="workers released")
    history = api.http.get("/api/tasks/bk-1/history").json()["items"]
    assert history[-1]["status"] == "Paused"

    # When they are resumed (by status and class), only the Paused ones apply, and they run again
    resumed = bulk("resume", status="Paused", type="Recorder")
    assert resumed["done"] == 3 and {i["id"] for i in resumed["items"]} == set(running)
    wait_for(lambda: all(len(events(t, "main")) == 2 for t in running), timeout=15, what="run again")
    again = bulk("resume", ids=["bk-1", "bk-done"])
    assert [i["outcome"] for i in again["items"]] == ["skipped", "skipped"]
    assert again["items"][0]["reason"].startswith("not Paused")

    # When they are cancelled by executor, then deleted by ids
    cancelled = bulk("cancel", executor="node-a", q="bk-")
    assert cancelled["done"] == 3 and cancelled["skipped"] == 1
    assert all(api.status_is(t, "Cancelled") for t in running)
    retried = bulk("retry", ids=["bk-done"])
    assert retried["done"] == 1
    wait_for(lambda: api.status_is("bk-done", "Finished"), timeout=15, what="retried task Finished")
    deleted = bulk("delete", ids=[*running, "bk-done", "missing"])
    # Then the tasks are gone (an id that matches nothing is simply not matched)
    assert deleted["matched"] == 4 and deleted["done"] == 4
    assert all(api.http.get(f"/api/tasks/{t}").status_code == 404 for t in (*running, "bk-done"))
    assert api.status_is("other", "Running")


def test_bad_bulk_requests_are_refused_and_change_nothing(start_controller):
    api = start_controller()

    def refused(body: dict) -> dict:
        response = api.http.post("/api/tasks/bulk", json=body)
        assert response.status_code == 422, response.text
        return response.json()["error"]

    # An empty filter, an unknown status, an unknown action, an unknown filter key, too many ids
    empty = refused({"action": "cancel", "filter": {}})
    assert "at least one of" in empty["message"] and empty["details"][0]["field"] == "body.filter"
    status = refused({"action": "cancel", "filter": {"status": "Sleeping"}})
    assert status["details"][0]["field"] == "body.filter.status" and "Running" in status["message"]
    assert refused({"action": "explode", "filter": {"q": "x"}})["code"] == "invalid_request"
    assert refused({"action": "cancel", "filter": {"colour": "red"}})["code"] == "invalid_request"
    assert refused({"action": "cancel", "filter": {"ids": [f"t{i}" for i in range(1001)]}})
    # And a body that is not JSON is refused as every other route refuses it
    assert api.http.post("/api/tasks/bulk", content=b"action=cancel").status_code == 415


def test_a_filter_matching_more_than_the_limit_changes_nothing(home: Path):
    # Given five stored tasks
    service = ControllerService(ControllerConfig(skalds_home=str(home)))
    try:
        for n in range(5):
            service.store.create(Task.model_validate({"id": f"lim-{n}", "className": "Demo"}))
        # When a bulk cancel would touch more than the limit
        with pytest.raises(InvalidRequest, match="matches 5 tasks; one bulk call acts on at most 3"):
            run_bulk(service, "cancel", TaskQuery(class_name="Demo"), limit=3)
        # Then none was changed; within the limit every one is
        assert service.count(S.CANCELLED) == 0
        result = run_bulk(service, "cancel", TaskQuery(class_name="Demo"), limit=5)
        assert result.count("done") == 5 and service.count(S.CANCELLED) == 5
    finally:
        service.close()
