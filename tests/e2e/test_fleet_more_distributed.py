"""More fleet features on the real servers (PostgreSQL, Redis 7.0, Tansu): drain, max run time and
changing a waiting task's requirements, with a real controller and two real nodes shared by the
tests of this module, checked from what the real workers wrote and from the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.chaos.conftest import Chaos, shared_chaos
from tests.controller.conftest import Controller
from tests.controller.test_errors import error_of
from tests.support.procs import Proc, wait_for


class Fleet:
    """The module's controller, its two nodes (``a``: one GPU, zone eu-1; ``b``: zone us-1)."""

    def __init__(self, chaos: Chaos, api: Controller, a: str, b: str, logs: dict[str, Proc]) -> None:
        self.chaos, self.api, self.a, self.b, self.logs, self.tag = chaos, api, a, b, logs, chaos.tag

    def id(self, name: str) -> str:
        """A task id of this module's run (the bus may still carry events of other tests' tasks)."""
        return f"{name}-{self.tag}"

    def events(self, task_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return self.chaos.events(task_id, kind)

    def schedulable(self, skald_id: str, **body: bool) -> dict[str, Any]:
        response = self.api.http.put(f"/api/skalds/{skald_id}/schedulable", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def running_on(self, task_ids: list[str], skald_id: str) -> bool:
        tasks = [self.api.task(t) for t in task_ids]
        return all(t["status"] == "Running" and t["executor"] == skald_id for t in tasks)

    def started_on(self, task_id: str, skald_id: str) -> bool:
        """The node's own log says it started a worker for the task."""
        return f"started worker {task_id} " in self.logs[skald_id].output()

    def cancel(self, task_ids: list[str]) -> None:
        """Cancel and wait until every worker copy has released (the nodes are free again)."""
        for task_id in task_ids:
            assert self.api.set_status(task_id, "Cancelled").status_code == 200
        wait_for(
            lambda: all(len(self.events(t, "release")) == len(self.events(t, "main")) for t in task_ids),
            timeout=15,
            what="cancelled workers released",
        )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, postgres_server, redis_server, kafka_server) -> Iterator[Fleet]:
    """One controller (retry budget 1) and two nodes for the module."""
    with shared_chaos(tmp_path_factory, "fleet-more", postgres_server, kafka_server, redis_server) as chaos:
        api = chaos.controller(TASK_WORKER_RETRY="1")
        a, b = f"a-{chaos.tag}", f"b-{chaos.tag}"
        logs = {
            a: chaos.node(a, SKALD_RESOURCES="gpu=1", SKALD_LABELS="zone=eu-1"),
            b: chaos.node(b, SKALD_LABELS="zone=us-1"),
        }

        def online() -> bool:
            items = {s["id"]: s["status"] for s in api.http.get("/api/skalds").json()["items"]}
            return items.get(a) == "online" and items.get(b) == "online"

        wait_for(online, timeout=20, what="both nodes online")
        yield Fleet(chaos, api, a, b, logs)


def test_draining_a_node_moves_its_tasks_one_copy_at_a_time_and_uncordon_gives_it_tasks_again(fleet: Fleet) -> None:
    api, a, b = fleet.api, fleet.a, fleet.b
    # Given three long tasks Running on node a (b cordoned while they are placed)
    fleet.schedulable(b, cordoned=True)
    ids = [fleet.id(f"dr-{n}") for n in range(3)]
    for task_id in ids:
        api.create(id=task_id, className="Recorder", attachments={"duration": 60})
    wait_for(lambda: fleet.running_on(ids, a), timeout=15, what="the tasks Running on a")
    wait_for(lambda: all(fleet.events(t, "main") for t in ids), timeout=10, what="their workers in main")
    fleet.schedulable(b, cordoned=False)

    # When a is drained
    drained = fleet.schedulable(a, cordoned=True, drain=True)

    # Then its tasks were moved, and each runs on b, a second copy in main
    assert sorted(drained["drained"]) == sorted(ids), drained
    assert drained["cordoned"] is True and drained["draining"] is True
    wait_for(lambda: fleet.running_on(ids, b), timeout=20, what="the tasks Running on b")
    wait_for(lambda: all(len(fleet.events(t, "main")) == 2 for t in ids), timeout=10, what="second copies in main")
    assert all(fleet.started_on(t, a) and fleet.started_on(t, b) for t in ids)
    # And each copy on a ran its release before the copy on b began (never two at once)
    for task_id in ids:
        first, second = sorted(fleet.events(task_id, "main"), key=lambda e: e["t"])
        released = [e for e in fleet.events(task_id, "release") if e["pid"] == first["pid"]]
        assert released and released[0]["t"] <= second["t"], (task_id, first, released, second)
        assert second["pid"] != first["pid"]
    fleet.chaos.assert_never_two_at_once(ids)

    # When a task is created while a is drained (a runs nothing, b runs three: least tasks would pick a)
    fresh = fleet.id("dr-fresh")
    api.create(id=fresh, className="Recorder", attachments={"duration": 60})
    # Then it runs on b
    wait_for(lambda: fleet.running_on([fresh], b), timeout=15, what="the new task Running on b")
    assert not fleet.started_on(fresh, a)

    # When a is uncordoned, Then it says so and the next task runs there
    back = fleet.schedulable(a, cordoned=False)
    assert back["cordoned"] is False and back["draining"] is False and back["drained"] == []
    again = fleet.id("dr-again")
    api.create(id=again, className="Recorder", attachments={"duration": 60})
    wait_for(lambda: fleet.running_on([again], a), timeout=15, what="the next task Running on a")
    assert all(len(fleet.events(t, "main")) == 2 for t in ids)  # the moved ones did not move back
    fleet.cancel([*ids, fresh, again])


def test_a_task_past_its_max_run_time_fails_saying_why_and_is_retried_within_its_budget(fleet: Fleet) -> None:
    api = fleet.api
    # Given a task that would run 30 s with a max run time of 0.5 s, and one within its limit
    capped, quick = fleet.id("mrt-capped"), fleet.id("mrt-quick")
    created = api.create(id=capped, className="Recorder", attachments={"duration": 30}, maxRunTime=0.5)
    assert created["maxRunTime"] == 0.5
    api.create(id=quick, className="Recorder", attachments={"duration": 0.1}, maxRunTime=5)

    # Then each run is stopped (its release runs, main never returns) and, after the one retry of
    # the controller's budget, the task is Failed saying why
    wait_for(lambda: len(fleet.events(capped, "release")) == 2, timeout=20, what="two runs stopped")
    failed = wait_for(
        lambda: next((t for t in [api.task(capped)] if t["status"] == "Failed" and t["retries"] == 1), None),
        timeout=10,
        what="Failed after its retry",
    )
    assert failed["exception"] == "stopped after its max run time of 0.5 s"
    assert not fleet.events(capped, "after")
    runs = sorted(fleet.events(capped, "main"), key=lambda e: e["t"])
    for run in runs:
        released = next(e for e in fleet.events(capped, "release") if e["pid"] == run["pid"])
        assert 0.4 <= released["t"] - run["t"] < 5  # the limit counts from the fork, main starts just after
    fleet.chaos.assert_never_two_at_once([capped])

    # And no further retry: a dispatcher sweep later than a retry would be due leaves it Failed
    due = failed["updateDateTime"] + 2000  # the backoff after one retry: 1 s * 2**1

    def swept_after_due() -> bool:
        return (api.http.get("/api/system/status").json()["dispatcher"]["lastSweep"] or 0) > due

    wait_for(swept_after_due, timeout=10, what="a sweep after the retry would be due")
    assert api.task(capped)["status"] == "Failed" and len(fleet.events(capped, "main")) == 2
    # And the one within its limit finished normally
    wait_for(lambda: api.status_is(quick, "Finished"), timeout=10, what="quick Finished")
    assert len(fleet.events(quick, "after")) == 1


def test_new_requirements_make_a_waiting_task_placeable_on_the_node_that_fits(fleet: Fleet) -> None:
    api, a, b = fleet.api, fleet.a, fleet.b
    # Given a task needing two GPUs and one needing a zone no node is in: both wait, saying why
    big, far = fleet.id("rq-big"), fleet.id("rq-far")
    api.create(id=big, className="Recorder", requires={"gpu": 2}, attachments={"duration": 60})
    api.create(id=far, className="Recorder", nodeSelector={"zone": "ap-1"}, attachments={"duration": 60})
    wait_for(lambda: api.task(big)["placement"] == "no online node has gpu ≥ 2 free", timeout=10, what="big's reason")
    wait_for(
        lambda: api.task(far)["placement"] == "no online node has label zone=ap-1", timeout=10, what="far's reason"
    )
    assert api.status_is(big, "Created") and api.status_is(far, "Created")
    assert not fleet.events(big) and not fleet.events(far)

    # When big asks for the one GPU there is, Then it runs on a, the GPU node, and its reason goes
    changed = api.http.put(f"/api/tasks/{big}/requirements", json={"requires": {"gpu": 1}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["requires"] == {"gpu": 1}
    wait_for(lambda: fleet.running_on([big], a), timeout=15, what="big Running on a")
    assert api.task(big)["placement"] is None and fleet.started_on(big, a)

    # When far asks for zone us-1 (its requires kept), Then it runs on b
    changed = api.http.put(f"/api/tasks/{far}/requirements", json={"nodeSelector": {"zone": "us-1"}})
    assert changed.status_code == 200, changed.text
    wait_for(lambda: fleet.running_on([far], b), timeout=15, what="far Running on b")
    assert api.task(far)["placement"] is None and fleet.started_on(far, b)
    wait_for(lambda: fleet.events(big, "main") and fleet.events(far, "main"), timeout=10, what="workers in main")

    # And a task that ended for good cannot have its requirements changed
    fleet.cancel([big, far])
    ended = api.http.put(f"/api/tasks/{big}/requirements", json={"requires": {}})
    assert "its placement requirements cannot change" in error_of(ended, 409, "task_ended")["message"]
