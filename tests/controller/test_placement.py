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


def test_new_requirements_of_a_waiting_task_are_what_the_next_pass_places_by(service, home):
    from skalds.client import SkaldsClient
    from skalds.config.skald_config import SkaldConfig
    from skalds.errors import InvalidRequest, TaskEnded

    # Given a node with one GPU in eu-1, and a task that needs two GPUs and so waits
    _register(service, "gpu-node", {"labels": {"zone": "eu-1"}, "resources": {"gpu": 1}, "classes": {}})
    dispatcher = Dispatcher(service)
    _create(service, "big", requires={"gpu": 2})
    dispatcher.sweep()
    assert service.get_task("big")["placement"] == "no online node has gpu ≥ 2 free"

    # When only its node selector changes, Then its requires are kept and the next pass says why it waits now
    task, warnings = service.set_requirements("big", {"node_selector": {"zone": "us-1"}})
    assert (task.requires, task.node_selector, warnings) == ({"gpu": 2.0}, {"zone": "us-1"}, [])
    dispatcher.dispatch_pending(["big"])
    assert service.get_task("big")["placement"] == "no online node has label zone=us-1"

    # When the client asks for what the node has, Then the next pass places it there and its reason goes
    with SkaldsClient(SkaldConfig(skalds_home=str(home))) as client:
        client.set_requirements("big", requires="gpu=1", node_selector=None)
        assert service.store.require("big").node_selector is None
        dispatcher.dispatch_pending(["big"])
        assert service.store.require("big").executor == "gpu-node"
        assert service.get_task("big")["placement"] is None

        # And bad values and ended tasks are refused, naming the field, with nothing stored
        with pytest.raises(ValueError, match=r"requires: amount of 'gpu' must be a number ≥ 0"):
            client.set_requirements("big", requires={"gpu": -1})
        with pytest.raises(InvalidRequest, match=r"nodeSelector: value 'a b' of label 'zone'"):
            service.set_requirements("big", {"node_selector": {"zone": "a b"}})
        with pytest.raises(InvalidRequest, match="give requires and / or nodeSelector"):
            service.set_requirements("big", {})
        service.store.set_status("big", S.CANCELLED)
        with pytest.raises(TaskEnded, match="is Cancelled"):
            client.set_requirements("big", requires={})
        with pytest.raises(TaskEnded, match="its placement requirements cannot change"):
            service.set_requirements("big", {"requires": {}})
    assert service.store.require("big").requires == {"gpu": 1.0}


def test_changing_a_tasks_requirements_over_the_api_places_it_and_streams_why_it_waits(start_controller, start_skald):
    from tests.controller.sse_client import SSEReader

    # Given a controller, node-a with one GPU, a task that needs two, and a client on its stream
    api = start_controller()
    start_skald("node-a", SKALD_RESOURCES="gpu=1")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    api.create(id="w", className="Recorder", attachments={"duration": 300}, requires={"gpu": 2})
    stream = SSEReader(api.url + "/api/events/tasks?taskId=w")
    try:
        wait_for(lambda: api.task("w")["placement"] == "no online node has gpu ≥ 2 free", what="w's reason")

        def placements() -> list[tuple[Any, Any]]:
            return [(e["data"]["previous"], e["data"]["placement"]) for _, e in stream.of("task_placement")]

        def streamed() -> Any:
            """The reason as the stream last told it: its task_placement events, else its snapshot."""
            told = placements()
            if told:
                return told[-1][1]
            first = stream.of("snapshot")
            return first[0][1]["data"]["tasks"][0]["placement"] if first and first[0][1]["data"]["tasks"] else None

        wait_for(lambda: streamed() == "no online node has gpu ≥ 2 free", what="the reason on the stream")

        # When it asks for three, Then the answer already says why it waits, and the stream says it changed
        changed = api.http.put("/api/tasks/w/requirements", json={"requires": {"gpu": 3}})
        assert changed.status_code == 200, changed.text
        item = changed.json()
        assert (item["status"], item["requires"], item["placement"]) == (
            "Created",
            {"gpu": 3.0},
            "no online node has gpu ≥ 3 free",
        )
        assert item["warnings"] == []
        wait_for(lambda: placements()[-1:] == [("no online node has gpu ≥ 2 free", "no online node has gpu ≥ 3 free")],
                 what="task_placement gpu 2 → 3")  # fmt: skip
        # and a stream opened now has the reason in its snapshot
        late = SSEReader(api.url + "/api/events/tasks?taskId=w")
        try:
            wait_for(lambda: late.of("snapshot"), what="late snapshot")
            assert late.of("snapshot")[0][1]["data"]["tasks"][0]["placement"] == "no online node has gpu ≥ 3 free"
        finally:
            late.close()

        # When only a node selector is given, Then the requires are kept
        item = api.http.put("/api/tasks/w/requirements", json={"nodeSelector": {"zone": "mars"}}).json()
        assert item["requires"] == {"gpu": 3.0} and item["nodeSelector"] == {"zone": "mars"}
        assert item["placement"] == "no online node has label zone=mars"
        wait_for(lambda: streamed() == "no online node has label zone=mars", what="the new reason streamed")

        # When it asks for what node-a has, Then it is dispatched within the request and its reason goes
        item = api.http.put("/api/tasks/w/requirements", json={"requires": {"gpu": 1}, "nodeSelector": None}).json()
        assert item["executor"] == "node-a" and item["status"] in ("Assigning", "Running"), item
        assert item["placement"] is None and item["nodeSelector"] is None
        wait_for(lambda: placements()[-1:] == [("no online node has label zone=mars", None)], what="reason gone")
        wait_for(lambda: api.status_is("w", "Running"), timeout=15, what="w Running")

        # When a running task asks for more, Then it is not moved, the answer says so, and its node counts it
        response = api.http.put("/api/tasks/w/requirements", json={"requires": {"gpu": 2}})
        assert response.status_code == 200, response.text
        assert response.json()["warnings"] == [
            "task 'w' is Running on node-a: it is not moved; the new requirements apply the next time it is "
            "placed (a retry or a failover), and count against its node's resources now"
        ]
        assert api.task("w")["status"] == "Running" and api.task("w")["executor"] == "node-a"
        assert api.http.get("/api/skalds/node-a").json()["resourcesFree"] == {"gpu": -1.0}
        # and a class the node runs takes new attachments with no warning
        updated = api.http.put("/api/tasks/w/attachments", json={"attachments": {"someValue": 2}})
        assert updated.status_code == 200 and updated.json()["warnings"] == []
    finally:
        stream.close()

    # And bad input is refused naming the field, an unknown task is 404, an ended one 409
    def error(body: Any, task_id: str = "w") -> tuple[int, dict[str, Any]]:
        response = api.http.put(f"/api/tasks/{task_id}/requirements", json=body)
        return response.status_code, response.json()["error"]

    status, err = error({"requires": {"gpu": -1}})
    assert status == 422 and err["details"][0]["field"] == "body.requires"
    assert "amount of 'gpu' must be a number ≥ 0" in err["details"][0]["message"]
    status, err = error({"nodeSelector": "zone"})
    assert status == 422 and err["details"][0]["field"] == "body.nodeSelector"
    assert "'zone' is not name=value" in err["details"][0]["message"]
    status, err = error({"node_selector": {"zone": "eu-1"}})
    assert status == 422 and err["details"][0]["field"] == "body.node_selector"
    status, err = error({})
    assert status == 422 and "give requires and / or nodeSelector" in err["message"]
    assert error({"requires": {}}, "nope")[0] == 404
    assert api.task("w")["requires"] == {"gpu": 2.0}
    assert api.set_status("w", "Cancelled").status_code == 200
    status, err = error({"requires": {}})
    assert status == 409 and err["code"] == "task_ended" and "retry it" in err["message"]
