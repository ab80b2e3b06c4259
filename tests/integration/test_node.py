"""Node mode across two separate skald processes sharing one SQLite file."""

from __future__ import annotations

import signal
from pathlib import Path

from skalds.backends.bus.base import Topic
from skalds.model.task import Task, TaskLifecycleStatus
from tests.support.procs import ROOT, Proc, alive, base_env, wait_for
from tests.support.workers import read_events

S = TaskLifecycleStatus
RUNNER = ROOT / "tests" / "support" / "run_skald.py"


def start_node(procs: list[Proc], home: Path, tmp: Path, skald_id: str) -> Proc:
    env = base_env(home, EVENTS_FILE=str(tmp / "events.jsonl"))
    p = Proc.python(RUNNER, "node", skald_id, env=env, log=tmp / f"{skald_id}.log")
    procs.append(p)
    p.wait_output(rf"listening for commands as group skald-{skald_id}")
    return p


def events(tmp: Path, task: str, kind: str | None = None) -> list[dict]:
    return [
        e for e in read_events(str(tmp / "events.jsonl")) if e["task"] == task and (kind is None or e["event"] == kind)
    ]


def test_assign_update_cancel_across_two_skalds(procs, home, tmp_path, client):
    # Given two node skalds sharing one SQLite file
    a = start_node(procs, home, tmp_path, "node-a")
    b = start_node(procs, home, tmp_path, "node-b")

    # When a task is created and assigned to node-b
    client.create_task(Task(id="t1", className="Recorder", attachments={"someValue": 1}), executor="node-b")

    # Then it runs on node-b only, and the store says Running on node-b
    wait_for(lambda: events(tmp_path, "t1", "main"), what="main of t1")
    wait_for(lambda: client.get("t1").lifecycle_status == S.RUNNING, what="t1 Running")
    assert client.get("t1").executor == "node-b"
    worker_pid = events(tmp_path, "t1", "main")[0]["pid"]
    assert worker_pid in [c.pid for c in b.descendants()]
    assert worker_pid not in [c.pid for c in a.descendants()]
    assert [e["event"] for e in events(tmp_path, "t1")] == ["before", "main"]

    # When the attachments are updated through the store + task.update.attachment
    client.update_attachments("t1", {"someValue": 7})
    # Then the worker's update handler gets a typed model with the new value
    upd = wait_for(lambda: events(tmp_path, "t1", "update"), what="update handled")
    assert upd[0]["value"] == 7 and upd[0]["typed"] == "RecorderModel"

    # When an outside producer writes straight to taskworker.update
    client.send_worker_update("t1", {"label": "outside"})
    upd = wait_for(lambda: events(tmp_path, "t1", "update")[1:], what="second update")
    # Then it arrives merged onto current values, and the store follows what the worker runs
    assert upd[0]["label"] == "outside" and upd[0]["value"] == 7
    wait_for(lambda: client.get("t1").attachments.get("label") == "outside", what="store follows update")

    # When it is cancelled
    client.cancel("t1")
    # Then release runs once, the process is gone, and the store says Cancelled
    wait_for(lambda: events(tmp_path, "t1", "release"), what="release")
    wait_for(lambda: not alive(worker_pid), what="worker gone")
    assert len(events(tmp_path, "t1", "release")) == 1
    assert client.get("t1").lifecycle_status == S.CANCELLED
    wait_for(lambda: client.task_state("t1")["heartbeat"] == -2, what="heartbeat -2")
    assert "t1" not in a.output()


def test_invalid_update_is_rejected_and_recorded(procs, home, tmp_path, client):
    # Given a running task
    start_node(procs, home, tmp_path, "node-a")
    client.create_task(Task(id="t2", className="Recorder", attachments={"someValue": 1}), executor="node-a")
    wait_for(lambda: events(tmp_path, "t2", "main"), what="main")

    # When an update with a wrong type arrives
    client.send_worker_update("t2", {"someValue": "not a number"})

    # Then the handler is not called, the error is recorded for the task, and the worker keeps running
    err = wait_for(lambda: client.task_state("t2")["error"], what="error recorded")
    assert "someValue" in err and "integer" in err
    assert events(tmp_path, "t2", "update") == []
    # and a valid update afterwards still works on the old values
    client.send_worker_update("t2", {"label": "ok"})
    upd = wait_for(lambda: events(tmp_path, "t2", "update"), what="valid update")
    assert upd[0]["value"] == 1 and upd[0]["label"] == "ok"


def test_task_finishes_and_fails_with_final_states(procs, home, tmp_path, client):
    start_node(procs, home, tmp_path, "node-a")
    # When one task ends normally and one raises
    client.create_task(Task(id="ok", className="Recorder", attachments={"duration": 0}), executor="node-a")
    client.create_task(
        Task(id="bad", className="Recorder", attachments={"duration": 0, "fail": True}), executor="node-a"
    )
    # Then: hook order, final states, heartbeat values, exception text
    wait_for(lambda: client.get("ok").lifecycle_status == S.FINISHED, what="ok Finished")
    wait_for(lambda: client.get("bad").lifecycle_status == S.FAILED, what="bad Failed")
    assert [e["event"] for e in events(tmp_path, "ok")] == ["before", "main", "after", "release"]
    assert [e["event"] for e in events(tmp_path, "bad")] == ["before", "main", "error", "release"]
    assert "boom from main" in client.get("bad").exception
    wait_for(lambda: client.task_state("ok")["heartbeat"] == 200, what="200")
    assert client.task_state("bad")["heartbeat"] == -1
    assert "RuntimeError: boom from main" in client.task_state("bad")["exception"]


def test_unknown_class_fails_the_task_with_a_clear_error(procs, home, tmp_path, client):
    start_node(procs, home, tmp_path, "node-a")
    client.create_task(Task(id="u1", className="NoSuchWorker", attachments={}), executor="node-a")
    wait_for(lambda: client.get("u1").lifecycle_status == S.FAILED, what="u1 Failed")
    assert "NoSuchWorker" in client.get("u1").exception and "Recorder" in client.get("u1").exception


def test_a_task_never_runs_on_two_skalds(procs, home, tmp_path, client):
    # Given a task running on node-a
    start_node(procs, home, tmp_path, "node-a")
    start_node(procs, home, tmp_path, "node-b")
    client.create_task(Task(id="m1", className="Recorder"), executor="node-a")
    wait_for(lambda: events(tmp_path, "m1", "main"), what="main on a")
    first_pid = events(tmp_path, "m1", "main")[0]["pid"]

    # When the store hands it to node-b (a new epoch) and both hear about it
    client.assign("m1", "node-b")

    # Then node-a stops its copy before node-b's copy starts
    wait_for(lambda: len(events(tmp_path, "m1", "main")) == 2, what="main on b")
    release_a = events(tmp_path, "m1", "release")[0]
    main_b = events(tmp_path, "m1", "main")[1]
    assert release_a["pid"] == first_pid and main_b["pid"] != first_pid
    assert release_a["t"] <= main_b["t"]
    wait_for(lambda: client.get("m1").lifecycle_status == S.RUNNING, what="Running on b")
    assert client.get("m1").executor == "node-b"

    # And replayed assign events start nothing twice
    for _ in range(3):
        client._event(Topic.TASK_ASSIGN, "m1", recipient="node-b")
    client.send_worker_update("m1", {"label": "probe"})  # a later event, handled after the replays
    wait_for(lambda: events(tmp_path, "m1", "update"), what="probe update")
    assert len(events(tmp_path, "m1", "main")) == 2


def test_reconcile_starts_tasks_without_any_event(procs, home, tmp_path, client):
    # Given a task assigned in the store while no event is sent (a lost event)
    start_node(procs, home, tmp_path, "node-a")
    client.store.create(Task(id="quiet", className="Recorder"))
    client.store.assign("quiet", "node-a")
    # Then the periodic reconciliation starts it anyway
    wait_for(lambda: events(tmp_path, "quiet", "main"), timeout=5, what="reconciled start")


def test_malformed_events_are_logged_and_skipped(procs, home, tmp_path, client):
    a = start_node(procs, home, tmp_path, "node-a")
    # When garbage arrives on every topic
    for topic in Topic:
        client.bus.publish(topic.value, "x", b"{not json")
    client.bus.publish(Topic.TASK_ASSIGN.value, None, b'{"taskIds": []}')
    client.bus.publish(Topic.TASKWORKER_UPDATE.value, "t", b'{"attachments": 5}')
    # Then each is reported and the skald keeps working
    wait_for(lambda: a.output().count("skipped a malformed event") == 6, what="six skipped events")
    client.create_task(Task(id="after", className="Recorder", attachments={"duration": 0}), executor="node-a")
    wait_for(lambda: client.get("after").lifecycle_status == S.FINISHED, what="still works")


def test_sigkill_of_a_skald_leaves_no_worker(procs, home, tmp_path, client):
    # Given a skald with three running workers
    a = start_node(procs, home, tmp_path, "node-a")
    for i in range(3):
        client.create_task(Task(id=f"k{i}", className="Recorder"), executor="node-a")
    wait_for(lambda: all(events(tmp_path, f"k{i}", "main") for i in range(3)), what="3 running")
    pids = [events(tmp_path, f"k{i}", "main")[0]["pid"] for i in range(3)]
    family = [p.pid for p in a.descendants()]
    assert set(pids) <= set(family)

    # When the skald is killed with SIGKILL
    a.signal(signal.SIGKILL)
    a.wait(5)

    # Then every worker and the fork server go away, and the workers ran their release
    wait_for(lambda: not any(alive(p) for p in family), timeout=10, what="no orphans")
    assert sorted(e["task"] for e in read_events(str(tmp_path / "events.jsonl")) if e["event"] == "release") == [
        "k0",
        "k1",
        "k2",
    ]


def test_graceful_stop_releases_every_worker_and_keeps_ownership(procs, home, tmp_path, client):
    a = start_node(procs, home, tmp_path, "node-a")
    for i in range(5):
        client.create_task(Task(id=f"g{i}", className="Recorder"), executor="node-a")
    wait_for(lambda: all(events(tmp_path, f"g{i}", "main") for i in range(5)), what="5 running")
    family = [p.pid for p in a.descendants()]

    a.signal(signal.SIGTERM)
    assert a.wait(10) == 0
    assert not any(alive(p) for p in family)
    assert all(len(events(tmp_path, f"g{i}", "release")) == 1 for i in range(5))
    # The tasks are still this skald's (Assigning = owned, not running): a restart picks them up.
    assert {client.get(f"g{i}").lifecycle_status for i in range(5)} == {S.ASSIGNING}
    start_node(procs, home, tmp_path, "node-a")
    wait_for(lambda: all(len(events(tmp_path, f"g{i}", "main")) == 2 for i in range(5)), timeout=15, what="resumed")


def test_stubborn_worker_is_killed_after_the_grace_period(procs, home, tmp_path, client):
    start_node(procs, home, tmp_path, "node-a")
    client.create_task(Task(id="s1", className="Stubborn"), executor="node-a")
    wait_for(lambda: events(tmp_path, "s1", "main"), what="main")
    pid = events(tmp_path, "s1", "main")[0]["pid"]
    client.cancel("s1")
    wait_for(lambda: events(tmp_path, "s1", "release"), what="release started")
    # grace period is 3 s in these tests
    wait_for(lambda: not alive(pid), timeout=8, what="SIGKILL after grace")


def test_bursts_of_updates_all_arrive_and_the_last_one_wins(procs, home, tmp_path, client):
    # Given a running task
    start_node(procs, home, tmp_path, "node-a")
    client.create_task(Task(id="b1", className="Recorder", attachments={"someValue": 0}), executor="node-a")
    wait_for(lambda: events(tmp_path, "b1", "main"), what="main")

    # When 60 direct updates arrive back to back (more than a socket queue holds)
    for i in range(1, 61):
        client.send_worker_update("b1", {"someValue": i})
    # Then every one reaches the handler, in order
    wait_for(lambda: len(events(tmp_path, "b1", "update")) == 60, what="60 updates")
    assert [e["value"] for e in events(tmp_path, "b1", "update")] == list(range(1, 61))

    # When stored updates come back to back
    for i in range(100, 106):
        client.update_attachments("b1", {"someValue": i})
    # Then the worker and the store both end on the last one
    wait_for(lambda: events(tmp_path, "b1", "update")[-1]["value"] == 105, what="last stored update")
    wait_for(lambda: client.get("b1").attachments["someValue"] == 105, what="store keeps the last")
    assert client.get("b1").attachments["someValue"] == 105


def test_a_lost_update_event_is_caught_up_by_reconciliation(procs, home, tmp_path, client):
    # Given a running task
    start_node(procs, home, tmp_path, "node-a")
    client.create_task(Task(id="lu", className="Recorder", attachments={"someValue": 1}), executor="node-a")
    wait_for(lambda: events(tmp_path, "lu", "main"), what="main")
    # When its attachments change in the store and no event is sent
    client.store.update_attachments("lu", {"someValue": 42, "label": "x", "duration": 30.0, "fail": False})
    # Then the worker still gets the update, once
    upd = wait_for(lambda: events(tmp_path, "lu", "update"), timeout=5, what="reconciled update")
    assert upd[0]["value"] == 42
    client.send_worker_update("lu", {"label": "later"})  # a direct update is not undone afterwards
    wait_for(lambda: len(events(tmp_path, "lu", "update")) == 2, what="direct update")
    wait_for(lambda: client.get("lu").attachments["label"] == "later", what="store follows")
    time_before = len(events(tmp_path, "lu", "update"))
    # two reconcile periods later nothing more was forwarded
    import time

    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert len(events(tmp_path, "lu", "update")) == time_before
        time.sleep(0.1)


def test_short_tasks_are_finished_not_failed(procs, home, tmp_path, client):
    # Given a node and many tasks whose main returns at once (the worker exits with acks unread)
    node = start_node(procs, home, tmp_path, "node-a")
    ids = [f"short-{i}" for i in range(40)]
    for task_id in ids:
        client.create_task(Task(id=task_id, className="Recorder", attachments={"duration": 0}), executor="node-a")
    # Then every one ends Finished, none is reported Failed on its way
    wait_for(lambda: all(client.get(t).lifecycle_status == S.FINISHED for t in ids), timeout=30, what="all Finished")
    assert "exited (Failed" not in node.output()
    assert "could not forward" not in node.output()


def test_a_task_past_its_max_run_time_is_stopped_and_fails_saying_why(procs, home, tmp_path, client):
    # Given a node, a task that would run 30 s with a max run time of 0.5 s, and one within its limit
    start_node(procs, home, tmp_path, "node-a")
    client.create_task(
        Task(id="slow", className="Recorder", attachments={"duration": 30}, maxRunTime=0.5), executor="node-a"
    )
    client.create_task(
        Task(id="quick", className="Recorder", attachments={"duration": 0.1}, maxRunTime=5), executor="node-a"
    )
    # Then the slow one's worker is stopped (its release runs) and the task fails, saying why
    wait_for(lambda: events(tmp_path, "slow", "release"), timeout=10, what="slow stopped")
    wait_for(lambda: client.get("slow").lifecycle_status == TaskLifecycleStatus.FAILED, what="Failed")
    assert client.get("slow").exception == "stopped after its max run time of 0.5 s"
    assert not events(tmp_path, "slow", "after")
    started, released = events(tmp_path, "slow", "main")[0]["t"], events(tmp_path, "slow", "release")[0]["t"]
    assert 0.4 <= released - started < 5  # the limit counts from the fork, main starts just after
    # And the one within its limit finishes normally
    wait_for(lambda: client.get("quick").lifecycle_status == TaskLifecycleStatus.FINISHED, what="quick Finished")


def test_each_running_task_reports_its_worker_cpu_and_memory(procs, home, tmp_path, client, view):
    # Given a running task whose worker busy-waits (Recorder polls every 20 ms) on a node
    start_node(procs, home, tmp_path, "node-a")
    client.create_task(Task(id="busy", className="Recorder", attachments={"duration": 30}), executor="node-a")
    pid = wait_for(lambda: events(tmp_path, "busy", "main"), what="running")[0]["pid"]
    # Then its usage appears next to its heartbeat: resident memory of that very process, and a CPU rate
    usage = wait_for(
        lambda: (
            (view.task_state("busy")["usage"] or {}).get("cpuPercent") is not None and view.task_state("busy")["usage"]
        ),
        timeout=10,
        what="usage with a CPU rate",
    )
    with open(f"/proc/{pid}/statm") as fh:
        rss = int(fh.read().split()[1]) * 4096
    assert 0.5 * rss < usage["memoryBytes"] < 2 * rss
    assert 0 <= usage["cpuPercent"] < 200
    # And when the task ends its usage goes with it (a lease)
    client.cancel("busy")
    wait_for(lambda: view.task_state("busy")["usage"] is None, timeout=10, what="usage gone")


def test_what_main_returns_is_the_tasks_result(procs, home, tmp_path, client):
    # Given a node and tasks whose main returns JSON, returns something that is not JSON, or fails
    start_node(procs, home, tmp_path, "node-a")
    answer = {"frames": 1200, "labels": ["cat", "dog"], "ok": True}
    client.create_task(
        Task(id="r-json", className="Recorder", attachments={"duration": 0, "returns": answer}), executor="node-a"
    )
    client.create_task(Task(id="r-none", className="Recorder", attachments={"duration": 0}), executor="node-a")
    client.create_task(
        Task(id="r-fail", className="Recorder", attachments={"duration": 0, "fail": True, "returns": 5}),
        executor="node-a",
    )
    done = {
        "r-json": TaskLifecycleStatus.FINISHED,
        "r-none": TaskLifecycleStatus.FINISHED,
        "r-fail": TaskLifecycleStatus.FAILED,
    }
    wait_for(lambda: all(client.get(t).lifecycle_status == s for t, s in done.items()), what="all ended")
    # Then the finished task keeps what main returned; the others have no result
    assert client.get("r-json").result == answer
    assert client.get("r-none").result is None
    assert client.get("r-fail").result is None


def test_a_task_that_ends_while_others_start_is_finished_at_once(procs, home, tmp_path, client):
    # Given a short task and ten long ones already assigned to a node that is not running yet
    for task_id, duration in [("quick", 0), *((f"slow-{i}", 60) for i in range(10))]:
        client.store.create(Task(id=task_id, className="Recorder", attachments={"duration": duration}))
        client.store.assign(task_id, "node-a")
    # When the node starts them all in one pass (the short one ends while the others are forked)
    start_node(procs, home, tmp_path, "node-a")
    wait_for(lambda: all(events(tmp_path, f"slow-{i}", "main") for i in range(10)), timeout=15, what="all started")
    # Then the short one's end is taken at once, not when the next worker happens to exit
    wait_for(lambda: client.get("quick").lifecycle_status == S.FINISHED, timeout=3, what="quick Finished")
    assert events(tmp_path, "quick", "after")
