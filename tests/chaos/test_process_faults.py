"""Chaos: a node SIGKILLed (its tasks run elsewhere within the heartbeat timeout + 1 s, on every
cache backend), a controller SIGKILLed (tasks keep running, a new one takes over), and a full disk
under the embedded backend (ends kept, nothing re-run, recovery once space is freed)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.conftest import TIMEOUT, Chaos, report
from tests.support.disks import fill, tmpfs
from tests.support.procs import Proc, wait_for
from tests.support.servers import postgres_schema_url, running


@pytest.fixture(params=["embedded", "valkey", "redis-7.0"])
def fleet(request, tmp_path: Path, home: Path, procs: list[Proc], postgres_server) -> Iterator[Chaos]:
    """A store, bus and cache of the test's own: all embedded, or PostgreSQL + the embedded bus +
    Valkey 9 (hash-field TTLs) or Redis 7.0 (none)."""
    db = home / "skalds.db"
    if request.param == "embedded":
        chaos = Chaos(tmp_path, home, procs, embedded(home))
        yield chaos
        chaos.close()
        return
    store_url = postgres_schema_url(postgres_server, "chaosp")
    with running("valkey" if request.param == "valkey" else "redis") as cache:
        urls = {
            "SKALDS_STORE_URL": store_url,
            "SKALDS_BUS_URL": f"sqlite:///{db}",
            "SKALDS_CACHE_URL": cache.url,
        }
        chaos = Chaos(tmp_path, home, procs, urls)
        yield chaos
        chaos.close()


def embedded(home: Path) -> dict[str, str]:
    url = f"sqlite:///{home / 'skalds.db'}"
    return {"SKALDS_STORE_URL": url, "SKALDS_BUS_URL": url, "SKALDS_CACHE_URL": url}


def _online(c, *names: str) -> bool:
    items = {s["id"]: s["status"] for s in c.http.get("/api/skalds").json()["items"]}
    return all(items.get(n) == "online" for n in names)


def test_killed_node_fails_over_within_timeout_plus_one_second(fleet: Chaos, request) -> None:
    chaos = fleet
    c = chaos.controller()
    n1, n2 = f"n1-{chaos.tag}", f"n2-{chaos.tag}"
    nodes = {n1: chaos.node(n1), n2: chaos.node(n2)}
    wait_for(lambda: _online(c, n1, n2), timeout=20, what="nodes online")
    task = f"t-{chaos.tag}"
    c.create(id=task, className="Recorder", attachments={"duration": 300})
    wait_for(lambda: chaos.events(task, "main"), timeout=20, what="task running")
    first = chaos.events(task, "main")[0]
    owner = c.task(task)["executor"]

    # When its node is killed outright (its workers die with it)
    nodes[owner].signal(signal.SIGKILL)
    killed = time.time()

    # Then the task runs on the other node within the heartbeat timeout + 1 s
    wait_for(lambda: len(chaos.events(task, "main")) == 2, timeout=TIMEOUT + 15, interval=0.05, what="failover")
    second = chaos.events(task, "main")[1]
    took = second["t"] - killed
    backend = request.node.callspec.params["fleet"]
    report(f"node SIGKILL → task running elsewhere ({backend})", took, timeout=TIMEOUT)
    assert second["pid"] != first["pid"]
    assert took <= TIMEOUT + 1.0, f"failover took {took:.2f} s (timeout {TIMEOUT} s)"
    chaos.assert_never_two_at_once([task], died_at={first["pid"]: killed})

    # When the controller is killed too and another one starts
    c.proc.signal(signal.SIGKILL)
    c.proc.wait(10)
    started = time.monotonic()
    c2 = chaos.controller()
    # Then the running task was untouched, and a task created through the new one runs
    late = f"late-{chaos.tag}"
    c2.create(id=late, className="Recorder", attachments={"duration": 0.2})
    wait_for(lambda: chaos.ended([late]), timeout=20, what="task through the new controller ran")
    report(f"controller SIGKILL → new controller dispatched a task ({backend})", time.monotonic() - started)
    assert len(chaos.events(task, "main")) == 2 and c2.task(task)["status"] == "Running"
    chaos.assert_ran_once([late])


# ---- a full disk under the embedded backend ---------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "24m") as mount:
        yield mount


def test_full_disk_keeps_ends_runs_nothing_twice_and_recovers(small_disk: Path, tmp_path: Path, procs) -> None:
    home = small_disk / "home"
    home.mkdir()
    chaos = Chaos(tmp_path, home, procs, embedded(home))
    node_id = f"n-{chaos.tag}"
    node = chaos.node(node_id)
    # Given tasks that end over the next seconds
    ids = [f"d{i}-{chaos.tag}" for i in range(6)]
    for i, t in enumerate(ids):
        chaos.create(t, executor=node_id, duration=1.0 + 0.2 * i)
    wait_for(lambda: all(chaos.events(t, "main") for t in ids), timeout=20, what="tasks running")

    # When the disk fills up while they end
    filler = fill(small_disk)
    wait_for(lambda: chaos.ended(ids), timeout=20, what="tasks ended")
    node.wait_output(r"could not take the write", timeout=10)
    assert node.popen.poll() is None

    # Then once space is freed, every end is written and none ran again
    filler.unlink()
    freed = time.monotonic()
    wait_for(lambda: chaos.all_status(ids, "Finished"), timeout=20, what="ends written after space was freed")
    report("full disk (embedded): every kept end stored after space was freed", time.monotonic() - freed)
    late = f"late-{chaos.tag}"
    chaos.create(late, executor=node_id, duration=0.6)
    wait_for(lambda: chaos.ended([late]), timeout=20, what="a task after recovery ran")
    chaos.assert_ran_once([*ids, late])
    chaos.assert_never_two_at_once([*ids, late])
    chaos.close()
