"""Cordon, drain and uncordon a node skald: the service on the embedded backend, then real
processes (a controller, two nodes, the CLI)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from skalds.controller.config import ControllerConfig
from skalds.controller.cordon import set_schedule
from skalds.controller.dispatcher import Dispatcher
from skalds.controller.schemas import TaskCreate
from skalds.controller.service import ControllerService
from skalds.errors import InvalidRequest, SkaldNotFound
from skalds.model.task import TaskLifecycleStatus
from tests.controller.conftest import online
from tests.support.procs import alive, base_env, wait_for

S = TaskLifecycleStatus


def _service(home: Path) -> ControllerService:
    return ControllerService(ControllerConfig(skalds_home=str(home), redis_key_ttl=60, monitor_heartbeat_timeout=120))


@pytest.fixture
def service(home: Path):
    svc = _service(home)
    yield svc
    svc.close()


def _register(service: ControllerService, skald_id: str, mode: str = "node") -> None:
    service.state.register_skald(skald_id, mode, ["Job"], {"Job": {"type": "object"}})
    service.state.skald_heartbeat(skald_id, 1, [], ["Job"])


def _create(service: ControllerService, *ids: str) -> None:
    for task_id in ids:
        service.create_task(TaskCreate.model_validate({"id": task_id, "className": "Job", "attachments": {}}))


def _executors(service: ControllerService, ids: list[str]) -> set[str | None]:
    return {service.store.require(i).executor for i in ids}


def test_a_cordoned_node_gets_no_new_task_until_uncordoned(service, home):
    # Given two nodes, one of them cordoned
    _register(service, "a")
    _register(service, "b")
    dispatcher = Dispatcher(service)
    assert set_schedule(service, "a", cordoned=True) == []

    # When tasks are dispatched
    _create(service, "t1", "t2", "t3")
    dispatcher.sweep()

    # Then they all go to the other node, and the item says it is cordoned
    assert _executors(service, ["t1", "t2", "t3"]) == {"b"}
    item = service.get_skald("a")
    assert item["cordoned"] is True and item["draining"] is False and item["cordonedSince"] > 0

    # And the cordon outlives the controller (a new one reads it from the cache)
    again = _service(home)
    try:
        assert again.get_skald("a")["cordoned"] is True
    finally:
        again.close()

    # When it is uncordoned, it gets tasks again (it has the fewest)
    set_schedule(service, "a", cordoned=False)
    _create(service, "t4")
    dispatcher.sweep()
    assert _executors(service, ["t4"]) == {"a"} and service.get_skald("a")["cordoned"] is False


def test_only_a_cordoned_node_with_no_other_leaves_tasks_created(service):
    # Given one node, cordoned
    _register(service, "a")
    set_schedule(service, "a", cordoned=True)
    # When a task is dispatched, then it waits
    _create(service, "t1")
    Dispatcher(service).sweep()
    assert service.store.require("t1").lifecycle_status == S.CREATED


def test_draining_moves_live_tasks_fenced_and_the_sweep_keeps_draining(service):
    # Given three tasks assigned to node a, one of which is paused meanwhile
    _register(service, "a")
    dispatcher = Dispatcher(service)
    _create(service, "t1", "t2", "t3")
    dispatcher.sweep()
    assert _executors(service, ["t1", "t2", "t3"]) == {"a"}
    service.set_status("t3", "Paused")

    # When a is drained (no other node yet)
    moved = set_schedule(service, "a", cordoned=True, drain=True)

    # Then its live tasks are back to dispatch at their epoch, the paused one is untouched
    assert sorted(moved) == ["t1", "t2"]
    for task_id in moved:
        task = service.store.require(task_id)
        assert task.lifecycle_status == S.CREATED and task.executor is None and task.epoch == 1
    assert service.store.require("t3").lifecycle_status == S.PAUSED

    # When a task lands on a anyway (a pass that read the fleet before the cordon) and a sweep runs
    service.store.assign("t1", "a")
    _register(service, "b")
    result = dispatcher.sweep()

    # Then the sweep moves it and every task runs on b
    assert result.drained == [("t1", "a")]
    assert _executors(service, ["t1", "t2"]) == {"b"}


def test_a_drain_answers_every_task_it_moves_even_with_a_sweep_in_between(service):
    # Given three tasks on node a, and a sweep that runs just as the drain reads a's tasks
    _register(service, "a")
    dispatcher = Dispatcher(service)
    _create(service, "t1", "t2", "t3")
    dispatcher.sweep()
    _register(service, "b")
    owned_by = service.store.owned_by

    def sweep_first(skald_id):
        service.store.owned_by = owned_by
        dispatcher.sweep()
        return owned_by(skald_id)

    service.store.owned_by = sweep_first

    # When a is drained, Then the answer names every task moved (the sweep drained none of them)
    # and the node is left draining
    assert sorted(set_schedule(service, "a", cordoned=True, drain=True)) == ["t1", "t2", "t3"]
    assert service.get_skald("a")["draining"] is True


def test_bad_cordon_requests_say_what_to_fix(service):
    _register(service, "a")
    _register(service, "edge-1", mode="edge")
    with pytest.raises(SkaldNotFound, match="no skald with id 'nope'"):
        set_schedule(service, "nope", cordoned=True)
    with pytest.raises(InvalidRequest, match="edge skald"):
        set_schedule(service, "edge-1", cordoned=True)
    with pytest.raises(InvalidRequest, match="drain needs cordoned: true"):
        set_schedule(service, "a", cordoned=False, drain=True)
    assert service.get_skald("a")["cordoned"] is False  # nothing changed


def _cli(api, home: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "skalds", "skald", *args, "--url", api.url],
        env=base_env(home),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return str(result.stdout)


def test_draining_a_node_moves_its_tasks_to_the_other_one_never_two_copies_at_once(
    start_controller, start_skald, events, home
):
    # Given a controller, two nodes and four long tasks, all Running on node-a
    api = start_controller(DISPATCHER_INTERVAL="0.5", SKALDS_RECONCILE_INTERVAL="0.5")
    for name in ("node-a", "node-b"):
        start_skald(name, SKALDS_RECONCILE_INTERVAL="0.5")
    wait_for(lambda: online(api, "node-a") and online(api, "node-b"), what="both nodes online")
    assert "cordoned" in _cli(api, home, "cordon", "node-b")
    ids = [f"t{i}" for i in range(4)]
    for task_id in ids:
        api.create(id=task_id, className="Recorder", attachments={"duration": 300})
    wait_for(lambda: all(events(t, "main") for t in ids), timeout=15, what="the tasks run")
    assert {api.task(t)["executor"] for t in ids} == {"node-a"}
    _cli(api, home, "uncordon", "node-b")

    # When node-a is drained from the CLI
    out = _cli(api, home, "drain", "node-a")

    # Then every task moves to node-b and runs there
    assert "draining" in out and "4 task(s) moved" in out
    wait_for(
        lambda: all(api.task(t)["executor"] == "node-b" and api.task(t)["status"] == "Running" for t in ids),
        timeout=15,
        what="the tasks Running on node-b",
    )
    wait_for(lambda: all(len(events(t, "main")) == 2 for t in ids), timeout=10, what="second copies in main")
    # And no two copies of a task ever ran at once: the copy on node-a released before the other began
    for task_id in ids:
        spans = []
        for main in events(task_id, "main"):
            ends = [e["t"] for e in events(task_id, "release") if e["pid"] == main["pid"]]
            spans.append((main["t"], ends[0] if ends else (float("inf") if alive(main["pid"]) else main["t"])))
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, f"task {task_id}: two copies at once {spans}"
    skald = api.http.get("/api/skalds/node-a").json()
    assert skald["cordoned"] is True and skald["draining"] is True

    # And the API refuses a bad body with the one error shape
    bad = api.http.put("/api/skalds/node-a/schedulable", json={"cordoned": False, "drain": True})
    assert bad.status_code == 422 and "drain needs cordoned: true" in bad.json()["error"]["message"]
