"""A task's recent log lines reach the state cache (docs/wire-formats.md, log lines): real skald
and worker processes, a real SQLite file, and a real Redis server."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import redis

from skalds.backends.cache.state import TASK_LOG_MAX_LEN, StateView, task_logs_key
from skalds.backends.factory import open_cache
from skalds.client import SkaldsClient
from skalds.config.skald_config import SkaldConfig
from skalds.model.task import Task, TaskLifecycleStatus
from tests.support.procs import ROOT, Proc, alive, base_env, wait_for
from tests.support.servers import RedisServer, free_port
from tests.support.workers import read_events

S = TaskLifecycleStatus
WORKERS = ROOT / "tests" / "integration" / "log_tail_workers.py"
SKALDS = [sys.executable, "-m", "skalds"]
#: Heartbeats (and so log batches) every 0.2 s in these tests.
INTERVAL = 0.2


def run_skald(procs: list[Proc], home: Path, tmp: Path, mode: str, skald_id: str, *args: str, **env: str) -> Proc:
    environ = base_env(home, EVENTS_FILE=str(tmp / "events.jsonl"), SKALDS_HEARTBEAT_INTERVAL=str(INTERVAL), **env)
    cmd = [*SKALDS, "run", "--module", str(WORKERS), "--mode", mode, "--id", skald_id, *args]
    p = Proc(cmd, environ, tmp / f"{skald_id}-{len(procs)}.log")
    procs.append(p)
    return p


def start_node(procs: list[Proc], home: Path, tmp: Path, skald_id: str = "node-1", **env: str) -> Proc:
    p = run_skald(procs, home, tmp, "node", skald_id, **env)
    p.wait_output(rf"listening for commands as group skald-{skald_id}", timeout=20)
    return p


def events(tmp: Path, task: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in read_events(str(tmp / "events.jsonl")) if e["task"] == task and e["event"] == kind]


def messages(view: StateView, task_id: str) -> list[str]:
    return [line["message"] for line in view.task_logs(task_id, limit=TASK_LOG_MAX_LEN)[0]]


def assert_in_order(view: StateView, task_id: str) -> list[dict[str, Any]]:
    """Every item of the task's list, raw: seq strictly increasing in list order."""
    items = [json.loads(i) for i in view.cache.lrange(task_logs_key(task_id))]
    seqs = [i["seq"] for i in items]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert all(set(i) == {"seq", "timestamp", "level", "message"} for i in items)
    return items


def wait_line(view: StateView, task_id: str, text: str, timeout: float = 2 * INTERVAL + 2.0) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        lines = view.task_logs(task_id, limit=TASK_LOG_MAX_LEN)[0]
        return next((line for line in lines if line["message"] == text), None)

    line: dict[str, Any] = wait_for(find, timeout=timeout, what=f"{text!r} in the log tail of {task_id}")
    return line


def check_lines_arrive(client: SkaldsClient, view: StateView, tmp: Path) -> None:
    """The common scenario: lines of main and the update handler, a secret, the final lines."""
    secret = "tail-Pa55-word-42"
    client.create_task(
        Task(id="t1", className="Chatty", attachments={"lines": 3, "secret": secret, "duration": 30}),
        executor="node-1",
    )
    # Lines logged in main appear within ~2 heartbeat intervals of being logged
    last = wait_line(view, "t1", "main line 2")
    assert time.time() * 1000 - last["timestamp"] <= 2 * INTERVAL * 1000 + 400
    assert [m for m in messages(view, "t1") if m.startswith("main line")] == [f"main line {i}" for i in range(3)]
    # A registered secret is masked
    assert "connecting with ***" in messages(view, "t1")

    # The update handler's lines follow
    client.update_attachments("t1", {"value": 7})
    wait_line(view, "t1", "update value=7")

    # The lines logged just before exit are there, then the skald's line about the exit
    client.cancel("t1")
    wait_for(lambda: events(tmp, "t1", "release"), what="release")
    wait_line(view, "t1", "released")
    exit_line = wait_line(view, "t1", "worker process exited: Cancelled (exit code 143, cancel)")
    items = assert_in_order(view, "t1")
    assert items[-1] == exit_line
    assert [i["seq"] for i in items] == list(range(1, len(items) + 1))
    assert all(secret not in json.dumps(i) for i in items)


def test_node_worker_lines_reach_the_sqlite_cache(procs, home, tmp_path, client, view):
    start_node(procs, home, tmp_path)
    check_lines_arrive(client, view, tmp_path)


def test_a_paused_task_says_paused_in_its_log_and_the_skalds(procs, home, tmp_path, client, view):
    # Given a running task
    node = start_node(procs, home, tmp_path)
    client.create_task(Task(id="p1", className="Chatty", attachments={"lines": 0, "duration": 30}), executor="node-1")
    wait_for(lambda: client.get("p1").lifecycle_status == TaskLifecycleStatus.RUNNING, what="running")
    # When it is paused
    client.pause("p1")
    # Then both its log tail and the skald's log call it Paused, not Cancelled
    wait_line(view, "p1", "worker process exited: Paused (exit code 143, pause)")
    node.wait_output(r"worker p1 exited \(Paused, code 143, pause\)")
    assert client.get("p1").lifecycle_status == TaskLifecycleStatus.PAUSED


def test_node_worker_lines_reach_redis(procs, home, tmp_path, client, redis_server: RedisServer):
    redis.Redis.from_url(redis_server.url).flushdb()
    start_node(procs, home, tmp_path, SKALDS_CACHE_URL=redis_server.url)
    cache = open_cache(redis_server.url)
    try:
        check_lines_arrive(client, StateView(cache, 5.0), tmp_path)
        raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
        assert raw.type(task_logs_key("t1")) == "list"
        assert 0 < raw.ttl(task_logs_key("t1")) <= 86400
        raw.close()
    finally:
        cache.close()


def test_a_burst_neither_blocks_the_worker_nor_breaks_the_channel(procs, home, tmp_path, client, view):
    # Given a worker that logs 5,000 lines at once in main
    start_node(procs, home, tmp_path)
    client.create_task(
        Task(id="b1", className="Chatty", attachments={"lines": 0, "burst": 5000, "duration": 30}), executor="node-1"
    )

    # Then its main loop went on (the burst took no longer than logging itself takes)
    burst = wait_for(lambda: events(tmp_path, "b1", "burst"), timeout=20, what="burst done")[0]
    assert burst["seconds"] < 10
    # And the last lines arrive, at most 500 kept, in order, with a line saying how many were dropped
    wait_line(view, "b1", "after the burst", timeout=5)
    wait_for(lambda: any("log lines dropped" in m for m in messages(view, "b1")), timeout=5, what="drop count")
    items = assert_in_order(view, "b1")
    assert len(items) <= TASK_LOG_MAX_LEN
    dropped = sum(int(i["message"].split()[0]) for i in items if "log lines dropped" in i["message"])
    assert dropped > 0 and items[-1]["seq"] >= 5000
    # And the channel still works: heartbeats, updates, status
    client.update_attachments("b1", {"value": 3})
    wait_line(view, "b1", "update value=3")
    assert client.get("b1").lifecycle_status == S.RUNNING
    assert client.task_state("b1")["heartbeat"] is not None


def test_lines_before_a_normal_finish_and_seq_across_a_restart(procs, home, tmp_path, client, view):
    # Given a task running on a node
    node = start_node(procs, home, tmp_path)
    client.create_task(Task(id="r1", className="Chatty", attachments={"lines": 2, "duration": 30}), executor="node-1")
    wait_line(view, "r1", "main line 1")
    first_pid = events(tmp_path, "r1", "main")[0]["pid"]

    # When the skald stops (the worker exits) and starts again (a new worker process)
    node.signal(signal.SIGTERM)
    assert node.wait(20) == 0
    assert not alive(first_pid)
    wait_line(view, "r1", "worker process exited: Cancelled (exit code 143, shutdown)")
    before = assert_in_order(view, "r1")
    start_node(procs, home, tmp_path)
    wait_for(lambda: len(events(tmp_path, "r1", "main")) == 2, timeout=20, what="second run")

    # Then the second run's lines come after the first run's, seq still increasing
    wait_for(lambda: messages(view, "r1").count("main line 1") == 2, what="second run's lines")
    items = assert_in_order(view, "r1")
    assert items[: len(before)] == before and items[len(before)]["seq"] == before[-1]["seq"] + 1

    # When a task finishes by itself, its last lines are there
    client.create_task(Task(id="f1", className="Chatty", attachments={"lines": 1, "duration": 0}), executor="node-1")
    wait_for(lambda: client.get("f1").lifecycle_status == S.FINISHED, timeout=10, what="f1 Finished")
    wait_line(view, "f1", "worker process exited: Finished (exit code 0)")
    assert messages(view, "f1")[-3:] == ["main done", "released", "worker process exited: Finished (exit code 0)"]


def test_edge_worker_lines_reach_the_cache(procs, home, tmp_path, view):
    yml = tmp_path / "tasks.yml"
    yml.write_text("TaskWorkers:\n  e1:\n    className: Chatty\n    attachments:\n      lines: 2\n")
    p = run_skald(procs, home, tmp_path, "edge", "edge-1", "--yaml", str(yml))
    p.wait_output(r"listening for commands", timeout=20)
    wait_line(view, "e1", "main line 1")
    assert_in_order(view, "e1")


def test_single_process_lines_reach_the_cache_and_the_end_too(procs, home, tmp_path, view):
    yml = tmp_path / "job.yml"
    yml.write_text(
        "TaskWorkers:\n  job1:\n    className: Chatty\n    attachments:\n      lines: 2\n      duration: 0\n"
    )
    url = SkaldConfig(skalds_home=str(home)).embedded_url
    p = run_skald(procs, home, tmp_path, "single_process", "sp-1", "--yaml", str(yml), SKALDS_CACHE_URL=url)
    assert p.wait(30) == 0
    # (the whole process is the task's: its other lines, e.g. about backends, are there too)
    ours = [m for m in messages(view, "job1") if m in ("main line 0", "main line 1", "main done", "released")]
    assert ours == ["main line 0", "main line 1", "main done", "released"]
    assert_in_order(view, "job1")


def test_a_dead_cache_disturbs_neither_worker_nor_skald(procs, home, tmp_path, client):
    # Given a node whose cache server is unreachable (store and bus are the embedded ones)
    node = start_node(procs, home, tmp_path, SKALDS_CACHE_URL=f"redis://127.0.0.1:{free_port()}/0")

    # When a task runs, logs, takes an update and finishes
    client.create_task(Task(id="d1", className="Chatty", attachments={"lines": 50, "duration": 1}), executor="node-1")
    wait_for(lambda: events(tmp_path, "d1", "main"), timeout=10, what="main")
    client.update_attachments("d1", {"value": 2})
    wait_for(lambda: events(tmp_path, "d1", "update"), timeout=10, what="update")

    # Then it finishes normally and the skald is still there
    wait_for(lambda: client.get("d1").lifecycle_status == S.FINISHED, timeout=15, what="d1 Finished")
    assert node.popen.poll() is None
