"""Delayed start (``notBefore``): never dispatched before its time, and soon after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from skalds.controller.config import ControllerConfig
from skalds.controller.dispatcher import Dispatcher
from skalds.controller.schemas import TaskCreate
from skalds.controller.service import ControllerService
from skalds.errors import InvalidRequest
from skalds.model.task import now_ms
from tests.controller.conftest import online
from tests.support.procs import wait_for


@pytest.fixture
def service(home: Path):
    svc = ControllerService(ControllerConfig(skalds_home=str(home), redis_key_ttl=60, monitor_heartbeat_timeout=120))
    yield svc
    svc.close()


def _node(service: ControllerService, skald_id: str) -> None:
    service.state.register_skald(skald_id, "node", ["Job"], {"Job": {"type": "object"}})
    service.state.skald_heartbeat(skald_id, 1, [], ["Job"])


def _create(service: ControllerService, task_id: str, **fields: object) -> None:
    service.create_task(TaskCreate.model_validate({"id": task_id, "className": "Job", "attachments": {}, **fields}))


def test_the_dispatcher_remembers_when_a_delayed_task_becomes_due(service):
    # Given a node and a task that may start only 0.3 s from now
    _node(service, "a")
    dispatcher = Dispatcher(service)
    at = now_ms() + 300
    _create(service, "later", notBefore=at)

    # When a pass runs before that time
    assigned = dispatcher.dispatch_pending(["later"])

    # Then it stays Created, and the dispatcher knows when it is due
    assert assigned == [] and service.store.require("later").executor is None
    assert dispatcher.next_due_ms == at and dispatcher.status()["nextDue"] == at
    assert dispatcher.dispatch_due() == []  # not yet

    # And once due, the look for due tasks assigns it (no sweep needed)
    wait_for(lambda: now_ms() >= at, timeout=2, interval=0.01, what="notBefore reached")
    assert dispatcher.dispatch_due() == [("later", "a")]
    assert dispatcher.next_due_ms is None


def test_not_before_at_or_after_the_deadline_is_refused(service):
    # When a task would be cancelled by its deadline before it may start
    _node(service, "a")
    now = now_ms()
    with pytest.raises(InvalidRequest, match="notBefore is not before deadlineDateTime") as caught:
        _create(service, "never", notBefore=now + 60_000, deadlineDateTime=now + 30_000)

    # Then the error names the field, and nothing was stored
    assert caught.value.details == [{"field": "notBefore", "message": "must be before deadlineDateTime"}]
    assert service.store.get("never") is None


def test_a_delayed_task_starts_no_earlier_than_not_before_and_soon_after(start_controller, start_skald, events):
    # Given a controller whose sweep is far away (the wake-up for the due time must do the work) and a node
    api = start_controller(DISPATCHER_INTERVAL="30")
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")

    # When a task is created to start 1.5 s from now
    at = now_ms() + 1500
    created = api.create(id="later", className="Recorder", attachments={"duration": 0}, notBefore=at)

    # Then it waits, Created, with its notBefore in the API
    assert created["status"] == "Created" and created["executor"] is None and created["notBefore"] == at
    # And its worker starts no earlier than that, and within a second after
    wait_for(lambda: events("later", "main"), timeout=5, interval=0.02, what="the delayed task runs")
    started = events("later", "main")[0]["t"] * 1000
    assert at <= started < at + 1000, f"started {started - at:.0f} ms after notBefore"
    wait_for(lambda: api.status_is("later", "Finished"), what="Finished")


def test_a_bad_not_before_gets_a_clear_error(start_controller):
    api = start_controller()
    response = api.http.post("/api/tasks", json={"className": "Recorder", "attachments": {}, "notBefore": -5})
    assert response.status_code == 422
    assert "notBefore" in response.text
