"""The fleet features on the real servers (PostgreSQL, Redis 7.0, Tansu): placement by resources,
cordon, results, resource use and delayed start, with a real controller and two real nodes; the
restarts of a persistent edge task, with a real edge skald."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.conftest import Chaos, server_urls
from tests.support.procs import Proc, wait_for


@pytest.fixture
def fleet(
    tmp_path: Path, home: Path, procs: list[Proc], postgres_server, redis_server, kafka_server
) -> Iterator[Chaos]:
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    chaos = Chaos(tmp_path, home, procs, server_urls(postgres_server, kafka_server, redis_server, "fleet"))
    yield chaos
    chaos.close()


def test_placement_cordon_results_usage_and_delayed_start_on_the_servers(fleet: Chaos) -> None:
    c = fleet.controller()
    gpu, plain = f"gpu-{fleet.tag}", f"plain-{fleet.tag}"
    fleet.node(gpu, SKALD_RESOURCES="gpu=1", SKALD_LABELS="zone=eu-1")
    fleet.node(plain)

    def online() -> bool:
        items = {s["id"]: s["status"] for s in c.http.get("/api/skalds").json()["items"]}
        return items.get(gpu) == "online" and items.get(plain) == "online"

    wait_for(online, timeout=20, what="both nodes online")

    # A task needing a GPU runs on the node that has one, and its result is stored
    done = c.create(
        id=f"r-{fleet.tag}",
        className="Recorder",
        requires={"gpu": 1},
        attachments={"duration": 0.2, "returns": {"frames": 42}},
    )
    finished = wait_for(
        lambda: next((t for t in [c.task(done["id"])] if t["status"] == "Finished"), None),
        timeout=20,
        what="GPU task finished",
    )
    assert finished["executor"] == gpu and finished["result"] == {"frames": 42}

    # A long GPU task holds the only GPU: a second one waits, saying why, and never lands elsewhere
    long = c.create(id=f"l-{fleet.tag}", className="Recorder", requires={"gpu": 1}, attachments={"duration": 60})
    wait_for(lambda: c.task(long["id"])["status"] == "Running", timeout=20, what="long GPU task running")
    waiting = c.create(id=f"w-{fleet.tag}", className="Recorder", requires={"gpu": 1}, attachments={"duration": 0.2})
    reason = wait_for(lambda: c.task(waiting["id"]).get("placement"), timeout=10, what="placement reason")
    assert "gpu" in reason and c.task(waiting["id"])["status"] == "Created"
    # and the running one reports its worker's CPU and memory
    usage = wait_for(lambda: c.task(long["id"]).get("usage"), timeout=10, what="usage of the running task")
    assert usage["memoryBytes"] > 1_000_000

    # When the GPU node is cordoned and the long task cancelled, the waiting one still waits
    cordon = c.http.put(f"/api/skalds/{gpu}/schedulable", json={"cordoned": True})
    assert cordon.status_code == 200, cordon.text
    c.set_status(long["id"], "Cancelled")
    wait_for(lambda: fleet.events(long["id"], "release"), timeout=15, what="long task released")
    assert c.task(waiting["id"])["status"] == "Created"
    # and once uncordoned it runs there
    assert c.http.put(f"/api/skalds/{gpu}/schedulable", json={"cordoned": False}).status_code == 200
    wait_for(lambda: c.task(waiting["id"])["status"] == "Finished", timeout=20, what="waiting task ran")
    assert c.task(waiting["id"])["executor"] == gpu

    # A delayed task starts no earlier than its notBefore
    not_before = int(time.time() * 1000) + 1500
    delayed = c.create(id=f"d-{fleet.tag}", className="Recorder", notBefore=not_before, attachments={"duration": 0})
    main = wait_for(lambda: fleet.events(delayed["id"], "main"), timeout=20, what="delayed task ran")[0]
    assert main["t"] * 1000 >= not_before
    fleet.assert_never_two_at_once([done["id"], long["id"], waiting["id"], delayed["id"]])


def test_a_persistent_edge_task_restarts_with_backoff_until_cancelled_on_the_servers(fleet: Chaos) -> None:
    # Given an edge skald with a persistent task and a one-shot task that both fail at once
    keeper, oneshot = f"keeper-{fleet.tag}", f"oneshot-{fleet.tag}"
    tasks = fleet.tmp / "tasks.yml"
    tasks.write_text(
        "TaskWorkers:\n"
        f"  {keeper}:\n    className: Recorder\n    isPersistent: true\n"
        "    attachments: {duration: 0.1, fail: true}\n"
        f"  {oneshot}:\n    className: Recorder\n    isPersistent: false\n"
        "    attachments: {duration: 0.1, fail: true}\n"
    )
    edge = fleet.edge(f"edge-{fleet.tag}", tasks)
    # Then the persistent one starts again after 1 s, then after 2 s; the one-shot one does not
    wait_for(lambda: len(fleet.events(keeper, "main")) >= 3, timeout=20, what="two restarts")
    starts = [e["t"] for e in fleet.events(keeper, "main")]
    assert starts[1] - starts[0] >= 1.0 and starts[2] - starts[1] >= 2.0, starts
    wait_for(lambda: fleet.status(oneshot) == "Failed", timeout=10, what="one-shot task recorded Failed")
    assert len(fleet.events(oneshot, "main")) == 1
    edge.wait_output(rf"task {keeper} ended \(Failed\); persistent, restarting in 4 s", timeout=10)
    # When an operator cancels it (through the broker) while it waits for its next start
    fleet.client.cancel(keeper)
    # Then it is not started again, and the store says Cancelled
    edge.wait_output(rf"task {keeper} is Cancelled in the store; not restarting it", timeout=10)
    assert len(fleet.events(keeper, "main")) == 3
    assert fleet.status(keeper) == "Cancelled"
    # and the one-shot task, which ended more than 5 s ago, never ran again
    assert len(fleet.events(oneshot, "main")) == 1 and fleet.status(oneshot) == "Failed"
