"""Chaos: Redis stopped, Redis frozen — skalds live on, nothing fails over, nothing runs twice."""

from __future__ import annotations

import time

from tests.chaos.conftest import TIMEOUT, Chaos, freeze, hold, report
from tests.support.procs import alive, wait_for


def _online(chaos: Chaos, *names: str) -> bool:
    c = chaos.controllers[0]
    try:
        items = {s["id"]: s["status"] for s in c.http.get("/api/skalds").json()["items"]}
    except Exception:
        return False
    return all(items.get(n) == "online" for n in names)


def _monitor_passed_since(chaos: Chaos, since_ms: float) -> bool:
    try:
        loops = chaos.controllers[0].http.get("/api/system/status").json()["loops"]
    except Exception:
        return False
    monitor = loops.get("monitor") or {}
    return (monitor.get("lastRun") or 0) > since_ms and monitor.get("lastError") is None


def test_redis_outage_and_freeze_end_no_skald_and_fail_nothing_over(distributed: Chaos, chaos_redis) -> None:
    chaos = distributed
    n1, n2 = f"n1-{chaos.tag}", f"n2-{chaos.tag}"
    c = chaos.controller()
    nodes = [chaos.node(n1), chaos.node(n2)]
    wait_for(lambda: _online(chaos, n1, n2), timeout=20, what="both nodes online")
    # Given two long tasks running, one per node
    long = [f"long{i}-{chaos.tag}" for i in range(2)]
    for t in long:
        c.create(id=t, className="Recorder", attachments={"duration": 300})
    wait_for(lambda: all(chaos.events(t, "main") for t in long), timeout=20, what="long tasks running")
    owners = {t: c.task(t)["executor"] for t in long}

    # When short tasks are running and Redis dies (it loses everything) for 5 s
    short = [f"s{i}-{chaos.tag}" for i in range(8)]
    for t in short:
        c.create(id=t, className="Recorder", attachments={"duration": 1.5})
    wait_for(lambda: all(chaos.events(t, "main") for t in short), timeout=20, what="short tasks running")
    chaos_redis.kill()
    hold(5.0)
    chaos_redis.start()
    back = time.monotonic()

    # Then no skald died, the short tasks each ended once, and the fleet is whole again
    wait_for(lambda: _online(chaos, n1, n2), timeout=TIMEOUT + 10, what="nodes online after the outage")
    report("Redis down 5 s (memory lost): skalds online again", time.monotonic() - back)
    assert all(n.popen.poll() is None for n in nodes), "a node skald ended during the Redis outage"
    wait_for(lambda: chaos.ended(short), timeout=20, what="short tasks ended")
    wait_for(lambda: all(c.task(t)["status"] == "Finished" for t in short), timeout=20, what="Finished stored")

    # When Redis freezes for longer than the heartbeat timeout
    freeze(chaos_redis.proc, TIMEOUT + 2.0)
    thawed_ms = time.time() * 1000
    thawed = time.monotonic()

    # Then once the monitor can read again and has judged, no task has been failed over
    wait_for(lambda: _online(chaos, n1, n2), timeout=TIMEOUT + 10, what="nodes online after the freeze")
    report("Redis frozen 7 s: skalds online again", time.monotonic() - thawed)
    wait_for(lambda: _monitor_passed_since(chaos, thawed_ms), timeout=20, what="a monitor pass after the thaw")
    assert all(n.popen.poll() is None for n in nodes), "a node skald ended during the Redis freeze"
    for t in long:
        item = c.task(t)
        assert (item["status"], item["executor"]) == ("Running", owners[t]), item
        assert len(chaos.events(t, "main")) == 1, f"task {t} was started again: {chaos.events(t, 'main')}"
        assert alive(chaos.events(t, "main")[0]["pid"])

    # And a command after recovery is applied, a task created after it runs
    after = time.monotonic()
    c.http.put(f"/api/tasks/{long[0]}/attachments", json={"attachments": {"duration": 300, "someValue": 7}})
    wait_for(lambda: [e["value"] for e in chaos.events(long[0], "update")] == [7], timeout=15, what="update applied")
    report("Redis frozen 7 s: update after recovery applied", time.monotonic() - after)
    late = f"late-{chaos.tag}"
    c.create(id=late, className="Recorder", attachments={"duration": 0.2})
    wait_for(lambda: chaos.ended([late]), timeout=15, what="a task created after recovery ran")
    chaos.assert_ran_once([*short, late])
    chaos.assert_never_two_at_once([*long, *short, late])
    assert "Traceback" not in "".join(n.output() for n in nodes)
