"""Kubernetes manifests for one YAML task: right kind, valid names, the exact task file inside."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from skalds.errors import ConfigError
from skalds.k8s import dns1123_name, render_manifests
from skalds.taskfile import YamlTaskEntry, load_task_file, single_entry_yaml


class MyDataModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    rtsp_url: str = Field(..., alias="rtspUrl")
    fix_frame: int = Field(10, alias="fixFrame")


MODELS: dict[str, type[BaseModel]] = {"MyWorker": MyDataModel}

TASKS = """\
# North gate cameras.
TaskWorkers:
  TaskWorker1:   # runs forever
    isPersistent: true
    attachments:
      fixFrame: 30
      rtspUrl: rtsp://192.168.1.1/camera1
    className: MyWorker

  # counts once, then ends
  Count_Once.2:
    className: MyWorker
    attachments:
      rtspUrl: rtsp://192.168.1.2/camera2
"""

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def load(tmp_path: Path) -> tuple[Path, dict[str, YamlTaskEntry]]:
    path = tmp_path / "tasks.yml"
    path.write_text(TASKS)
    entries, errors = load_task_file(path, MODELS)
    assert errors == []
    return path, entries


def kinds(text: str) -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs) == 2
    return by_kind


def container_of(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def test_persistent_task_becomes_a_config_map_and_a_deployment(tmp_path: Path) -> None:
    # Given a persistent entry and its single-entry task file
    path, entries = load(tmp_path)
    text = single_entry_yaml(path, "TaskWorker1")

    # When its manifests are rendered
    out = render_manifests(
        entries["TaskWorker1"],
        image="registry/cams:1.2",
        yaml_text=text,
        module="cams.workers",
        namespace="edge",
    )

    # Then there is a ConfigMap with the file and a one-replica Deployment that mounts it
    docs = kinds(out)
    config_map, deployment = docs["ConfigMap"], docs["Deployment"]
    assert config_map["apiVersion"] == "v1"
    assert config_map["metadata"]["name"] == "taskworker1-tasks"
    assert config_map["metadata"]["namespace"] == "edge"
    assert config_map["data"] == {"tasks.yml": text}

    assert deployment["apiVersion"] == "apps/v1"
    assert deployment["metadata"]["name"] == "taskworker1"
    assert deployment["metadata"]["namespace"] == "edge"
    assert deployment["metadata"]["annotations"]["skalds/task-id"] == "TaskWorker1"
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    assert pod["volumes"] == [{"name": "tasks", "configMap": {"name": "taskworker1-tasks"}}]

    container = container_of(deployment)
    assert container["image"] == "registry/cams:1.2"
    assert container["command"] == [
        "skalds",
        "run",
        "--mode",
        "single_process",
        "--yaml",
        "/etc/skalds/tasks.yml",
        "--module",
        "cams.workers",
    ]
    assert {"name": "SKALD_MODE", "value": "single_process"} in container["env"]
    assert container["volumeMounts"] == [{"name": "tasks", "mountPath": "/etc/skalds", "readOnly": True}]


def test_long_lines_of_the_task_file_are_not_folded(tmp_path: Path) -> None:
    # Given a task file with a line far longer than any terminal
    path, entries = load(tmp_path)
    text = single_entry_yaml(path, "TaskWorker1").replace("camera1", "camera1/" + "x" * 500)

    # When its manifests are rendered
    out = render_manifests(entries["TaskWorker1"], image="cams:1", yaml_text=text, module=None)

    # Then the line is there whole, in a literal block
    assert "/" + "x" * 500 + "\n" in out
    assert "tasks.yml: |" in out
    assert kinds(out)["ConfigMap"]["data"]["tasks.yml"] == text


def test_one_shot_task_becomes_a_job(tmp_path: Path) -> None:
    # Given an entry that is not persistent
    path, entries = load(tmp_path)
    text = single_entry_yaml(path, "Count_Once.2")

    # When its manifests are rendered without a module or namespace
    out = render_manifests(entries["Count_Once.2"], image="cams:1", yaml_text=text, module=None)

    # Then it is a Job that is not restarted in place and retries 3 times by default
    docs = kinds(out)
    job = docs["Job"]
    assert job["apiVersion"] == "batch/v1"
    assert job["metadata"]["name"] == "count-once-2"
    assert "namespace" not in job["metadata"]
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert docs["ConfigMap"]["metadata"]["name"] == "count-once-2-tasks"
    # And, without a module, the image's own entrypoint runs (no command that would need one),
    # told where the task file is and which mode to run
    container = container_of(job)
    assert "command" not in container
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "SKALD_MODE": "single_process",
        "YAML_FILE": "/etc/skalds/tasks.yml",
    }


def test_job_backoff_limit_is_a_parameter(tmp_path: Path) -> None:
    # Given a one-shot entry
    path, entries = load(tmp_path)

    # When it is rendered with another backoff limit
    out = render_manifests(
        entries["Count_Once.2"],
        image="cams:1",
        yaml_text=single_entry_yaml(path, "Count_Once.2"),
        module=None,
        backoff_limit=0,
    )

    # Then the Job carries it
    assert kinds(out)["Job"]["spec"]["backoffLimit"] == 0


def test_the_config_map_file_runs_exactly_that_entry(tmp_path: Path) -> None:
    # Given the manifests of the persistent entry
    path, entries = load(tmp_path)
    out = render_manifests(
        entries["TaskWorker1"], image="cams:1", yaml_text=single_entry_yaml(path, "TaskWorker1"), module=None
    )

    # When the file from the ConfigMap is loaded as a pod would
    shipped = tmp_path / "shipped.yml"
    shipped.write_text(kinds(out)["ConfigMap"]["data"]["tasks.yml"])
    alone, errors = load_task_file(shipped, MODELS)

    # Then it holds that entry only, with its comments
    assert errors == []
    assert list(alone) == ["TaskWorker1"]
    assert alone["TaskWorker1"].attachments == entries["TaskWorker1"].attachments
    assert "# runs forever" in shipped.read_text()
    assert "Count_Once.2" not in shipped.read_text()


def test_task_file_with_awkward_text_survives_the_manifest() -> None:
    # Given task-file text with trailing spaces, a tab, quotes, a very long line and no final newline
    entry = YamlTaskEntry(task_id="T", class_name="MyWorker", attachments={}, is_persistent=False)
    text = (
        f"TaskWorkers:   \n  T:\n    className: 'MyWorker'\t# x\n    description: {'word ' * 300}\n    name: \"a: b\""
    )

    # When the manifests are rendered
    out = render_manifests(entry, image="cams:1", yaml_text=text, module=None)

    # Then the ConfigMap gives back the same text
    assert kinds(out)["ConfigMap"]["data"]["tasks.yml"] == text


@pytest.mark.parametrize(
    ("task_id", "expected"),
    [
        ("TaskWorker1", "taskworker1"),
        ("Count_Once.2", "count-once-2"),
        ("--Edge Cam #3--", "edge-cam-3"),
    ],
)
def test_names_are_derived_from_the_task_id(task_id: str, expected: str) -> None:
    # Given a task id
    # When a DNS-1123 name is derived
    name = dns1123_name(task_id)

    # Then it is the readable lowercase form
    assert name == expected


def test_long_and_unusable_ids_still_give_valid_distinct_names() -> None:
    # Given two long ids that differ only at the end, and an id with no usable character
    long_a, long_b = "Camera" * 20 + "A", "Camera" * 20 + "B"

    # When names are derived
    names = [dns1123_name(long_a), dns1123_name(long_b), dns1123_name("摄像头")]

    # Then all are valid labels, the long ones distinct
    for name in names:
        assert len(name) <= 63
        assert DNS1123.fullmatch(name), name
    assert names[0] != names[1]
    assert names[2].startswith("task-")


def test_every_object_name_of_a_long_id_is_valid() -> None:
    # Given an entry with a very long id
    entry = YamlTaskEntry(task_id="X" * 150, class_name="MyWorker", attachments={}, is_persistent=True)

    # When its manifests are rendered
    docs = kinds(render_manifests(entry, image="cams:1", yaml_text="TaskWorkers: {}\n", module=None))

    # Then both names are valid DNS-1123 labels
    for doc in docs.values():
        name = doc["metadata"]["name"]
        assert len(name) <= 63
        assert DNS1123.fullmatch(name), name


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"image": " "}, "image"),
        ({"module": ""}, "module"),
        ({"namespace": "Edge_NS"}, "namespace"),
        ({"backoff_limit": -1}, "backoff_limit"),
    ],
)
def test_settings_that_cannot_work_are_refused(kwargs: dict[str, Any], setting: str) -> None:
    # Given an entry and one setting that cannot work
    entry = YamlTaskEntry(task_id="T", class_name="MyWorker", attachments={}, is_persistent=False)
    arguments: dict[str, Any] = {
        "image": "cams:1",
        "yaml_text": "TaskWorkers: {}\n",
        "module": None,
        **kwargs,
    }

    # When manifests are rendered
    # Then a ConfigError names the setting
    with pytest.raises(ConfigError, match=setting):
        render_manifests(entry, **arguments)
