"""Create latency of ``POST /api/tasks`` with and without a backlog of waiting tasks.

The controller app runs in this process (ASGI, no sockets) on a fresh embedded backend with one
node skald advertising ``Job`` (its cache entries only; no worker runs). A backlog is ``--backlog``
Created Passive tasks of a class no node runs, so every dispatch pass finds them waiting and can
place none — as when a fleet lacks a class for a while. Each run measures ``--n`` creates of
``Job`` (each is stored, dispatched to the node and answered) and prints the median and p90 in ms,
first with no backlog, then with it.

    python bench/create_backlog.py                       # 0 and 2,000 waiting tasks, 200 creates each
    python bench/create_backlog.py --backlog 5000 --n 100

It only uses the public controller API, so it measures an older checkout as well
(``PYTHONPATH=<checkout> python bench/create_backlog.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

from fastapi.testclient import TestClient

from skalds.controller.app import create_app
from skalds.controller.config import ControllerConfig
from skalds.model.task import ModeEnum, Task

SCHEMA = {"type": "object"}


def measure(backlog: int, n: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="skalds-bench-") as home:
        config = ControllerConfig(
            skalds_home=home, redis_key_ttl=600, monitor_heartbeat_timeout=1200, dispatcher_interval=3600
        )
        with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
            service = client.app.state.service  # type: ignore[attr-defined]
            service.state.register_skald("node-a", "node", ["Job"], {"Job": SCHEMA})
            service.state.skald_heartbeat("node-a", 1, [], ["Job"])
            if backlog:
                waiting = [Task(id=f"wait-{i}", className="Elsewhere", mode=ModeEnum.PASSIVE) for i in range(backlog)]
                service.store.create_many(waiting)
            for _ in range(10):  # warm up: connections, imports, first snapshot
                client.post("/api/tasks", json={"className": "Job", "attachments": {}})
            samples = []
            for _ in range(n):
                started = time.perf_counter()
                response = client.post("/api/tasks", json={"className": "Job", "attachments": {}})
                samples.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 201 and response.json()["executor"] == "node-a", response.text
            return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=2000, help="waiting tasks of the second run (2000)")
    parser.add_argument("--n", type=int, default=200, help="creates measured per run (200)")
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print("| waiting tasks | creates | median (ms) | p90 (ms) |")
    print("|---:|---:|---:|---:|")
    for backlog in (0, args.backlog):
        samples = sorted(measure(backlog, args.n))
        p90 = samples[int(0.9 * (len(samples) - 1))]
        print(f"| {backlog:,} | {len(samples)} | {statistics.median(samples):.1f} | {p90:.1f} |")


if __name__ == "__main__":
    main()
