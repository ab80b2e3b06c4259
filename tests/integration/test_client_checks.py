"""SkaldsClient.create_task checks a task as the API does (one shared check): against the classes
and attachment models the online skalds advertise, on the embedded backend with a real node."""

from __future__ import annotations

import pytest

from skalds.errors import InvalidAttachments, UnknownWorkerClass
from skalds.model.task import Task, TaskLifecycleStatus
from tests.support.procs import ROOT, Proc, base_env, wait_for
from tests.support.workers import read_events

S = TaskLifecycleStatus
RUNNER = ROOT / "tests" / "support" / "run_skald.py"


@pytest.fixture
def node(procs, home, tmp_path) -> Proc:
    env = base_env(home, EVENTS_FILE=str(tmp_path / "events.jsonl"), SKALDS_TEST_CAMERA="1")
    proc = Proc.python(RUNNER, "node", "node-a", env=env, log=tmp_path / "node-a.log")
    procs.append(proc)
    proc.wait_output(r"listening for commands as group skald-node-a")
    return proc


def mains(tmp_path, task_id: str) -> list[dict]:
    return [e for e in read_events(str(tmp_path / "events.jsonl")) if e["task"] == task_id and e["event"] == "main"]


def test_create_task_refuses_attachments_the_model_would_not_take(node, client):
    # When a key is misspelled, Then InvalidAttachments names it and the close match, and nothing is stored
    with pytest.raises(InvalidAttachments) as err:
        client.create_task(Task(id="typo", className="Camera", attachments={"rtspUrl": "x", "fixframe": 3}))
    assert {"field": "attachments.fixframe", "message": "unknown attachment 'fixframe' (did you mean 'fixFrame'?)"} in (
        err.value.details
    )
    # And a wrong type names its field
    with pytest.raises(InvalidAttachments) as err:
        client.create_task(Task(id="typo", className="Camera", attachments={"rtspUrl": "x", "fixFrame": "a"}))
    assert [d["field"] for d in err.value.details] == ["attachments.fixFrame"]
    assert client.get("typo") is None


def test_create_task_takes_field_names_and_stores_aliases(node, client, tmp_path):
    # When a task gives the README model's fields by name and goes straight to the node
    task = client.create_task(
        Task(id="cam", className="Camera", attachments={"rtsp_url": "rtsp://cam/1", "fix_frame": 4}), executor="node-a"
    )
    # Then it is stored by alias and runs with those values
    assert task.attachments == {"rtspUrl": "rtsp://cam/1", "fixFrame": 4}
    wait_for(lambda: mains(tmp_path, "cam"), what="cam main")
    assert mains(tmp_path, "cam")[0]["fix_frame"] == 4


def test_a_class_no_online_skald_runs_is_stored_with_a_warning_or_refused(node, client):
    # When the class is not run by any online skald
    _, warnings = client.check_task(Task(id="w", className="Camra", attachments={}))
    # Then the check warns, naming the close match
    assert warnings == [
        "no online skald runs class 'Camra' (did you mean 'Camera'?); the task waits until one does, "
        "and its attachments could not be validated"
    ]
    # And create_task stores it to wait, unless the caller requires the class
    assert client.create_task(Task(id="w", className="Camra", attachments={})).lifecycle_status == S.CREATED
    with pytest.raises(UnknownWorkerClass, match=r"'Camra'.*known classes: .*Camera"):
        client.create_task(Task(id="w2", className="Camra", attachments={}), require_class=True)
    assert client.get("w2") is None
    # And validate=False stores what it is given, unchecked
    stored = client.create_task(Task(id="raw", className="Camera", attachments={"fixframe": 1}), validate=False)
    assert stored.attachments == {"fixframe": 1}
