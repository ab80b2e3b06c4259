"""Attachments far larger than one channel datagram (~200 KB by default) reach their workers whole:
at start (fresh fork and reused process) and as hot updates. Real node skald, real workers."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from skalds.model.task import Task, TaskLifecycleStatus
from tests.support.procs import ROOT, Proc, base_env, wait_for
from tests.support.workers import read_events

S = TaskLifecycleStatus
RUNNER = ROOT / "tests" / "support" / "run_skald.py"
SIZE = 900_000  # the controller accepts bodies up to 1 MiB


def start_node(procs: list[Proc], home: Path, tmp: Path) -> Proc:
    env = base_env(home, EVENTS_FILE=str(tmp / "events.jsonl"))
    p = Proc.python(RUNNER, "node", "node-a", env=env, log=tmp / "node-a.log")
    procs.append(p)
    p.wait_output(r"listening for commands as group skald-node-a")
    return p


def events(tmp: Path, task: str, kind: str) -> list[dict]:
    return [e for e in read_events(str(tmp / "events.jsonl")) if e["task"] == task and e["event"] == kind]


def blob(size: int = SIZE) -> str:
    return os.urandom(size // 2).hex()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_900_kb_task_starts_and_a_900_kb_update_is_applied(procs, home, tmp_path, client):
    node = start_node(procs, home, tmp_path)
    first = blob()
    client.create_task(Task(id="big", className="Digest", attachments={"blob": first}), executor="node-a")

    # The worker starts with its attachments intact
    main = wait_for(lambda: events(tmp_path, "big", "main"), what="main of big")[0]
    assert (main["size"], main["sha256"]) == (SIZE, sha(first))
    wait_for(lambda: client.get("big").lifecycle_status == S.RUNNING, what="big Running")

    # A 900 KB hot update reaches the running worker and the store follows what it applied
    second = blob()
    client.update_attachments("big", {"blob": second})
    update = wait_for(lambda: events(tmp_path, "big", "update"), what="update of big")[0]
    assert (update["size"], update["sha256"], update["pid"]) == (SIZE, sha(second), main["pid"])

    # A 900 KB update straight to the worker: the worker's answer (its whole attachments) comes
    # back over its channel and the store follows it
    third = blob()
    client.send_worker_update("big", {"blob": third})
    wait_for(lambda: len(events(tmp_path, "big", "update")) == 2, what="direct update of big")
    assert events(tmp_path, "big", "update")[1]["sha256"] == sha(third)
    wait_for(lambda: client.get("big").attachments["blob"] == third, what="store follows the worker")
    assert "Message too long" not in node.output()
    client.cancel("big")
    wait_for(lambda: client.get("big").lifecycle_status == S.CANCELLED, what="big Cancelled")


def test_a_reused_process_gets_a_900_kb_task(procs, home, tmp_path, client):
    start_node(procs, home, tmp_path)
    client.create_task(Task(id="warm", className="ReusedDigest", attachments={"duration": 0}), executor="node-a")
    wait_for(lambda: client.get("warm").lifecycle_status == S.FINISHED, what="warm Finished")
    warm = events(tmp_path, "warm", "main")[0]["pid"]

    # The next task of the class goes to the idle process in a run message
    text = blob()
    client.create_task(
        Task(id="next", className="ReusedDigest", attachments={"duration": 0, "blob": text}), executor="node-a"
    )
    wait_for(lambda: client.get("next").lifecycle_status == S.FINISHED, what="next Finished")
    main = events(tmp_path, "next", "main")[0]
    assert (main["pid"], main["size"], main["sha256"]) == (warm, SIZE, sha(text))
