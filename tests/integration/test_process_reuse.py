"""Reusable worker processes (``BaseTaskWorker.max_tasks_per_process``): real node skalds, real
worker processes and a real SQLite file. ``ReusedRecorder`` allows 3 tasks per process and idles
at most 2 s; ``Recorder`` keeps the default (a fresh process per task)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from skalds.backends.cache.state import TASK_LOG_MAX_LEN
from skalds.client import SkaldsClient
from skalds.errors import WorkerDefinitionError
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.worker.registry import WorkerRegistry
from tests.support.procs import ROOT, Proc, alive, base_env, wait_for
from tests.support.workers import Recorder, read_events

S = TaskLifecycleStatus
RUNNER = ROOT / "tests" / "support" / "run_skald.py"
REUSED = "ReusedRecorder"


def start_node(procs: list[Proc], home: Path, tmp: Path, skald_id: str = "node-a") -> Proc:
    env = base_env(home, EVENTS_FILE=str(tmp / "events.jsonl"), SKALDS_HEARTBEAT_INTERVAL="0.2")
    p = Proc.python(RUNNER, "node", skald_id, env=env, log=tmp / f"{skald_id}-{len(procs)}.log")
    procs.append(p)
    p.wait_output(rf"listening for commands as group skald-{skald_id}")
    return p


def events(tmp: Path, task: str, kind: str | None = None) -> list[dict]:
    return [
        e for e in read_events(str(tmp / "events.jsonl")) if e["task"] == task and (kind is None or e["event"] == kind)
    ]


def pid_of(tmp: Path, task: str) -> int:
    return int(wait_for(lambda: events(tmp, task, "main"), what=f"main of {task}")[0]["pid"])


def run_to_end(client: SkaldsClient, task_id: str, cls: str = REUSED, **attachments: object) -> Task:
    client.create_task(Task(id=task_id, className=cls, attachments={"duration": 0, **attachments}), executor="node-a")
    wait_for(lambda: client.get(task_id).lifecycle_status not in (S.CREATED, S.ASSIGNING, S.RUNNING), what=task_id)
    return client.get(task_id)


def test_a_process_runs_up_to_its_limit_of_tasks_then_a_fresh_one_follows(procs, home, tmp_path, client, view):
    # Given a node and a class that allows 3 tasks per process
    node = start_node(procs, home, tmp_path)

    # When 7 short tasks run one after another
    ids = [f"r{i}" for i in range(7)]
    for i, task_id in enumerate(ids):
        assert run_to_end(client, task_id, someValue=i).lifecycle_status == S.FINISHED

    # Then they ran in 3 processes: 3 + 3 + 1 tasks, each task's hooks exactly once in its own order
    pids = [pid_of(tmp_path, t) for t in ids]
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5] != pids[6] != pids[0]
    for i, task_id in enumerate(ids):
        assert [e["event"] for e in events(tmp_path, task_id)] == ["before", "main", "after", "release"]
        assert events(tmp_path, task_id, "main")[0]["value"] == i  # its own attachments, not the last task's
    # the first process retired after its 3rd task
    wait_for(lambda: not alive(pids[0]), what="the first process exits after 3 tasks")
    assert node.output().count("reused process") == 4

    # And each task's log tail holds its own lines only, numbered from 1
    for i, task_id in enumerate(ids):
        lines = view.task_logs(task_id, limit=TASK_LOG_MAX_LEN)[0]
        texts = [line["message"] for line in lines]
        assert f"recorder main: someValue={i}" in texts
        assert not any(f"someValue={j}" in t for t in texts for j in range(7) if j != i)
        assert lines[0]["seq"] == 1

    # And the idle process is retired after its idle timeout (2 s)
    wait_for(lambda: not alive(pids[6]), timeout=6, what="the idle process retired")
    assert node.popen.poll() is None


def test_failed_or_cancelled_tasks_never_hand_their_process_on(procs, home, tmp_path, client):
    start_node(procs, home, tmp_path)

    # Given a task that finished, whose process now waits for the next one
    assert run_to_end(client, "ok-1").lifecycle_status == S.FINISHED
    first = pid_of(tmp_path, "ok-1")

    # When the next task of the class fails
    failed = run_to_end(client, "bad", fail=True)
    assert failed.lifecycle_status == S.FAILED and "boom from main" in (failed.exception or "")
    # Then it ran in the idle process, which then exits instead of waiting for more
    assert pid_of(tmp_path, "bad") == first
    wait_for(lambda: not alive(first), what="the failed task's process exits")

    # When a long task is cancelled while it runs
    client.create_task(Task(id="long", className=REUSED, attachments={"duration": 60}), executor="node-a")
    long_pid = pid_of(tmp_path, "long")
    assert long_pid != first
    client.cancel("long")
    wait_for(lambda: client.get("long").lifecycle_status == S.CANCELLED, what="long Cancelled")
    # Then its process is gone too, and the next task gets a fresh process
    wait_for(lambda: not alive(long_pid), what="the cancelled task's process exits")
    assert run_to_end(client, "ok-2").lifecycle_status == S.FINISHED
    assert pid_of(tmp_path, "ok-2") not in (first, long_pid)


def test_updates_reach_a_task_in_a_reused_process(procs, home, tmp_path, client):
    start_node(procs, home, tmp_path)
    assert run_to_end(client, "warm").lifecycle_status == S.FINISHED
    warm = pid_of(tmp_path, "warm")

    # When a long task starts in the warm process and gets a hot update
    client.create_task(Task(id="hot", className=REUSED, attachments={"duration": 60}), executor="node-a")
    assert pid_of(tmp_path, "hot") == warm
    wait_for(lambda: client.get("hot").lifecycle_status == S.RUNNING, what="hot Running")
    client.update_attachments("hot", {"someValue": 9})

    # Then its update handler gets it, typed, once
    update = wait_for(lambda: events(tmp_path, "hot", "update"), what="update handled")
    assert update[0]["value"] == 9 and update[0]["typed"] == "RecorderModel"
    # and its heartbeats keep the task alive (a fresh link in the reused process)
    beat = client.task_state("hot")["heartbeat"]
    wait_for(lambda: client.task_state("hot")["heartbeat"] != beat, what="heartbeats go on")
    assert events(tmp_path, "warm", "update") == []
    client.cancel("hot")
    wait_for(lambda: client.get("hot").lifecycle_status == S.CANCELLED, what="hot Cancelled")


def test_default_classes_get_a_fresh_process_per_task(procs, home, tmp_path, client):
    start_node(procs, home, tmp_path)
    for task_id in ("p1", "p2", "p3"):
        assert run_to_end(client, task_id, cls="Recorder").lifecycle_status == S.FINISHED
    pids = [pid_of(tmp_path, t) for t in ("p1", "p2", "p3")]
    assert len(set(pids)) == 3


def test_stopping_the_skald_ends_its_idle_processes(procs, home, tmp_path, client):
    node = start_node(procs, home, tmp_path)
    assert run_to_end(client, "idle-1").lifecycle_status == S.FINISHED
    idle = pid_of(tmp_path, "idle-1")
    assert alive(idle)  # waiting for the next task

    node.signal(signal.SIGTERM)
    assert node.wait(timeout=15) == 0
    wait_for(lambda: not alive(idle), what="the idle process ends with its skald")


def test_a_killed_skald_takes_its_idle_processes_with_it(procs, home, tmp_path, client):
    node = start_node(procs, home, tmp_path)
    assert run_to_end(client, "idle-2").lifecycle_status == S.FINISHED
    idle = pid_of(tmp_path, "idle-2")
    assert alive(idle)

    node.signal(signal.SIGKILL)
    node.wait(timeout=10)
    wait_for(lambda: not alive(idle), what="the idle process dies with its skald")


def test_a_class_limit_makes_a_pool_of_reused_processes(procs, home, tmp_path, client):
    # Given a class that runs at most 2 tasks at once per skald, in reused processes
    node = start_node(procs, home, tmp_path)

    # When 8 tasks of 0.3 s are given to the node at once, and one of the last is cancelled
    ids = [f"pool-{i}" for i in range(8)]
    for task_id in ids:
        task = Task(id=task_id, className="PooledRecorder", attachments={"duration": 0.3})
        client.create_task(task, executor="node-a")
    running_seen: list[int] = []

    def sample() -> bool:
        statuses = [client.get(t).lifecycle_status for t in ids]
        running_seen.append(statuses.count(S.RUNNING))
        return S.ASSIGNING in statuses

    wait_for(sample, what="tasks waiting, Assigning")
    client.cancel("pool-7")

    def ended() -> bool:
        statuses = [client.get(t).lifecycle_status for t in ids]
        running_seen.append(statuses.count(S.RUNNING))
        return all(s in (S.FINISHED, S.CANCELLED) for s in statuses)

    wait_for(ended, timeout=20, what="all ended")

    # Then never more than 2 ran at once, in 2 processes, and the cancelled one never started
    assert max(running_seen) <= 2
    assert [client.get(t).lifecycle_status for t in ids[:7]] == [S.FINISHED] * 7
    assert client.get("pool-7").lifecycle_status == S.CANCELLED
    assert events(tmp_path, "pool-7") == []
    mains = {t: events(tmp_path, t, "main")[0] for t in ids[:7]}
    assert len({m["pid"] for m in mains.values()}) == 2
    spans = sorted((m["t"], events(tmp_path, t, "release")[0]["t"]) for t, m in mains.items())
    overlap = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert overlap <= 2, spans
    # and they started in the order they came (two run at once, so neighbours may swap)
    order = [t for _, t in sorted((m["t"], t) for t, m in mains.items())]
    assert all(abs(order.index(f"pool-{i}") - i) <= 1 for i in range(7)), order
    assert "exited (Failed" not in node.output()


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"max_tasks_per_process": 0}, "max_tasks_per_process must be an int ≥ 1"),
        ({"max_tasks_per_process": "3"}, "max_tasks_per_process must be an int ≥ 1"),
        ({"idle_process_timeout": 0}, "idle_process_timeout must be seconds"),
        ({"idle_process_timeout": -1.0}, "idle_process_timeout must be seconds"),
        ({"max_concurrent_tasks": 0}, "max_concurrent_tasks must be None"),
        ({"max_concurrent_tasks": 1.5}, "max_concurrent_tasks must be None"),
        ({"max_run_time": 0}, "max_run_time must be None"),
        ({"max_run_time": "60"}, "max_run_time must be None"),
    ],
)
def test_bad_reuse_settings_are_refused_when_the_class_is_registered(attrs, message):
    bad = type("BadReuse", (Recorder,), attrs)
    with pytest.raises(WorkerDefinitionError, match=message):
        WorkerRegistry().register(bad)


def test_waiting_tasks_start_highest_priority_first_then_oldest(procs, home, tmp_path, client):
    # Given a pooled class (2 at once per node) whose two slots are taken by long tasks
    start_node(procs, home, tmp_path)
    for blocker in ("b1", "b2"):
        client.create_task(
            Task(id=blocker, className="PooledRecorder", attachments={"duration": 300}), executor="node-a"
        )
    wait_for(lambda: events(tmp_path, "b1", "main") and events(tmp_path, "b2", "main"), what="slots taken")
    # When tasks of priority 0, 5, 10 and another 5 arrive in that order, and wait
    for task_id, priority in (("p0", 0), ("p5", 5), ("p10", 10), ("p5b", 5)):
        task = Task(id=task_id, className="PooledRecorder", priority=priority, attachments={"duration": 0.05})
        client.create_task(task, executor="node-a")
    wait_for(lambda: all(client.get(t).lifecycle_status == S.ASSIGNING for t in ("p0", "p5", "p10", "p5b")))
    # And one slot frees
    client.cancel("b1")
    # Then they run one at a time, highest priority first, the older of equal priorities first
    wait_for(lambda: all(events(tmp_path, t, "after") for t in ("p0", "p5", "p10", "p5b")), timeout=20, what="all ran")
    mains = sorted((e["t"], e["task"]) for t in ("p0", "p5", "p10", "p5b") for e in events(tmp_path, t, "main"))
    assert [t for _, t in mains] == ["p10", "p5", "p5b", "p0"]
