"""Placement by labels and resources, as pure functions; and the checks of settings, worker classes
and tasks that declare them."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ValidationError

from skalds import BaseTaskWorker, run_main_handler
from skalds.config.skald_config import SkaldConfig
from skalds.controller.placement import Needs, NodeView, candidates, count_used, node_view, resource_item
from skalds.controller.schemas import TaskCreate
from skalds.errors import WorkerDefinitionError
from skalds.model.task import Task, TaskLifecycleStatus

S = TaskLifecycleStatus


def _task(task_id: str = "t", class_name: str = "Job", **fields: Any) -> Task:
    return Task(id=task_id, class_name=class_name, **fields)


def _node(node_id: str, resources: dict[str, float] | None = None, **kw: Any) -> NodeView:
    return NodeView(id=node_id, classes=frozenset({"Job", "Train"}), resources=resources or {}, **kw)


def test_a_task_requiring_nothing_fits_on_every_node_with_its_class():
    nodes = [_node("a"), _node("b", {"gpu": 2}), NodeView(id="c", classes=frozenset({"Other"}))]
    fit, why = candidates(_task(), nodes)
    assert [n.id for n in fit] == ["a", "b"] and why is None


def test_a_resource_a_node_does_not_declare_is_none_there():
    nodes = [_node("a"), _node("b", {"gpu": 1})]
    fit, why = candidates(_task(requires={"gpu": 1}), nodes)
    assert [n.id for n in fit] == ["b"]
    fit, why = candidates(_task(requires={"gpu": 2}), nodes)
    assert fit == [] and why == "no online node has gpu ≥ 2 free"


def test_used_resources_count_and_one_pass_never_overcommits():
    # Given a node with two GPUs, one of them used by a live task it owns
    node = _node("a", {"gpu": 2, "slots": 8})
    count_used(node, [_task("running", requires={"gpu": 1}, executor="a", lifecycle_status=S.RUNNING)])
    assert node.free() == {"gpu": 1.0, "slots": 8.0}

    # When a pass places tasks one after the other, counting each
    placed = []
    for n in range(3):
        task = _task(f"t{n}", requires={"gpu": 1, "slots": 2})
        fit, _ = candidates(task, [node])
        if fit:
            fit[0].take(task)
            placed.append(task.id)

    # Then only one more fits, and the others are told why
    assert placed == ["t0"]
    assert candidates(_task(requires={"gpu": 1}), [node]) == ([], "no online node has gpu ≥ 1 free")
    assert candidates(_task(requires={"slots": 6}), [node]) == ([node], None)


def test_node_selector_labels_must_all_match():
    a = _node("a", labels={"zone": "eu-1", "gpu-model": "a100"})
    b = _node("b", labels={"zone": "us-1"})
    fit, _ = candidates(_task(node_selector={"zone": "eu-1"}), [a, b])
    assert [n.id for n in fit] == ["a"]
    fit, why = candidates(_task(node_selector={"zone": "ap-1"}), [a, b])
    assert fit == [] and why == "no online node has label zone=ap-1"


def test_the_class_declares_needs_and_the_task_overrides_them():
    # Given a node advertising that Train needs a GPU, but having none
    doc = {"labels": {"zone": "eu-1"}, "resources": {"cpu": 4}, "classes": {"Train": {"requires": {"gpu": 1}}}}
    node = node_view("a", ["Job", "Train"], doc)
    assert node.class_needs["Train"] == Needs(requires={"gpu": 1.0}, selector={})

    # Then a Train task waits, unless it says it needs no GPU
    assert candidates(_task(class_name="Train"), [node])[1] == "no online node has gpu ≥ 1 free"
    assert candidates(_task(class_name="Train", requires={}), [node])[0] == [node]
    assert candidates(_task(class_name="Job"), [node])[0] == [node]


def test_a_malformed_placement_document_means_no_labels_and_no_resources():
    node = node_view("a", ["Job"], {"labels": "zone", "resources": {"gpu": "two", "cpu": True}, "classes": []})
    assert node.labels == {} and node.resources == {} and node.class_needs == {}


def test_resource_item_counts_only_the_nodes_live_tasks():
    node = _node("a", {"gpu": 2})
    tasks = [
        _task("r", requires={"gpu": 1}, executor="a", lifecycle_status=S.RUNNING),
        _task("p", requires={"gpu": 1}, executor="a", lifecycle_status=S.PAUSED),
        _task("o", requires={"gpu": 1}, executor="b", lifecycle_status=S.ASSIGNING),
    ]
    assert resource_item(node, tasks) == {"resourcesUsed": {"gpu": 1.0}, "resourcesFree": {"gpu": 1.0}}


def test_settings_are_parsed_and_bad_ones_name_the_setting():
    config = SkaldConfig(skald_labels="zone=eu-1, gpu-model=a100", skald_resources="gpu=2,slots=8")
    assert config.labels == {"gpu-model": "a100", "zone": "eu-1"}
    assert config.resources == {"gpu": 2.0, "slots": 8.0}
    assert SkaldConfig().labels == {} and SkaldConfig().resources == {}
    with pytest.raises(ValidationError, match=r"SKALD_RESOURCES: amount of 'gpu' must be a number ≥ 0"):
        SkaldConfig(skald_resources="gpu=two")
    with pytest.raises(ValidationError, match=r"SKALD_RESOURCES: amount of 'gpu' must be a number ≥ 0"):
        SkaldConfig(skald_resources="gpu=-1")
    with pytest.raises(ValidationError, match=r"SKALD_LABELS: 'zone' is not name=value"):
        SkaldConfig(skald_labels="zone")


class _Model(BaseModel):
    n: int = 0


def test_a_worker_class_with_bad_requirements_is_refused_at_registration():
    class GpuJob(BaseTaskWorker[_Model]):
        requires: ClassVar[dict[str, float]] = {"gpu": 1}
        node_selector: ClassVar[dict[str, str]] = {"zone": "eu-1"}

        @run_main_handler
        def main(self) -> None:
            return None

    GpuJob.validate_definition()

    class BadJob(GpuJob):
        requires: ClassVar[dict[str, float]] = {"gpu": -1}

    with pytest.raises(WorkerDefinitionError, match=r"worker class BadJob: requires: amount of 'gpu'"):
        BadJob.validate_definition()

    class BadLabels(GpuJob):
        node_selector: ClassVar[dict[str, str]] = {"zone": "eu 1"}

    with pytest.raises(WorkerDefinitionError, match=r"worker class BadLabels: node_selector: value 'eu 1'"):
        BadLabels.validate_definition()


def test_a_task_create_checks_requires_and_node_selector():
    body = TaskCreate.model_validate(
        {"className": "Job", "attachments": {}, "requires": {"gpu": 1}, "nodeSelector": {"zone": "eu-1"}}
    )
    assert body.requires == {"gpu": 1.0} and body.nodeSelector == {"zone": "eu-1"}
    with pytest.raises(ValidationError, match=r"requires: amount of 'gpu' must be a number ≥ 0"):
        TaskCreate.model_validate({"className": "Job", "attachments": {}, "requires": {"gpu": "lots"}})
    with pytest.raises(ValidationError, match=r"nodeSelector: label name"):
        TaskCreate.model_validate({"className": "Job", "attachments": {}, "nodeSelector": {"": "x"}})
