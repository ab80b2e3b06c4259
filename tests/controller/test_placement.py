"""Placement by labels and resources: the dispatcher on the embedded backend, then a real controller
and two real node processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skalds.controller.config import ControllerConfig
from skalds.controller.dispatcher import Dispatcher
from skalds.controller.schemas import TaskCreate
from skalds.controller.service import ControllerService
from skalds.model.task import TaskLifecycleStatus
from tests.controller.conftest import online
from tests.support.procs import wait_for

S = TaskLifecycleStatus


@pytest.fixture
def service(home: Path):
    svc = ControllerService(ControllerConfig(skalds_home=str(home), redis_key_ttl=60, monitor_heartbeat_timeout=120))
    yield svc
    svc.close()


def _register(service: ControllerService, skald_id: str, placement: dict[str, Any]) -> None:
    service.state.register_skald(skald_id, "node", ["Job", "Train"], {}, placement)
    service.state.skald_heartbeat(skald_id, 1, [], ["Job", "Train"])


def _create(service: ControllerService, task_id: str, class_name: str = "Job", **fields: Any) -> None:
    service.create_task(
        TaskCreate.model_validate({"id": task_id, "className": class_name, "attachments": {}, **fields})
    )


def test_the_dispatcher_places_by_labels_and_resources_and_says_why_a_task_waits(service):
    # Given a GPU node in eu-1 (Train needs a GPU there) and a node with no GPU
    train = {"Train": {"requires": {"gpu": 1}, "nodeSelector": {}}}
    _register(service, "gpu-node", {"labels": {"zone": "eu-1"}, "resources": {"gpu": 2}, "classes": train})
    _register(service, "cpu-node", {"labels": {"zone": "us-1"}, "resources": {"cpu": 8}, "classes": train})
    dispatcher = Dispatcher(service)

    # When three Train tasks, one eu-1 task and two plain tasks are dispatched in one pass
    for n in range(3):
        _create(service, f"train{n}", "Train")
    _create(service, "eu", nodeSelector={"zone": "eu-1"})
    _create(service, "mars", nodeSelector={"zone": "mars"})
    _create(service, "plain1")
    _create(service, "plain2")
    dispatcher.sweep()

    # Then two Train tasks go to the GPU node (never more than it has), the third waits and says why
    placed = {i: service.store.require(i).executor for i in ("train0", "train1", "train2", "eu", "plain1", "plain2")}
    assert sorted(i for i in ("train0", "train1", "train2") if placed[i] == "gpu-node") == ["train0", "train1"]
    waiting = service.get_task("train2")
    assert waiting["status"] == "Created" and waiting["placement"] == "no online node has gpu ≥ 1 free"
    assert placed["eu"] == "gpu-node"
    assert service.get_task("mars")["placement"] == "no online node has label zone=mars"
    # And tasks requiring nothing fit anywhere
    assert placed["plain1"] is not None and placed["plain2"] is not None
    # And the skald item shows what is declared, used and free
    item = service.get_skald("gpu-node")
    assert item["labels"] == {"zone": "eu-1"} and item["resources"] == {"gpu": 2.0}
    assert item["resourcesUsed"] == {"gpu": 2.0} and item["resourcesFree"] == {"gpu": 0.0}

    # When a Train task ends, the next pass places the waiting one, and its reason goes
    service.store.set_status("train0", S.CANCELLED)
    dispatcher.sweep()
    assert service.store.require("train2").executor == "gpu-node"
    assert service.get_task("train2")["placement"] is None
    assert service.state.cache.get("task:train2:placement") is None


def test_a_task_overrides_its_class_requirements(service):
    # Given a node without GPU, and a class that declares it needs one
    train = {"Train": {"requires": {"gpu": 1}, "nodeSelector": {}}}
    _register(service, "cpu-node", {"labels": {}, "resources": {}, "classes": train})
    _create(service, "needs-gpu", "Train")
    _create(service, "no-gpu", "Train", requires={})

    # When dispatched, only the task that says it needs nothing runs there
    Dispatcher(service).sweep()
    assert service.store.require("needs-gpu").lifecycle_status == S.CREATED
    assert service.store.require("no-gpu").executor == "cpu-node"


def test_bad_requirements_in_a_create_are_refused_and_nothing_is_stored(service):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"requires: amount of 'gpu' must be a number ≥ 0"):
        _create(service, "bad", requires={"gpu": -1})
    assert service.store.get("bad") is None


def test_tasks_requiring_a_gpu_run_one_at_a_time_on_the_gpu_node_never_on_the_other(start_controller, start_skald):
    # Given a controller, node-a with one GPU and node-b with none
    api = start_controller(DISPATCHER_INTERVAL="0.5")
    start_skald("node-a", SKALD_RESOURCES="gpu=1", SKALD_LABELS="zone=eu-1")
    start_skald("node-b", SKALD_RESOURCES="slots=4")
    wait_for(lambda: online(api, "node-a") and online(api, "node-b"), what="both nodes online")
    assert api.http.get("/api/skalds/node-a").json()["resources"] == {"gpu": 1.0}

    # When three tasks each requiring a GPU are created
    ids = ["g0", "g1", "g2"]
    for task_id in ids:
        api.create(id=task_id, className="Recorder", attachments={"duration": 300}, requires={"gpu": 1})

    # Then one runs on node-a, and two wait Created, saying why
    def statuses() -> dict[str, str]:
        return {t: api.task(t)["status"] for t in ids}

    wait_for(lambda: list(statuses().values()).count("Running") == 1, timeout=15, what="one task Running")
    running = next(t for t, s in statuses().items() if s == "Running")
    assert api.task(running)["executor"] == "node-a"
    waiting = [t for t in ids if t != running]
    wait_for(
        lambda: all(api.task(t)["placement"] == "no online node has gpu ≥ 1 free" for t in waiting),
        timeout=10,
        what="the waiting tasks' reason",
    )
    assert all(api.task(t)["status"] == "Created" for t in waiting)
    skald = api.http.get("/api/skalds/node-a").json()
    assert skald["resourcesUsed"] == {"gpu": 1.0} and skald["resourcesFree"] == {"gpu": 0.0}

    # When the running one is cancelled, the next starts on node-a — never on node-b
    assert api.http.put(f"/api/tasks/{running}/status", json={"status": "Cancelled"}).status_code == 200
    wait_for(
        lambda: sum(api.task(t)["status"] == "Running" for t in waiting) == 1, timeout=15, what="the next task Running"
    )
    assert {api.task(t)["executor"] for t in waiting if api.task(t)["status"] == "Running"} == {"node-a"}
    assert all(api.task(t)["executor"] != "node-b" for t in ids)
