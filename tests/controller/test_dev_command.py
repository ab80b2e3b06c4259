"""``skalds dev``: controller + one node skald on the embedded backend, in one command."""

from __future__ import annotations

import signal
import sys

import httpx

from tests.support.procs import Proc, alive, base_env, wait_for
from tests.support.servers import free_port


def test_skalds_dev_runs_a_task_end_to_end(procs, home, tmp_path):
    # Given `skalds dev` on a free port
    port = free_port()
    dev = Proc([sys.executable, "-m", "skalds", "dev", "--port", str(port)], base_env(home), tmp_path / "dev.log")
    procs.append(dev)
    base = f"http://127.0.0.1:{port}"

    def classes() -> list[str]:
        try:
            r = httpx.get(f"{base}/api/tasks/classes", timeout=2)
        except httpx.HTTPError:
            return []
        return [c.get("className") or c.get("name") for c in r.json().get("items", r.json())] if r.is_success else []

    # Then the example classes are advertised by its node
    wait_for(lambda: {"Counter", "Camera"} <= set(classes()), timeout=30, what="example classes online")

    # When a Counter task is created over the API, it runs, takes an update and is cancelled
    r = httpx.post(f"{base}/api/tasks", json={"className": "Counter", "attachments": {"ticks": 1000, "interval": 0.1}})
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    wait_for(lambda: httpx.get(f"{base}/api/tasks/{task_id}").json()["status"] == "Running", timeout=15, what="Running")
    r = httpx.put(f"{base}/api/tasks/{task_id}/attachments", json={"attachments": {"step": 7}})
    assert r.status_code == 200, r.text
    dev.wait_output(r"step 1 -> 7", timeout=10)
    r = httpx.put(f"{base}/api/tasks/{task_id}/status", json={"status": "Cancelled"})
    assert r.status_code == 200, r.text
    dev.wait_output(r"released at total=", timeout=10)

    # When dev is stopped, its node and workers go too
    family = [p.pid for p in dev.descendants()]
    dev.signal(signal.SIGINT)
    dev.wait(30)
    wait_for(lambda: not any(alive(p) for p in family), timeout=15, what="nothing left")


def test_a_killed_skalds_dev_leaves_no_node_behind(procs, home, tmp_path):
    # Given `skalds dev` with its node skald up
    port = free_port()
    dev = Proc([sys.executable, "-m", "skalds", "dev", "--port", str(port)], base_env(home), tmp_path / "dev.log")
    procs.append(dev)
    dev.wait_output(r"node skald pid \d+", timeout=30)
    wait_for(lambda: dev.descendants(), what="node started")
    family = [p.pid for p in dev.descendants()]

    # When dev itself is killed outright (no chance to stop its node)
    dev.signal(signal.SIGKILL)
    dev.wait(10)

    # Then the kernel tells the node (PR_SET_PDEATHSIG), which stops with its fork server
    wait_for(lambda: not any(alive(p) for p in family), timeout=15, what="node and fork server gone")
