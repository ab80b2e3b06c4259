"""The command line and the node example, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from skalds.client import SkaldsClient
from skalds.config.skald_config import SkaldConfig
from skalds.model.task import Task
from tests.support.procs import ROOT, Proc, base_env

SKALDS = [sys.executable, "-m", "skalds"]


def test_task_list_and_show_read_the_embedded_store(home):
    # Given two tasks in the embedded store
    with SkaldsClient(SkaldConfig(skalds_home=str(home))) as client:
        client.create_task(Task(id="cam-front", className="MyWorker", attachments={"fixFrame": 3}, priority=4))
        client.create_task(Task(id="cam-back", className="MyWorker"), executor="node-9")
    env = base_env(home, COLUMNS="160")

    # When they are listed and one is shown
    listed = subprocess.run([*SKALDS, "task", "list"], env=env, capture_output=True, text=True, check=True).stdout
    shown = subprocess.run(
        [*SKALDS, "task", "show", "cam-front"], env=env, capture_output=True, text=True, check=True
    ).stdout
    as_json = subprocess.run(
        [*SKALDS, "task", "list", "--status", "assigning", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    # Then the table has both rows with their status and executor, and show prints the attachments
    assert "cam-front" in listed and "cam-back" in listed and "Created" in listed and "node-9" in listed
    assert "tasks 1-2 of 2 (page 1 of 1" in listed
    assert '"fixFrame": 3' in shown and "priority" in shown
    assert [t["id"] for t in json.loads(as_json)] == ["cam-back"]


def test_task_show_and_list_reject_bad_input_clearly(home):
    env = base_env(home)
    missing = subprocess.run([*SKALDS, "task", "show", "nope"], env=env, capture_output=True, text=True)
    assert missing.returncode == 1 and "no task with id 'nope'" in missing.stderr
    bad = subprocess.run([*SKALDS, "task", "list", "--status", "Sleeping"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown status" in bad.stderr and "Running" in bad.stderr


def test_run_refuses_a_module_without_workers(home, tmp_path):
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    res = subprocess.run([*SKALDS, "run", "--module", str(empty)], env=base_env(home), capture_output=True, text=True)
    assert res.returncode == 2 and "no worker classes" in res.stderr


def test_node_example_runs_as_documented(procs, home, tmp_path):
    # Given the node example's skald (as the README says: python workers.py node-1)
    folder = ROOT / "examples" / "node"
    node = Proc.python(folder / "workers.py", "node-1", env=base_env(home), log=tmp_path / "node.log", cwd=folder)
    procs.append(node)
    node.wait_output(r"listening for commands")

    # When the example client creates, updates and cancels a task
    out = subprocess.run(
        [sys.executable, str(folder / "create_and_update.py")],
        env=base_env(home),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then the worker saw the update and the task ended Cancelled on node-1
    assert out.returncode == 0, out.stderr
    assert "Cancelled on node-1" in out.stdout
    node.wait_output(r"step 1 -> 10")
    node.wait_output(r"released at total=")
