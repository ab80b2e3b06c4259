"""Task model, aliases, events and the one status state machine."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skalds.errors import IllegalTransition
from skalds.model.event import TaskEvent, UpdateTaskWorkerEvent
from skalds.model.task import TRANSITIONS, ModeEnum, Task, TaskLifecycleStatus, check_transition

S = TaskLifecycleStatus


def test_task_json_uses_camel_case_aliases() -> None:
    task = Task(id="t", className="W", isPersistent=True, attachments={"a": 1}, mode="Active")
    doc = task.to_json_dict()
    assert doc["className"] == "W" and doc["isPersistent"] is True and doc["lifecycleStatus"] == "Created"
    assert doc["mode"] == "Active" and "createDateTime" in doc and "deadlineDateTime" in doc
    assert Task.model_validate(doc) == task
    assert Task(id="t", class_name="W").class_name == "W"  # field names work too
    assert task.mode is ModeEnum.ACTIVE


def test_task_rejects_bad_priority_and_empty_id() -> None:
    with pytest.raises(ValueError, match="priority"):
        Task(id="t", className="W", priority=11)
    with pytest.raises(ValueError, match="id"):
        Task(id="", className="W")


def test_attachments_model_instance_is_stored_as_json() -> None:
    from pydantic import BaseModel, Field

    class M(BaseModel):
        fix_frame: int = Field(alias="fixFrame")

    assert Task(id="t", className="W", attachments=M(fixFrame=3)).attachments == {"fixFrame": 3}


def test_events_are_wire_compatible() -> None:
    ev = TaskEvent(initiator="api", taskIds=["a", "b"])
    doc = ev.model_dump(by_alias=True)
    assert set(doc) == {"id", "title", "initiator", "recipient", "createDateTime", "updateDateTime", "taskIds"}
    assert TaskEvent.model_validate_json(ev.to_json()).task_ids == ["a", "b"]
    assert UpdateTaskWorkerEvent(attachments={"x": 1}).to_json() == '{"attachments":{"x":1}}'


@pytest.mark.parametrize(
    ("current", "target"),
    [(S.FINISHED, S.RUNNING), (S.CANCELLED, S.RUNNING), (S.CREATED, S.RUNNING), (S.PAUSED, S.RUNNING)],
)
def test_illegal_transitions_raise_with_the_allowed_list(current, target) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current.value} to {target.value}") as info:
        check_transition("t1", current, target)
    assert "allowed from" in str(info.value) and "t1" in str(info.value)


@given(st.sampled_from(list(S)), st.sampled_from(list(S)))
def test_state_machine_is_total_and_consistent(current, target) -> None:
    allowed = target in TRANSITIONS[current] or (current == target and current != S.ASSIGNING)
    try:
        check_transition("t", current, target)
    except IllegalTransition:
        assert not allowed
    else:
        assert allowed


def test_every_status_can_reach_a_final_or_created_state() -> None:
    for status in S:
        assert TRANSITIONS[status] & {S.CREATED, S.CANCELLED, S.FINISHED, S.FAILED, S.ASSIGNING}
