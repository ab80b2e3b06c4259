"""Edge mode: YAML tasks start at once, the file is watched, updates are written back."""

from __future__ import annotations

from pathlib import Path

import psutil

from skalds.model.task import ModeEnum, TaskLifecycleStatus
from tests.support.procs import ROOT, Proc, alive, base_env, wait_for
from tests.support.workers import read_events

S = TaskLifecycleStatus
RUNNER = ROOT / "tests" / "support" / "run_skald.py"

YAML = """\
# Cameras on this box
TaskWorkers:
  cam1:   # the front door
    className: Recorder
    attachments:
      someValue: 1     # frames to skip
      label: front
  cam2:
    className: Recorder
    attachments:
      someValue: 2
"""


def edge(procs: list[Proc], home: Path, tmp: Path, yaml_text: str = YAML, skald_id: str = "edge-1") -> Proc:
    (tmp / "tasks.yml").write_text(yaml_text)
    env = base_env(home, EVENTS_FILE=str(tmp / "events.jsonl"))
    p = Proc.python(RUNNER, "edge", skald_id, str(tmp / "tasks.yml"), env=env, log=tmp / f"{skald_id}.log")
    procs.append(p)
    p.wait_output(r"listening for commands")
    return p


def events(tmp: Path, task: str, kind: str | None = None) -> list[dict]:
    return [
        e for e in read_events(str(tmp / "events.jsonl")) if e["task"] == task and (kind is None or e["event"] == kind)
    ]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_yaml_tasks_start_and_are_recorded_as_active(procs, home, tmp_path, client):
    edge(procs, home, tmp_path)
    wait_for(lambda: events(tmp_path, "cam1", "main") and events(tmp_path, "cam2", "main"), what="both start")
    wait_for(lambda: client.get("cam1") and client.get("cam1").lifecycle_status == S.RUNNING, what="Running")
    task = client.get("cam1")
    assert task.mode == ModeEnum.ACTIVE and task.executor == "edge-1" and task.source == "YAML"
    assert task.attachments == {"duration": 30.0, "fail": False, "someValue": 1, "label": "front", "returns": None}


def test_hot_reload_add_change_remove(procs, home, tmp_path, client):
    edge(procs, home, tmp_path)
    yml = tmp_path / "tasks.yml"
    wait_for(lambda: events(tmp_path, "cam1", "main") and events(tmp_path, "cam2", "main"), what="both run")
    cam1_pid = events(tmp_path, "cam1", "main")[0]["pid"]
    cam2_pid = events(tmp_path, "cam2", "main")[0]["pid"]

    # When an attachment changes: a typed hot update, same process
    edit(yml, "someValue: 1     # frames to skip", "someValue: 5     # frames to skip")
    upd = wait_for(lambda: events(tmp_path, "cam1", "update"), what="hot update")
    assert upd[0]["value"] == 5 and upd[0]["pid"] == cam1_pid
    wait_for(lambda: client.get("cam1").attachments["someValue"] == 5, what="store follows")

    # When an entry is added: it starts
    yml.write_text(yml.read_text() + "  cam3:\n    className: Recorder\n    attachments: {someValue: 3}\n")
    wait_for(lambda: events(tmp_path, "cam3", "main"), what="cam3 starts")

    # When an entry is removed: it stops, release runs, the store says Cancelled
    edit(yml, "  cam2:\n    className: Recorder\n    attachments:\n      someValue: 2\n", "")
    wait_for(lambda: events(tmp_path, "cam2", "release"), what="cam2 released")
    wait_for(lambda: not alive(cam2_pid), what="cam2 gone")
    wait_for(lambda: client.get("cam2").lifecycle_status == S.CANCELLED, what="cam2 Cancelled")
    assert not events(tmp_path, "cam1", "release")


def test_class_change_restarts_the_worker(procs, home, tmp_path):
    edge(procs, home, tmp_path)
    yml = tmp_path / "tasks.yml"
    wait_for(lambda: events(tmp_path, "cam2", "main"), what="cam2 main")
    edit(yml, "  cam2:\n    className: Recorder\n", "  cam2:\n    className: Stubborn\n    isPersistent: false\n")
    # Recorder released, then a Stubborn worker starts for the same id
    wait_for(lambda: events(tmp_path, "cam2", "release"), what="old worker released")
    wait_for(lambda: len(events(tmp_path, "cam2", "main")) == 2, what="new worker")


def test_update_event_is_written_back_keeping_comments(procs, home, tmp_path, client):
    edge(procs, home, tmp_path)
    wait_for(lambda: events(tmp_path, "cam1", "main"), what="cam1 main")

    # When an update arrives as an event (outside producer on taskworker.update)
    client.send_worker_update("cam1", {"someValue": 9})

    # Then the worker gets it, and the YAML holds the new value with every comment kept
    wait_for(lambda: events(tmp_path, "cam1", "update"), what="update")
    expected = YAML.replace("someValue: 1     # frames to skip", "someValue: 9     # frames to skip")
    wait_for(lambda: (tmp_path / "tasks.yml").read_text() == expected, what="write-back")
    # and the skald does not take its own write for an outside edit (no second update)
    client.send_worker_update("cam1", {"label": "probe"})
    wait_for(lambda: len(events(tmp_path, "cam1", "update")) == 2, what="probe")
    assert [e["value"] for e in events(tmp_path, "cam1", "update")] == [9, 9]


def test_invalid_update_is_not_written_back(procs, home, tmp_path, client):
    p = edge(procs, home, tmp_path)
    wait_for(lambda: events(tmp_path, "cam1", "main"), what="cam1 main")
    client.send_worker_update("cam1", {"someValue": "nine"})
    p.wait_output(r"update rejected")
    assert (tmp_path / "tasks.yml").read_text() == YAML
    assert events(tmp_path, "cam1", "update") == []


def test_bad_entries_are_reported_and_the_others_run(procs, home, tmp_path):
    text = YAML + "  cam4:\n    className: NoSuchClass\n"
    text += "  cam5:\n    className: Recorder\n    attachments:\n      someValue: x\n"
    p = edge(procs, home, tmp_path, text)
    wait_for(lambda: events(tmp_path, "cam1", "main") and events(tmp_path, "cam2", "main"), what="good ones run")
    out = p.output()
    assert "tasks.yml" in out and "cam4" in out and "className" in out and "NoSuchClass" in out
    assert "cam5" in out and "someValue" in out and "line 17" in out and "line 13" in out
    assert not events(tmp_path, "cam4") and not events(tmp_path, "cam5")


def test_broken_yaml_edit_keeps_workers_running(procs, home, tmp_path):
    p = edge(procs, home, tmp_path)
    yml = tmp_path / "tasks.yml"
    wait_for(lambda: events(tmp_path, "cam2", "main"), what="running")
    yml.write_text(YAML + "  cam3: [unclosed\n")
    p.wait_output(r"not applied")
    assert "line" in p.output()
    # Nothing was stopped; fixing the file applies the change
    assert not events(tmp_path, "cam1", "release") and not events(tmp_path, "cam2", "release")
    yml.write_text(YAML + "  cam3:\n    className: Recorder\n")
    wait_for(lambda: events(tmp_path, "cam3", "main"), what="cam3 after fix")


def test_an_alias_bomb_written_into_the_file_is_refused_and_workers_keep_running(procs, home, tmp_path):
    # Given an edge skald running two tasks
    p = edge(procs, home, tmp_path)
    yml = tmp_path / "tasks.yml"
    wait_for(lambda: events(tmp_path, "cam1", "main") and events(tmp_path, "cam2", "main"), what="both run")
    pids = [events(tmp_path, cam, "main")[0]["pid"] for cam in ("cam1", "cam2")]
    skald = psutil.Process(p.pid)
    cpu = sum(skald.cpu_times()[:2])

    # When an alias bomb (a billion values from a few hundred bytes) is written into its file
    anchors = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    anchors += [f"l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * 9) + "]" for n in range(1, 9)]
    yml.write_text("\n".join(anchors) + "\n" + YAML.replace("label: front", "label: *l8"))

    # Then the file is refused at once, naming the file and line, in little CPU and memory
    p.wait_output(r"not applied")
    out = p.output()
    assert "tasks.yml, line 16" in out and "aliases" in out
    assert sum(skald.cpu_times()[:2]) - cpu < 2.0 and skald.memory_info().rss < 200 * 1024 * 1024
    # and the running tasks are untouched
    assert all(alive(pid) for pid in pids)
    assert not events(tmp_path, "cam1", "release") and not events(tmp_path, "cam2", "release")
    # and fixing the file applies the change
    yml.write_text(YAML + "  cam3:\n    className: Recorder\n")
    wait_for(lambda: events(tmp_path, "cam3", "main"), what="cam3 after fix")
    assert not events(tmp_path, "cam1", "release")


def test_edge_obeys_cancel_and_remembers_it_across_restart(procs, home, tmp_path, client):
    p = edge(procs, home, tmp_path)
    wait_for(lambda: events(tmp_path, "cam1", "main"), what="cam1 main")
    client.cancel("cam1")
    wait_for(lambda: events(tmp_path, "cam1", "release"), what="cancel stops it")
    wait_for(lambda: client.get("cam1").lifecycle_status == S.CANCELLED, what="Cancelled")
    p.stop()
    # After a restart with the same YAML the cancelled task stays down; the other one runs again
    edge(procs, home, tmp_path)
    wait_for(lambda: len(events(tmp_path, "cam2", "main")) == 2, what="cam2 restarted")
    assert len(events(tmp_path, "cam1", "main")) == 1


def test_a_cancel_replayed_from_before_a_restart_does_not_stop_a_resumed_task(procs, home, tmp_path, client):
    # Given an edge task that was cancelled and then resumed
    first = edge(procs, home, tmp_path, skald_id="edge-a")
    wait_for(lambda: events(tmp_path, "cam1", "main"), what="cam1 main")
    client.cancel("cam1")
    wait_for(lambda: events(tmp_path, "cam1", "release"), what="cancel stops it")
    client.resume("cam1")
    wait_for(lambda: len(events(tmp_path, "cam1", "main")) == 2, what="resumed")
    # When the edge restarts under a new id (a new consumer group looks back and reads that cancel again)
    first.stop()
    second = edge(procs, home, tmp_path, skald_id="edge-b")
    wait_for(lambda: len(events(tmp_path, "cam1", "main")) == 3, what="running again after the restart")
    # Then the stale cancel is ignored: the store says the task runs
    second.wait_output(r"task cam1: ignored a cancel from before this skald started")
    assert len(events(tmp_path, "cam1", "release")) == 2  # the cancel, the first skald's stop
    wait_for(lambda: client.get("cam1").lifecycle_status == S.RUNNING, what="recorded Running")
    assert len(events(tmp_path, "cam1", "release")) == 2


PERSISTENT = """\
TaskWorkers:
  keeper:
    className: Recorder
    isPersistent: true
    attachments: {duration: 0.1, fail: true}
  oneshot:
    className: Recorder
    isPersistent: false
    attachments: {duration: 0.1, fail: true}
"""


def test_a_persistent_task_that_ends_is_restarted_with_backoff_until_cancelled(procs, home, tmp_path, client):
    # Given an edge with a persistent task and a one-shot task that both fail at once
    p = edge(procs, home, tmp_path, yaml_text=PERSISTENT)
    # Then the persistent one is started again, after 1 s, then after 2 s; the one-shot one is not
    wait_for(lambda: len(events(tmp_path, "keeper", "main")) >= 3, timeout=20, what="two restarts")
    starts = [e["t"] for e in events(tmp_path, "keeper", "main")]
    assert starts[1] - starts[0] >= 1.0 and starts[2] - starts[1] >= 2.0, starts
    assert len(events(tmp_path, "oneshot", "main")) == 1
    assert client.get("oneshot").lifecycle_status == S.FAILED
    p.wait_output(r"task keeper ended \(Failed\); persistent, restarting in 4 s")
    # When an operator cancels it while it waits for its next start
    client.cancel("keeper")
    # Then it is not started again
    p.wait_output(r"task keeper is Cancelled in the store; not restarting it", timeout=10)
    assert len(events(tmp_path, "keeper", "main")) == 3
    assert client.get("keeper").lifecycle_status == S.CANCELLED
