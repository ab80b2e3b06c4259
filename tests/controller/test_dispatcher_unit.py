"""The dispatcher and service without HTTP: strategies, fencing, retries, modes and config.

Skalds here are only their cache entries (what a real skald writes when it registers and
heartbeats), so each choice the dispatcher makes can be checked exactly.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from skalds.controller.app import create_app
from skalds.controller.config import ControllerConfig, DispatcherStrategyEnum, SystemControllerModeEnum
from skalds.controller.dispatcher import QUEUE_HEAD, Dispatcher
from skalds.controller.schemas import TaskCreate
from skalds.controller.service import ControllerService
from skalds.errors import InvalidAttachments
from skalds.model.task import ModeEnum, Task, TaskLifecycleStatus
from tests.support.procs import wait_for

S = TaskLifecycleStatus
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


@pytest.fixture
def service(home: Path):
    svc = ControllerService(ControllerConfig(skalds_home=str(home), redis_key_ttl=60, monitor_heartbeat_timeout=120))
    yield svc
    svc.close()


def register(
    service: ControllerService, skald_id: str, mode: str = "node", classes: tuple[str, ...] = ("Job",)
) -> None:
    service.state.register_skald(skald_id, mode, list(classes), {c: SCHEMA for c in classes})
    service.state.skald_heartbeat(skald_id, 1, [], list(classes))


def create(service: ControllerService, task_id: str, **fields: object) -> Task:
    return service.create_task(
        TaskCreate.model_validate({"id": task_id, "className": "Job", "attachments": {}, **fields})
    )


def executors(service: ControllerService, ids: list[str]) -> list[str | None]:
    return [service.store.require(i).executor for i in ids]


def test_round_robin_alternates_between_nodes(service):
    # Given two nodes and the ROUND_ROBIN strategy
    register(service, "a")
    register(service, "b")
    dispatcher = Dispatcher(service, DispatcherStrategyEnum.ROUND_ROBIN)
    ids = [f"t{i}" for i in range(4)]
    # When four tasks are dispatched one by one
    for i in ids:
        create(service, i)
        dispatcher.dispatch_pending()
    # Then they alternate
    assert executors(service, ids) == ["a", "b", "a", "b"]


def test_random_uses_every_capable_node(service):
    # Given two nodes and the RANDOM strategy with a fixed seed
    register(service, "a")
    register(service, "b")
    dispatcher = Dispatcher(service, DispatcherStrategyEnum.RANDOM, rng=random.Random(7))
    ids = [f"t{i}" for i in range(20)]
    for i in ids:
        create(service, i)
    # When they are dispatched in one pass
    assert len(dispatcher.dispatch_pending()) == 20
    # Then both nodes got some
    assert set(Counter(executors(service, ids))) == {"a", "b"}


def test_least_tasks_counts_what_the_store_says_each_node_owns(service):
    # Given node a already owning two live tasks, node b none
    register(service, "a")
    register(service, "b")
    for i in ("x", "y"):
        create(service, i)
        service.store.assign(i, "a")
    dispatcher = Dispatcher(service, DispatcherStrategyEnum.LEAST_TASKS)
    # When three tasks are dispatched in one pass
    for i in ("p", "q", "r"):
        create(service, i)
    dispatcher.dispatch_pending()
    # Then b catches up first (2 each), then the tie goes by id
    assert executors(service, ["p", "q", "r"]) == ["b", "b", "a"]


def test_only_online_nodes_that_advertise_the_class_get_tasks(service):
    # Given an edge and a node that both advertise Job, and a node that does not
    register(service, "edge", mode="edge")
    register(service, "other", classes=("Else",))
    dispatcher = Dispatcher(service)
    create(service, "t")
    # When dispatching with no capable node, Then nothing is assigned
    assert dispatcher.dispatch_pending() == []
    # When a capable node comes online, Then it gets the task
    register(service, "node")
    assert dispatcher.dispatch_pending() == [("t", "node")]
    assigned = service.store.require("t")
    assert assigned.lifecycle_status == S.ASSIGNING and assigned.epoch == 1


def test_active_tasks_are_never_dispatched(service):
    # Given an Active (edge-owned) task in Created
    register(service, "node")
    service.store.create(Task(id="yaml", className="Job", mode=ModeEnum.ACTIVE, executor="edge"))
    # When the dispatcher runs, Then it leaves it alone
    assert Dispatcher(service).sweep().assigned == []
    assert service.store.require("yaml").executor == "edge"


def test_two_dispatchers_never_assign_a_task_twice(home):
    # Given two controllers' dispatchers over the same store and 40 pending tasks
    config = ControllerConfig(skalds_home=str(home), redis_key_ttl=60, monitor_heartbeat_timeout=120)
    services = [ControllerService(config), ControllerService(config)]
    register(services[0], "a")
    register(services[0], "b")
    for i in range(40):
        create(services[0], f"t{i}")
    results: list[list[tuple[str, str]]] = []

    def run(svc: ControllerService) -> None:
        results.append(Dispatcher(svc, DispatcherStrategyEnum.RANDOM).dispatch_pending())

    # When both dispatch at the same time
    threads = [threading.Thread(target=run, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then every task was assigned exactly once, at epoch 1
    assigned = [task_id for r in results for task_id, _ in r]
    assert sorted(assigned) == sorted(f"t{i}" for i in range(40))
    assert {services[0].store.require(f"t{i}").epoch for i in range(40)} == {1}
    for s in services:
        s.close()


def test_retries_wait_for_the_backoff_and_stop_at_the_budget(service):
    # Given a failed task and a budget of 1 with a 0.3 s base backoff
    register(service, "a")
    dispatcher = Dispatcher(service, retry_budget=1, backoff_base=0.3)
    create(service, "f")
    service.store.set_status("f", S.FAILED, exception="boom")
    # When a pass runs at once, Then the backoff holds it back
    assert dispatcher.retry_failed() == []
    # When the backoff has passed, Then it returns to Created with one retry counted, and is assigned
    wait_for(lambda: dispatcher.retry_failed() == ["f"], timeout=3, interval=0.05, what="retry")
    assert service.store.require("f").retries == 1
    assert dispatcher.dispatch_pending() == [("f", "a")]
    # When it fails again, Then the budget is spent and it stays Failed
    service.store.set_status("f", S.FAILED, exception="boom")
    assert dispatcher.backoff_ms(1) == 600
    assert dispatcher.sweep().retried == []
    failed = service.store.require("f")
    assert failed.lifecycle_status == S.FAILED and failed.retries == 1


def test_create_validates_against_the_advertised_schema(service):
    # Given no skald online, When a task is created, Then it is stored to wait, with a warning
    task, created, warnings = service.create_task_keyed(
        TaskCreate.model_validate({"id": "t", "className": "Job", "attachments": {"n": "x"}})
    )
    assert created and task.lifecycle_status == S.CREATED and task.attachments == {"n": "x"}
    assert warnings == [
        "no online skald runs class 'Job'; the task waits until one does, and its attachments could not be validated"
    ]
    # Given a node advertising Job, When attachments break its schema, Then the field is named
    register(service, "a")
    with pytest.raises(InvalidAttachments) as err:
        service.create_task(TaskCreate.model_validate({"className": "Job", "attachments": {"n": "x"}}))
    assert err.value.details == [{"field": "attachments.n", "message": "'x' is not of type 'integer'"}]
    # When valid, Then it is stored Created with a generated id and source API
    task = service.create_task(TaskCreate.model_validate({"className": "Job", "attachments": {"n": 1}}))
    assert task.lifecycle_status == S.CREATED and task.source == "API" and len(task.id) == 32


def test_modes_decide_which_loops_run(home, monkeypatch):
    # Given each mode, Then only DISPATCHER has a dispatcher, and only CONTROLLER has no sampler
    for mode, dispatches, samples in (
        ("CONTROLLER", False, False),
        ("monitor", False, True),
        ("DISPATCHER", True, True),
    ):
        config = ControllerConfig(skalds_home=str(home), system_controller_mode=mode)
        assert (create_app(config).state.dispatcher is not None) is dispatches
        assert config.runs_sampler is samples
    # And the environment names of docs/configuration.md are read
    monkeypatch.setenv("SYSTEM_CONTROLLER_MODE", "monitor")
    monkeypatch.setenv("DISPATCHER_STRATEGY", "round_robin")
    monkeypatch.setenv("SYSTEM_CONTROLLER_PORT", "9123")
    monkeypatch.setenv("SKALDS_API_TOKEN", "s3cret")
    config = ControllerConfig()
    assert config.system_controller_mode == SystemControllerModeEnum.MONITOR
    assert config.dispatcher_strategy == DispatcherStrategyEnum.ROUND_ROBIN
    assert config.system_controller_port == 9123 and config.api_token == "s3cret"
    assert "api_token: ***" in config.describe()
    monkeypatch.setenv("SYSTEM_CONTROLLER_MODE", "everything")
    with pytest.raises(ValidationError, match="SYSTEM_CONTROLLER_MODE must be one of"):
        ControllerConfig()


def test_a_pass_for_new_tasks_reads_them_and_the_queue_head_not_the_whole_backlog(service):
    # Given 300 waiting tasks no node can run (their class has no node) and a node for Job
    register(service, "a")
    service.store.create_many([Task(id=f"wait-{i}", className="Other", mode=ModeEnum.PASSIVE) for i in range(300)])
    dispatcher = Dispatcher(service)
    # When a Job task is created and the pass for it runs
    create(service, "new")
    assigned = dispatcher.dispatch_pending(["new"])
    # Then it is assigned, and the pass read it and at most the queue's head, not the backlog
    assert assigned == [("new", "a")]
    assert dispatcher.last_considered <= QUEUE_HEAD + 1
    # While the sweep still looks at every waiting task
    dispatcher.sweep()
    assert dispatcher.last_considered == 300
