"""Failover on real servers (Kafka/Tansu + Redis + PostgreSQL): a node killed, a node frozen and
thawed, a leading controller killed. Skalds and controllers are separate processes."""

from __future__ import annotations

import itertools
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.controller.conftest import RUNNER, Controller, failover_settings, free_port
from tests.support.procs import Proc, alive, base_env, wait_for
from tests.support.workers import read_events

TIMEOUT = 4.0  # MONITOR_HEARTBEAT_TIMEOUT
LEASE_TTL, RENEW = 3.0, 1.0  # the controllers' leader lease
FAST = {
    "REDIS_KEY_TTL": "2",
    "REDIS_SYNC_PERIOD": "0.5",
    "SKALDS_HEARTBEAT_INTERVAL": "0.5",
    "SKALDS_RECONCILE_INTERVAL": "0.5",
}


class Cluster:
    """One test's slice of the shared servers (own PostgreSQL schema, flushed Redis), and its processes."""

    def __init__(self, kafka: Any, redis_server: Any, postgres: Any, tmp: Path, home: Path, procs: list[Proc]) -> None:
        import psycopg
        import redis

        self.tag = uuid.uuid4().hex[:8]
        schema = f"fo_{self.tag}"
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        self.redis = redis.Redis.from_url(redis_server.url, decode_responses=True)
        self.redis.flushdb()
        self.urls = {
            "SKALDS_STORE_URL": f"{postgres.url}?options=-csearch_path%3D{schema}",
            "SKALDS_BUS_URL": f"{kafka.url}?session_timeout_ms=2000",
            "SKALDS_CACHE_URL": redis_server.url,
        }
        self.tmp, self.home, self.procs = tmp, home, procs
        self.controllers: list[Controller] = []

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(self.home, EVENTS_FILE=str(self.tmp / "events.jsonl"), **self.urls, **FAST, **extra)

    def node(self, name: str) -> Proc:
        proc = Proc.python(RUNNER, "node", name, env=self.env(), log=self.tmp / f"{name}.log")
        self.procs.append(proc)
        proc.wait_output(rf"listening for commands as group skald-{name}", timeout=30)
        return proc

    def controller(self) -> Controller:
        port = free_port()
        env = self.env(**failover_settings(port, timeout=TIMEOUT, lease_ttl=LEASE_TTL, renew=RENEW))
        proc = Proc([sys.executable, "-m", "skalds.controller.main"], env, self.tmp / f"controller-{port}.log")
        self.procs.append(proc)
        controller = Controller(proc, port)
        self.controllers.append(controller)
        wait_for(controller.ready, timeout=20, interval=0.05, what="controller health")
        return controller

    def online(self, c: Controller, *names: str) -> bool:
        items = {s["id"]: s["status"] for s in c.http.get("/api/skalds").json()["items"]}
        return all(items.get(n) == "online" for n in names)

    def events(self, task: str, kind: str | None = None) -> list[dict[str, Any]]:
        found = [e for e in read_events(str(self.tmp / "events.jsonl")) if e["task"] == task]
        return [e for e in found if kind is None or e["event"] == kind]

    def running_on(self, c: Controller, task_ids: list[str], executor: str | None = None) -> bool:
        for t in task_ids:
            item = c.task(t)
            if item["status"] != "Running" or (executor is not None and item["executor"] != executor):
                return False
        return True

    def close(self) -> None:
        for c in self.controllers:
            c.http.close()
        self.redis.close()


@pytest.fixture
def cluster(kafka_server, redis_server, postgres_server, tmp_path, home, procs):
    c = Cluster(kafka_server, redis_server, postgres_server, tmp_path, home, procs)
    yield c
    c.close()


def _start_tasks(cluster: Cluster, c: Controller, n: int) -> dict[str, str]:
    """``n`` long Recorder tasks, Running; returns task id → executor."""
    ids = [f"t{i}-{cluster.tag}" for i in range(n)]
    for t in ids:
        c.create(id=t, className="Recorder", attachments={"duration": 300})
    wait_for(lambda: cluster.running_on(c, ids), timeout=20, what="all tasks Running")
    wait_for(lambda: all(cluster.events(t, "main") for t in ids), timeout=10, what="workers in main")
    return {t: c.task(t)["executor"] for t in ids}


def _copies_never_overlap(cluster: Cluster, task_id: str) -> None:
    """Each worker copy lives from its ``main`` to its ``release``: no two at once."""
    spans = []
    for main in cluster.events(task_id, "main"):
        ends = [e["t"] for e in cluster.events(task_id, "release") if e["pid"] == main["pid"]]
        spans.append((main["t"], ends[0] if ends else float("inf")))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, f"task {task_id}: two copies ran at once ({spans})"


def test_killed_node_tasks_run_on_the_other_node_within_the_timeout(cluster):
    # Given a controller, two nodes and four Running tasks spread over them
    a, b = f"a-{cluster.tag}", f"b-{cluster.tag}"
    c = cluster.controller()
    node_a = cluster.node(a)
    cluster.node(b)
    wait_for(lambda: cluster.online(c, a, b), timeout=10, what="both nodes online")
    owners = _start_tasks(cluster, c, 4)
    lost = [t for t, owner in owners.items() if owner == a]
    assert lost and len(lost) < 4, owners

    # When node a is killed outright
    node_a.signal(signal.SIGKILL)
    killed = time.monotonic()

    # Then its tasks run on node b within MONITOR_HEARTBEAT_TIMEOUT + 2 s
    wait_for(lambda: cluster.running_on(c, lost, executor=b), timeout=TIMEOUT + 10, interval=0.05, what="failover")
    took = time.monotonic() - killed
    print(f"failover after SIGKILL: {took:.2f} s")
    assert took <= TIMEOUT + 2, f"failover took {took:.2f} s"
    # And the tasks b had were never touched, the failover is counted, a is offline
    assert all(len(cluster.events(t, "main")) == 1 for t, owner in owners.items() if owner == b)
    assert not cluster.online(c, a)
    metrics = c.http.get("/metrics")
    if metrics.status_code == 200 and "skalds_failovers_total" in metrics.text:
        line = next(x for x in metrics.text.splitlines() if x.startswith("skalds_failovers_total"))
        assert float(line.split()[-1]) == len(lost)


def test_frozen_node_fences_its_workers_and_never_runs_a_task_twice(cluster):
    # Given a controller, two nodes and four Running tasks spread over them
    a, b = f"a-{cluster.tag}", f"b-{cluster.tag}"
    c = cluster.controller()
    node_a = cluster.node(a)
    cluster.node(b)
    wait_for(lambda: cluster.online(c, a, b), timeout=10, what="both nodes online")
    owners = _start_tasks(cluster, c, 4)
    lost = [t for t, owner in owners.items() if owner == a]
    assert lost and len(lost) < 4, owners
    pids = [cluster.events(t, "main")[0]["pid"] for t in lost]

    # When node a is frozen (a partition: its workers, in their own process groups, keep going)
    node_a.signal(signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        # Then its workers stop themselves (release runs) ...
        wait_for(lambda: not any(alive(p) for p in pids), timeout=TIMEOUT + 5, interval=0.05, what="self-fencing")
        fenced = time.monotonic() - frozen
        assert all(cluster.events(t, "release") for t in lost)
        # ... and afterwards their tasks run on node b
        wait_for(lambda: cluster.running_on(c, lost, executor=b), timeout=TIMEOUT + 10, what="failover")
        moved = time.monotonic() - frozen
        print(f"workers fenced {fenced:.2f} s after SIGSTOP, tasks Running on b after {moved:.2f} s")
        assert fenced <= 2.0 * 1.5 + 1.0  # FENCE_FACTOR x REDIS_KEY_TTL, plus scheduling slack
    finally:
        node_a.signal(signal.SIGCONT)

    # When node a thaws: it comes back online and reports no task of its own
    wait_for(lambda: cluster.online(c, a), timeout=10, what="a online again")
    wait_for(lambda: cluster.redis.lrange(f"skalds:{a}:all-task", 0, -1) == [], timeout=10, what="a runs nothing")
    # Then it started no copy of the tasks now owned by b, and no two copies ever overlapped
    for t in lost:
        mains = cluster.events(t, "main")
        assert len(mains) == 2, mains
        assert [c.task(t)["executor"], c.task(t)["status"]] == [b, "Running"]
        assert mains[1]["pid"] not in pids and alive(mains[1]["pid"])
        _copies_never_overlap(cluster, t)
    assert "started worker" not in node_a.output().split("fenced itself")[-1]


def test_a_standby_controller_takes_over_dispatch_when_the_leader_dies(cluster):
    # Given two dispatching controllers and a node
    n = f"n-{cluster.tag}"
    first = cluster.controller()
    second = cluster.controller()
    cluster.node(n)
    wait_for(lambda: cluster.online(first, n), timeout=10, what="node online")
    holder = wait_for(lambda: cluster.redis.get("skalds:controller:leader"), timeout=10, what="a leader")
    by_pid = {c.proc.pid: c for c in (first, second)}
    leader = next(c for pid, c in by_pid.items() if holder.startswith(f"controller-{pid}-"))
    standby = second if leader is first else first
    # And a task created through the standby is dispatched (by the leader's sweep)
    before = f"before-{cluster.tag}"
    standby.create(id=before, className="Recorder", attachments={"duration": 300})
    wait_for(lambda: cluster.running_on(standby, [before]), timeout=10, what="dispatched by the leader")

    # When the leader is killed and a task is created through the standby
    leader.proc.signal(signal.SIGKILL)
    killed = time.monotonic()
    after = f"after-{cluster.tag}"
    standby.create(id=after, className="Recorder", attachments={"duration": 300})

    # Then the standby takes the lease and dispatches it within the lease time (plus one sweep)
    wait_for(lambda: standby.task(after)["status"] in ("Assigning", "Running"), timeout=LEASE_TTL + 10, interval=0.05)
    took = time.monotonic() - killed
    print(f"standby dispatched {took:.2f} s after the leader was killed")
    assert took <= LEASE_TTL + RENEW + 1.0, f"takeover took {took:.2f} s"
    assert cluster.redis.get("skalds:controller:leader").startswith(f"controller-{standby.proc.pid}-")
    wait_for(lambda: cluster.running_on(standby, [after]), timeout=10, what="Running")
