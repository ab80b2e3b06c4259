"""Dependencies that can never finish, updates of ended tasks, deadlines, and a rejected update's
write-back — on the real embedded store and cache, without HTTP (skalds are their cache entries)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from skalds.controller.config import ControllerConfig
from skalds.controller.dispatcher import Dispatcher
from skalds.controller.schemas import TaskCreate
from skalds.controller.service import ControllerService
from skalds.errors import DeadlinePassed, InvalidRequest, TaskEnded
from skalds.model.task import ModeEnum, Task, TaskLifecycleStatus, now_ms
from skalds.node.agent import SkaldAgent

S = TaskLifecycleStatus
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


@pytest.fixture
def service(home: Path):
    svc = ControllerService(ControllerConfig(skalds_home=str(home), task_worker_retry=1))
    svc.state.register_skald("a", "node", ["Job"], {"Job": SCHEMA})
    svc.state.skald_heartbeat("a", 1, [], ["Job"])
    yield svc
    svc.close()


def create(service: ControllerService, task_id: str, **fields: Any) -> Task:
    body = TaskCreate.model_validate({"id": task_id, "className": "Job", "attachments": {}, **fields})
    return service.create_task(body)


def status(service: ControllerService, task_id: str) -> tuple[str, str | None]:
    task = service.store.require(task_id)
    return task.lifecycle_status.value, task.exception


def test_a_task_fails_once_a_dependency_can_never_finish_and_waits_while_one_may(service):
    # Given dependencies that are: Failed with a retry to come, Failed for good, Cancelled, deleted
    dispatcher = Dispatcher(service, retry_budget=1, backoff_base=60)
    for dep in ("retrying", "spent", "cancelled", "deleted"):
        create(service, dep)
    service.store.set_status("retrying", S.FAILED, exception="boom")
    service.store.modify("spent", lambda t: {"lifecycle_status": S.FAILED, "retries": 1})
    service.store.set_status("cancelled", S.CANCELLED)
    for dep in ("retrying", "spent", "cancelled", "deleted"):
        create(service, f"on-{dep}", dependencies=[dep])
    create(service, "on-on-spent", dependencies=["on-spent"])  # two levels down
    service.store.delete("deleted")

    # When the dispatcher passes
    assert dispatcher.sweep().assigned == []

    # Then each task whose dependency can never finish fails, saying which and why
    assert status(service, "on-spent") == ("Failed", "dependency spent failed")
    assert status(service, "on-cancelled") == ("Failed", "dependency cancelled was cancelled")
    assert status(service, "on-deleted") == ("Failed", "dependency deleted was deleted")
    # and the one whose dependency will still be retried waits
    assert status(service, "on-retrying") == ("Created", None)
    history = service.store.require("on-spent").status_history
    assert [(c.status, c.detail) for c in history] == [(S.CREATED, None), (S.FAILED, "dependency spent failed")]

    # When the next pass comes, Then the failure travels down the chain (on-spent will not be
    # retried while its dependency stays failed, though its own budget is untouched)
    dispatcher.sweep()
    assert status(service, "on-on-spent") == ("Failed", "dependency on-spent failed")
    assert service.store.require("on-spent").retries == 0

    # When the retrying dependency fails for good, Then its dependent fails too
    service.store.modify("retrying", lambda t: {"retries": 1})
    dispatcher.sweep()
    assert status(service, "on-retrying") == ("Failed", "dependency retrying failed")


def test_a_dependent_is_retried_once_its_dependency_runs_again(service):
    # Given a task failed because its dependency was cancelled, and a 0.05 s backoff
    dispatcher = Dispatcher(service, retry_budget=1, backoff_base=0.05)
    create(service, "dep")
    service.store.set_status("dep", S.CANCELLED)
    create(service, "child", dependencies=["dep"])
    dispatcher.sweep()
    assert status(service, "child")[0] == "Failed"
    # When the backoff has passed, Then it is not retried while the dependency stays cancelled
    Dispatcher(service, retry_budget=1, backoff_base=0).retry_failed()
    assert status(service, "child")[0] == "Failed"
    # When an operator retries the dependency, Then the dependent is retried too and waits for it
    service.set_status("dep", "Created")
    service.store.set_status("dep", S.PAUSED)  # keep it from being dispatched in this test
    assert Dispatcher(service, retry_budget=1, backoff_base=0).retry_failed() == ["child"]
    assert status(service, "child")[0] == "Created"


def test_an_edge_dependency_that_failed_is_final_unless_persistent(service):
    dispatcher = Dispatcher(service, retry_budget=3)
    for task_id, persistent in (("edge-once", False), ("edge-forever", True)):
        service.store.create(
            Task(id=task_id, className="Job", mode=ModeEnum.ACTIVE, executor="edge", isPersistent=persistent)
        )
        service.store.set_status(task_id, S.FAILED)
        create(service, f"on-{task_id}", dependencies=[task_id])
    dispatcher.sweep()
    assert status(service, "on-edge-once") == ("Failed", "dependency edge-once failed")
    assert status(service, "on-edge-forever") == ("Created", None)  # its edge skald restarts it


def test_attachments_of_a_task_that_ended_for_good_cannot_change(service):
    # Given a Finished, a Cancelled, a Failed-for-good and a Failed-to-be-retried task
    for task_id in ("finished", "cancelled", "spent", "retrying"):
        create(service, task_id, attachments={"n": 1})
    service.store.assign("finished", "a")
    service.store.set_status("finished", S.FINISHED)
    service.store.set_status("cancelled", S.CANCELLED)
    service.store.modify("spent", lambda t: {"lifecycle_status": S.FAILED, "retries": 1})
    service.store.set_status("retrying", S.FAILED)
    # When their attachments are updated, Then the ended ones refuse and keep what they had
    for task_id in ("finished", "cancelled", "spent"):
        version = service.store.require(task_id).version
        with pytest.raises(TaskEnded, match="retry it"):
            service.update_attachments(task_id, {"n": 2})
        task = service.store.require(task_id)
        assert task.attachments == {"n": 1} and task.version == version
    # and the one the dispatcher will still retry takes them (its next run gets them)
    assert service.update_attachments("retrying", {"n": 2}).attachments == {"n": 2}


def test_a_task_past_its_deadline_runs_again_only_once_the_deadline_moves(service):
    # Given a cancelled task and a paused one, both past their deadlines
    for task_id in ("cancelled", "paused"):
        create(service, task_id, deadlineDateTime=now_ms() + 60_000)
        service.store.modify(task_id, lambda t: {"deadline_date_time": now_ms() - 1})
    service.store.set_status("cancelled", S.CANCELLED, exception="deadline passed")
    service.store.set_status("paused", S.PAUSED)
    # When they are retried / resumed, Then the answer says the deadline passed and how to change it
    for task_id in ("cancelled", "paused"):
        with pytest.raises(DeadlinePassed, match=rf"PUT /api/tasks/{task_id}/deadline"):
            service.set_status(task_id, "Created")
    assert status(service, "cancelled")[0] == "Cancelled"
    # When a deadline in the past is given, Then it is refused
    with pytest.raises(InvalidRequest, match="already in the past"):
        service.set_deadline("cancelled", now_ms() - 1000)
    # When the deadline moves later (or goes), Then they run again
    later = now_ms() + 3_600_000
    assert service.set_deadline("cancelled", later).deadline_date_time == later
    assert service.set_deadline("paused", None).deadline_date_time is None
    assert service.set_status("cancelled", "Created").lifecycle_status == S.CREATED
    assert service.set_status("paused", "Created").lifecycle_status == S.CREATED
    # And a deadline at or before the task's notBefore is refused
    create(service, "delayed", notBefore=now_ms() + 600_000)
    with pytest.raises(InvalidRequest, match="notBefore"):
        service.set_deadline("delayed", now_ms() + 60_000)


def _agent(service: ControllerService, skald_id: str = "a") -> Any:
    """What ``SkaldAgent._restore_attachments`` uses of an agent: its id and its store."""
    backends = SimpleNamespace(with_store=lambda what, fn: fn(service.store))
    return SimpleNamespace(skald_id=skald_id, backends=backends)


def _handle(task: Task, running: Any, epoch: int) -> Any:
    return SimpleNamespace(task_id=task.id, epoch=epoch, attachments=running, sent_attachments=None)


def test_a_rejected_stored_update_is_replaced_by_what_the_worker_runs_unless_newer(service):
    # Given a task running on skald a at epoch 1 with {"n": 1}, then updated in the store to {"n": 2}
    create(service, "t", attachments={"n": 1})
    service.store.assign("t", "a")
    service.update_attachments("t", {"n": 2})
    handle = _handle(service.store.require("t"), {"n": 1}, epoch=1)
    # When the worker rejects {"n": 2}, Then the store holds {"n": 1} again, as the worker runs
    SkaldAgent._restore_attachments(_agent(service), handle, {"n": 2})
    assert service.store.require("t").attachments == {"n": 1}
    assert handle.sent_attachments == {"n": 1}  # nothing left to forward

    # Given a newer update {"n": 3} stored after the rejected {"n": 2}
    service.update_attachments("t", {"n": 3})
    # When the rejection of {"n": 2} arrives, Then the newer value stays
    SkaldAgent._restore_attachments(_agent(service), handle, {"n": 2})
    assert service.store.require("t").attachments == {"n": 3}

    # When the task belongs to another skald, or to a newer epoch, Then nothing is written
    SkaldAgent._restore_attachments(_agent(service, "b"), handle, {"n": 3})
    SkaldAgent._restore_attachments(_agent(service), _handle(service.store.require("t"), {"n": 1}, 0), {"n": 3})
    assert service.store.require("t").attachments == {"n": 3}
