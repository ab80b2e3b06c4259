"""Task semantics on the real servers (PostgreSQL, Redis 7.0, Tansu): bulk actions, dependencies
that can never finish, deadlines, attachment checks with the worker's model and the order of
waiting tasks, with a real controller and a real node shared by the tests of this module, checked
from what the real workers wrote and from the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from skalds.model.task import now_ms
from tests.chaos.conftest import Chaos, shared_chaos
from tests.controller.conftest import Controller
from tests.controller.test_errors import error_of
from tests.support.procs import wait_for


class Fleet:
    """The module's controller and node, and the events file their workers write."""

    def __init__(self, chaos: Chaos, api: Controller, node: str) -> None:
        self.chaos, self.api, self.node, self.tag = chaos, api, node, chaos.tag

    def id(self, name: str) -> str:
        """A task id of this module's run (the bus may still carry events of other tests' tasks)."""
        return f"{name}-{self.tag}"

    def events(self, task_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return self.chaos.events(task_id, kind)

    def is_(self, task_id: str, status: str, **fields: Any) -> dict[str, Any] | None:
        task = self.api.task(task_id)
        return task if task["status"] == status and all(task[k] == v for k, v in fields.items()) else None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, postgres_server, redis_server, kafka_server) -> Iterator[Fleet]:
    """One controller (retry budget 1) and one node (with the Camera workers) for the module."""
    with shared_chaos(tmp_path_factory, "semantics", postgres_server, kafka_server, redis_server) as chaos:
        api = chaos.controller(TASK_WORKER_RETRY="1")
        node = f"node-{chaos.tag}"
        chaos.node(node, SKALDS_TEST_CAMERA="1")

        def online() -> bool:
            response = api.http.get(f"/api/skalds/{node}")
            return response.status_code == 200 and response.json()["status"] == "online"

        wait_for(online, timeout=20, what="node online")
        yield Fleet(chaos, api, node)


def test_bulk_actions_stop_the_workers_and_the_store_follows(fleet: Fleet) -> None:
    api, id_ = fleet.api, fleet.id
    # Given three running tasks and a finished one, and another task outside the filter
    running = [id_(f"bk-{n}") for n in (1, 2, 3)]
    done, other = id_("bk-done"), id_("other")
    for task_id in running:
        api.create(id=task_id, className="Recorder", attachments={"duration": 60})
    api.create(id=done, className="Recorder", attachments={"duration": 0})
    api.create(id=other, className="Recorder", attachments={"duration": 60})
    wait_for(lambda: all(fleet.events(t, "main") for t in [*running, other]), timeout=15, what="workers running")
    wait_for(lambda: all(api.status_is(t, "Running") for t in running), timeout=15, what="Running")
    wait_for(lambda: api.status_is(done, "Finished"), timeout=15, what="Finished")

    bulk = api.bulk

    # When a pause is previewed with a dry run
    preview = bulk("pause", dry_run=True, q="bk-")
    # Then it says what would happen per task and changes nothing (no worker was stopped)
    assert (preview["matched"], preview["done"], preview["skipped"], preview["failed"]) == (4, 3, 1, 0)
    skipped = next(i for i in preview["items"] if i["outcome"] == "skipped")
    assert skipped == {
        "id": done,
        "status": "Finished",
        "outcome": "skipped",
        "reason": "a Finished task cannot be paused",
    }
    assert all(api.status_is(t, "Running") for t in running)
    assert not any(fleet.events(t, "release") for t in running)

    # When they are paused for real
    paused = bulk("pause", q="bk-")
    # Then they are Paused in the store and their workers really stopped; the other one runs on
    assert (paused["done"], paused["skipped"], paused["failed"]) == (3, 1, 0)
    assert all(api.status_is(t, "Paused") for t in running)
    wait_for(lambda: all(fleet.events(t, "release") for t in running), timeout=10, what="workers released")
    assert api.status_is(other, "Running") and not fleet.events(other, "release")
    assert api.http.get(f"/api/tasks/{running[0]}/history").json()["items"][-1]["status"] == "Paused"

    # When the Paused ones of the class are resumed, Then they run again (a second main each)
    resumed = bulk("resume", status="Paused", type="Recorder", q="bk-")
    assert resumed["done"] == 3 and {i["id"] for i in resumed["items"]} == set(running)
    wait_for(lambda: all(len(fleet.events(t, "main")) == 2 for t in running), timeout=15, what="run again")
    wait_for(lambda: all(api.status_is(t, "Running") for t in running), timeout=10, what="Running again")
    again = bulk("resume", ids=[running[0], done])
    assert [i["outcome"] for i in again["items"]] == ["skipped", "skipped"]

    # When they are cancelled by executor and name
    cancelled = bulk("cancel", executor=fleet.node, q="bk-")
    # Then they are Cancelled and each second copy released too; the other task still runs
    assert (cancelled["done"], cancelled["skipped"]) == (3, 1)
    assert all(api.status_is(t, "Cancelled") for t in running)
    wait_for(lambda: all(len(fleet.events(t, "release")) == 2 for t in running), timeout=10, what="released again")
    assert api.status_is(other, "Running") and not fleet.events(other, "release")

    # When the finished one is retried, Then its worker runs it again to its end
    assert bulk("retry", ids=[done])["done"] == 1
    wait_for(lambda: len(fleet.events(done, "after")) == 2, timeout=10, what="retried task ran")
    wait_for(lambda: api.status_is(done, "Finished"), timeout=10, what="retried task Finished")

    # When the ended ones are deleted by ids (one id matching nothing)
    deleted = bulk("delete", ids=[*running, done, id_("missing")])
    # Then they are gone from the store, and the other task is untouched
    assert (deleted["matched"], deleted["done"]) == (4, 4)
    assert all(api.http.get(f"/api/tasks/{t}").status_code == 404 for t in [*running, done])
    assert api.http.get("/api/tasks", params={"q": "bk-"}).json()["items"] == []
    assert api.status_is(other, "Running") and not fleet.events(other, "release")
    # When a running task is deleted, Then its worker stops and the record is gone
    assert bulk("delete", ids=[other])["done"] == 1
    wait_for(lambda: fleet.events(other, "release"), timeout=10, what="other released")
    assert api.http.get(f"/api/tasks/{other}").status_code == 404
    fleet.chaos.assert_never_two_at_once([*running, done, other])


def test_a_task_fails_when_a_dependency_fails_for_good_is_cancelled_or_deleted(fleet: Fleet) -> None:
    api, id_ = fleet.api, fleet.id
    long, gone, flaky = id_("long"), id_("gone"), id_("flaky")
    # Given a retry budget of 1, a task that fails fast, and two long ones, each with a dependent
    api.create(id=long, className="Recorder", attachments={"duration": 60})
    api.create(id=gone, className="Recorder", attachments={"duration": 60})
    api.create(id=flaky, className="Recorder", attachments={"duration": 0, "fail": True})
    on = {dep: id_(f"on-{dep}") for dep in (flaky, long, gone)}
    for dep, task_id in on.items():
        api.create(id=task_id, className="Recorder", dependencies=[dep], attachments={"duration": 60})
    # and a task down the chain, waiting for the dependent of the fast one
    chained = id_("on-on-flaky")
    api.create(id=chained, className="Recorder", dependencies=[on[flaky]], attachments={"duration": 60})

    # When the fast one fails but has a retry to come, Then its dependent still waits
    wait_for(lambda: fleet.is_(flaky, "Failed", retries=0), timeout=15, what="flaky's first failure")
    assert api.task(on[flaky])["status"] == "Created"
    # When it fails again, with no retry left, Then the dependent fails without running, saying why
    failed = wait_for(lambda: fleet.is_(on[flaky], "Failed"), timeout=20, what="on-flaky Failed")
    assert failed["exception"] == f"dependency {flaky} failed"
    assert api.task(flaky)["retries"] == 1 and len(fleet.events(flaky, "main")) == 2
    history = api.http.get(f"/api/tasks/{on[flaky]}/history").json()["items"]
    assert [(i["status"], i["detail"]) for i in history] == [
        ("Created", None),
        ("Failed", f"dependency {flaky} failed"),
    ]
    # And the failure travels down the chain
    down = wait_for(lambda: fleet.is_(chained, "Failed"), timeout=10, what="on-on-flaky Failed")
    assert down["exception"] == f"dependency {on[flaky]} failed"

    # When a dependency is cancelled, and another deleted, while they run
    wait_for(lambda: fleet.events(long, "main") and fleet.events(gone, "main"), timeout=15, what="long, gone run")
    wait_for(lambda: fleet.is_(long, "Running") and fleet.is_(gone, "Running"), what="long and gone Running")
    assert api.set_status(long, "Cancelled").status_code == 200
    assert api.http.delete(f"/api/tasks/{gone}").status_code == 204
    # Then their workers stop, and their dependents fail too, naming them
    wait_for(lambda: fleet.events(long, "release") and fleet.events(gone, "release"), timeout=10, what="released")
    cancelled = wait_for(lambda: fleet.is_(on[long], "Failed"), timeout=10, what="on-long Failed")
    deleted = wait_for(lambda: fleet.is_(on[gone], "Failed"), timeout=10, what="on-gone Failed")
    assert cancelled["exception"] == f"dependency {long} was cancelled"
    assert deleted["exception"] == f"dependency {gone} was deleted"
    listed = {t["id"]: t["exception"] for t in api.http.get("/api/tasks", params={"status": "Failed"}).json()["items"]}
    assert listed[on[long]] == f"dependency {long} was cancelled"
    # And no dependent ever ran
    assert not any(fleet.events(t) for t in [*on.values(), chained])

    # Given a short dependency cancelled while it ran, and its dependent failed for it
    gate, on_gate = id_("gate"), id_("on-gate")
    api.create(id=gate, className="Recorder", attachments={"duration": 1.5})
    api.create(id=on_gate, className="Recorder", dependencies=[gate], attachments={"duration": 0})
    wait_for(lambda: fleet.is_(gate, "Running"), timeout=10, what="gate Running")
    assert api.set_status(gate, "Cancelled").status_code == 200
    failed = wait_for(lambda: fleet.is_(on_gate, "Failed"), timeout=10, what="on-gate Failed")
    assert failed["exception"] == f"dependency {gate} was cancelled" and failed["retries"] == 0
    # When the dependency is retried and runs to its end
    assert api.set_status(gate, "Created").status_code == 200
    wait_for(lambda: fleet.events(gate, "after"), timeout=10, what="gate ran to its end")
    # Then the dependent is retried (within its budget) and runs after it
    wait_for(lambda: fleet.events(on_gate, "after"), timeout=15, what="on-gate ran")
    assert fleet.events(on_gate, "main")[0]["t"] >= fleet.events(gate, "after")[0]["t"]
    assert fleet.is_(on_gate, "Finished", retries=1) or wait_for(
        lambda: fleet.is_(on_gate, "Finished", retries=1), timeout=5, what="on-gate Finished"
    )


def test_a_task_past_its_deadline_is_cancelled_and_runs_again_once_its_deadline_moves(fleet: Fleet) -> None:
    api, late = fleet.api, fleet.id("late")
    # Given a long task whose deadline passes while it runs
    api.create(id=late, className="Recorder", attachments={"duration": 60}, deadlineDateTime=now_ms() + 2000)
    wait_for(lambda: fleet.events(late, "main"), timeout=10, what="late runs")
    # Then it is cancelled, and its worker stopped
    wait_for(lambda: fleet.is_(late, "Cancelled", exception="deadline passed"), timeout=10, what="deadline enforced")
    wait_for(lambda: fleet.events(late, "release"), timeout=10, what="late released")

    # When it is retried, Then 409 deadline_passed says how to change the deadline, and nothing changes
    response = api.set_status(late, "Created")
    error = error_of(response, 409, "deadline_passed")
    assert f"PUT /api/tasks/{late}/deadline" in error["message"]
    assert api.task(late)["status"] == "Cancelled"
    # And a deadline in the past is refused
    put = api.http.put
    assert put(f"/api/tasks/{late}/deadline", json={"deadlineDateTime": now_ms() - 1000}).status_code == 422

    # When the deadline moves later, Then the store has it, and a retry runs the worker again
    later = now_ms() + 3_600_000
    moved = put(f"/api/tasks/{late}/deadline", json={"deadlineDateTime": later})
    assert moved.status_code == 200 and moved.json()["deadlineDateTime"] == later
    assert api.task(late)["deadlineDateTime"] == later
    assert api.set_status(late, "Created").status_code == 200
    wait_for(lambda: len(fleet.events(late, "main")) == 2, timeout=10, what="late runs again")
    wait_for(lambda: fleet.is_(late, "Running"), timeout=10, what="late Running again")
    # When its deadline is moved earlier while it runs, Then it is cancelled at the new deadline
    sooner = now_ms() + 1500
    assert put(f"/api/tasks/{late}/deadline", json={"deadlineDateTime": sooner}).status_code == 200
    wait_for(lambda: len(fleet.events(late, "release")) == 2, timeout=10, what="late released again")
    assert fleet.events(late, "release")[1]["t"] * 1000 >= sooner
    cancelled = wait_for(lambda: fleet.is_(late, "Cancelled"), timeout=10, what="late Cancelled again")
    assert cancelled["exception"] == "deadline passed" and cancelled["deadlineDateTime"] == sooner
    # When the deadline is dropped, Then a retry runs it again
    assert put(f"/api/tasks/{late}/deadline", json={"deadlineDateTime": None}).json()["deadlineDateTime"] is None
    assert api.set_status(late, "Created").status_code == 200
    wait_for(lambda: len(fleet.events(late, "main")) == 3, timeout=10, what="late runs a third time")
    assert api.set_status(late, "Cancelled").status_code == 200
    wait_for(lambda: len(fleet.events(late, "release")) == 3, timeout=10, what="late released a third time")
    fleet.chaos.assert_never_two_at_once([late])


def test_attachments_are_checked_with_the_worker_model_and_the_record_follows_the_worker(fleet: Fleet) -> None:
    api, id_ = fleet.api, fleet.id
    cam, typo, upd, done = id_("cam"), id_("typo"), id_("upd"), id_("done")
    # When a task gives the README model's fields by name
    created = api.create(id=cam, className="Camera", attachments={"rtsp_url": "rtsp://cam/1", "fix_frame": 3})
    # Then it is stored by alias and the worker runs with those values
    assert created["attachments"] == {"rtspUrl": "rtsp://cam/1", "fixFrame": 3} and created["warnings"] == []
    main = wait_for(lambda: fleet.events(cam, "main"), timeout=10, what="cam main")[0]
    assert (main["rtsp_url"], main["fix_frame"]) == ("rtsp://cam/1", 3)
    # When an update gives a field by name, Then it replaces the stored value and reaches the worker
    response = api.http.put(f"/api/tasks/{cam}/attachments", json={"attachments": {"fix_frame": 5}})
    assert response.status_code == 200, response.text
    assert response.json()["attachments"] == {"rtspUrl": "rtsp://cam/1", "fixFrame": 5}
    wait_for(lambda: [e["fix_frame"] for e in fleet.events(cam, "update")] == [5], timeout=10, what="update 5")

    # When a key is misspelled, Then 422 names it and the close match, and nothing is stored
    body = {"id": typo, "className": "Camera", "attachments": {"rtspUrl": "rtsp://cam/2", "fixFrame": 1, "fixframe": 3}}
    error = error_of(api.http.post("/api/tasks", json=body), 422, "invalid_attachments")
    assert error["details"] == [
        {"field": "attachments.fixframe", "message": "unknown attachment 'fixframe' (did you mean 'fixFrame'?)"}
    ]
    error_of(api.http.get(f"/api/tasks/{typo}"), 404, "not_found")
    # And an update with a misspelled key changes nothing, in the store or in the worker
    error_of(
        api.http.put(f"/api/tasks/{cam}/attachments", json={"attachments": {"fixframe": 9}}), 422, "invalid_attachments"
    )
    assert api.task(cam)["attachments"] == {"rtspUrl": "rtsp://cam/1", "fixFrame": 5}
    assert api.set_status(cam, "Cancelled").status_code == 200
    wait_for(lambda: api.status_is(cam, "Cancelled"), what="cam Cancelled")
    assert [e["fix_frame"] for e in fleet.events(cam, "update")] == [5]

    # Given a running Recorder
    api.create(id=upd, className="Recorder", attachments={"someValue": 1, "label": "a"})
    wait_for(lambda: fleet.events(upd, "main"), timeout=10, what="upd main")
    wait_for(lambda: fleet.is_(upd, "Running"), timeout=10, what="upd Running")
    # When an update passes the API's checks but the worker's update handler rejects it
    response = api.http.put(f"/api/tasks/{upd}/attachments", json={"attachments": {"label": "refused"}})
    assert response.status_code == 200 and response.json()["attachments"]["label"] == "refused"
    # Then the record goes back to what the worker runs, and the task's error says why
    restored = {"someValue": 1, "label": "a"}
    task = wait_for(lambda: fleet.is_(upd, "Running", attachments=restored), timeout=10, what="attachments restored")
    assert "refuses label 'refused'" in task["error"]
    assert not fleet.events(upd, "update")
    # When a later update is accepted (by alias), Then the record and the worker agree on it
    assert api.http.put(f"/api/tasks/{upd}/attachments", json={"attachments": {"someValue": 7}}).status_code == 200
    update = wait_for(lambda: fleet.events(upd, "update"), timeout=10, what="update applied")[-1]
    assert (update["value"], update["label"], update["typed"]) == (7, "a", "RecorderModel")
    assert api.task(upd)["attachments"] == {"someValue": 7, "label": "a"}
    assert api.set_status(upd, "Cancelled").status_code == 200
    wait_for(lambda: fleet.events(upd, "release"), timeout=10, what="upd released")
    assert fleet.events(upd, "release")[0]["value"] == 7

    # Given a task that finished, When it is updated, Then 409 task_ended, and nothing is stored
    api.create(id=done, className="Recorder", attachments={"duration": 0, "someValue": 1})
    wait_for(lambda: fleet.is_(done, "Finished"), timeout=10, what="done Finished")
    refused = api.http.put(f"/api/tasks/{done}/attachments", json={"attachments": {"someValue": 2}})
    assert "retry it" in error_of(refused, 409, "task_ended")["message"]
    assert api.task(done)["attachments"] == {"duration": 0, "someValue": 1}


def test_waiting_tasks_of_a_limited_class_start_highest_priority_first_then_oldest(fleet: Fleet) -> None:
    api, id_ = fleet.api, fleet.id
    # Given a pooled class (2 at once per node) whose two slots are taken by long tasks
    blockers = [id_("b1"), id_("b2")]
    for task_id in blockers:
        api.create(id=task_id, className="PooledRecorder", attachments={"duration": 300})
    wait_for(lambda: all(fleet.events(t, "main") for t in blockers), timeout=15, what="slots taken")
    # When tasks of priority 0, 5, 10 and another 5 arrive in that order
    waiting = {id_(name): priority for name, priority in (("p0", 0), ("p5", 5), ("p10", 10), ("p5b", 5))}
    for task_id, priority in waiting.items():
        api.create(id=task_id, className="PooledRecorder", priority=priority, attachments={"duration": 0.05})
    # Then they wait on the node, Assigning, none started
    wait_for(
        lambda: all(fleet.is_(t, "Assigning", executor=fleet.node) for t in waiting), timeout=10, what="all Assigning"
    )
    assert not any(fleet.events(t) for t in waiting)
    assert api.task(id_("p5"))["createDateTime"] < api.task(id_("p5b"))["createDateTime"]
    # And of two more that wait with the highest priority, one is paused and one's deadline passes
    paused, expired = id_("px"), id_("pd")
    api.create(id=paused, className="PooledRecorder", priority=10, attachments={"duration": 0.05})
    api.create(
        id=expired,
        className="PooledRecorder",
        priority=10,
        attachments={"duration": 0.05},
        deadlineDateTime=now_ms() + 1000,
    )
    wait_for(lambda: fleet.is_(paused, "Assigning") and fleet.is_(expired, "Assigning"), what="px, pd Assigning")
    assert api.set_status(paused, "Paused").status_code == 200
    wait_for(lambda: fleet.is_(expired, "Cancelled", exception="deadline passed"), timeout=10, what="pd expired")

    # When one slot frees
    assert api.set_status(blockers[0], "Cancelled").status_code == 200
    # Then they run one at a time, highest priority first, the older of equal priorities first
    wait_for(lambda: all(fleet.is_(t, "Finished") for t in waiting), timeout=20, what="all Finished")
    mains = sorted((e["t"], e["task"]) for t in waiting for e in fleet.events(t, "main"))
    assert [t for _, t in mains] == [id_("p10"), id_("p5"), id_("p5b"), id_("p0")]
    # and the paused and the expired one never ran; resumed, the paused one runs
    assert not fleet.events(paused) and not fleet.events(expired)
    assert api.task(paused)["status"] == "Paused" and api.task(expired)["status"] == "Cancelled"
    assert api.set_status(paused, "Created").status_code == 200
    wait_for(lambda: fleet.is_(paused, "Finished"), timeout=10, what="px Finished")
    assert len(fleet.events(paused, "main")) == 1 and not fleet.events(expired)
    assert api.set_status(blockers[1], "Cancelled").status_code == 200
    wait_for(lambda: fleet.events(blockers[1], "release"), timeout=10, what="b2 released")
