"""The chaos suite's harness: servers of its own (so it can kill, freeze and restart them), real
skald and controller processes, and checks made from what the real workers wrote.

Every test worker appends one JSON line per hook to ``events.jsonl`` (``tests/support/workers.py``):
``before``, ``main``, ``after`` (main returned), ``release``, ``update``, with its pid and a
wall-clock time. From that file the suite asserts what a user cares about:

* every acknowledged task ran to its end exactly once (one ``after``; a copy that was cut short by
  a fault it was meant to survive would show as a second ``main``);
* never two copies of a task at once (each copy lives from its ``main`` to its ``release``, or to
  the moment its process died);
* commands sent after recovery are applied (their ``update`` lines).

Convergence times (fault injected → the system is whole again) are printed and, when
``SKALDS_CHAOS_REPORT`` names a file, appended to it as JSON lines (``bench/chaos_report.py``
turns them into the table in ``bench/RESULTS.md``).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from skalds.client import SkaldsClient
from skalds.config.skald_config import SkaldConfig
from skalds.model.task import Task
from tests.controller.conftest import Controller, failover_settings, free_port
from tests.support.procs import ROOT, Proc, alive, base_env, wait_for
from tests.support.servers import PostgresServer, RedisServer, TansuServer, postgres_schema_url, running
from tests.support.workers import read_events

RUNNER = ROOT / "tests" / "support" / "run_skald.py"
#: The controller's MONITOR_HEARTBEAT_TIMEOUT in the chaos runs (seconds).
TIMEOUT = 5.0
#: Fast settings for skalds and controllers (the lease TTL must stay below the timeout / 1.5).
FAST = {
    "REDIS_KEY_TTL": "2",
    "REDIS_SYNC_PERIOD": "0.5",
    "SKALDS_HEARTBEAT_INTERVAL": "0.5",
    "SKALDS_RECONCILE_INTERVAL": "0.5",
    "SKALDS_STOP_GRACE_PERIOD": "3",
}

pytestmark = pytest.mark.slow


def report(fault: str, seconds: float, **more: Any) -> None:
    """Print a convergence figure; append it to $SKALDS_CHAOS_REPORT when set."""
    print(f"chaos: {fault}: {seconds:.2f} s {more or ''}")
    path = os.environ.get("SKALDS_CHAOS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"fault": fault, "seconds": round(seconds, 3), **more}) + "\n")


class Chaos:
    """One test's servers, processes and event log."""

    def __init__(self, tmp: Path, home: Path, procs: list[Proc], urls: dict[str, str]) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.tmp, self.home, self.procs, self.urls = tmp, home, procs, urls
        self.events_file = tmp / "events.jsonl"
        self.controllers: list[Controller] = []
        self._client: SkaldsClient | None = None

    # ---- processes -----------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        return base_env(self.home, EVENTS_FILE=str(self.events_file), **self.urls, **FAST, **extra)

    def node(self, name: str, *, wait: bool = True, **env: str) -> Proc:
        proc = Proc.python(RUNNER, "node", name, env=self.env(**env), log=self.tmp / f"{name}.log")
        self.procs.append(proc)
        if wait:
            proc.wait_output(rf"listening for commands as group skald-{name}", timeout=30)
        return proc

    def controller(self, **extra: str) -> Controller:
        port = free_port()
        env = self.env(**failover_settings(port, timeout=TIMEOUT, lease_ttl=3.0, renew=1.0), **extra)
        proc = Proc([sys.executable, "-m", "skalds.controller.main"], env, self.tmp / f"controller-{port}.log")
        self.procs.append(proc)
        controller = Controller(proc, port)
        self.controllers.append(controller)
        wait_for(lambda: _answers(controller), timeout=30, interval=0.05, what="controller up")
        return controller

    @property
    def client(self) -> SkaldsClient:
        if self._client is None:
            settings = {"store_url": "SKALDS_STORE_URL", "bus_url": "SKALDS_BUS_URL", "cache_url": "SKALDS_CACHE_URL"}
            self._client = SkaldsClient(SkaldConfig(**{k: self.urls[v] for k, v in settings.items() if v in self.urls}))
        return self._client

    def reset_client(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    def create(self, task_id: str, executor: str | None = None, **attachments: Any) -> None:
        """Create (and with ``executor`` assign) a Recorder task: acknowledged once this returns."""
        self.client.create_task(Task(id=task_id, className="Recorder", attachments=attachments), executor=executor)

    def edge(self, name: str, yaml_file: Path, **env: str) -> Proc:
        """An edge skald running the tasks of ``yaml_file``."""
        proc = Proc.python(RUNNER, "edge", name, str(yaml_file), env=self.env(**env), log=self.tmp / f"{name}.log")
        self.procs.append(proc)
        proc.wait_output(rf"listening for commands as group skald-{name}", timeout=30)
        return proc

    def status(self, task_id: str) -> str | None:
        """The stored status (None while the store cannot answer: the client reconnects)."""
        try:
            task = self.client.get(task_id)
        except Exception:
            self.reset_client()
            return None
        return None if task is None else task.lifecycle_status.value

    def all_status(self, task_ids: list[str], status: str) -> bool:
        self.last_statuses = {t: self.status(t) for t in task_ids}
        return all(s == status for s in self.last_statuses.values())

    def close(self) -> None:
        self.reset_client()
        for c in self.controllers:
            c.http.close()

    # ---- what the workers wrote ----------------------------------------------------------
    def events(self, task_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in read_events(str(self.events_file))
            if (task_id is None or e["task"] == task_id) and (kind is None or e["event"] == kind)
        ]

    def ended(self, task_ids: list[str]) -> bool:
        done = {e["task"] for e in self.events(kind="after")}
        return all(t in done for t in task_ids)

    def assert_ran_once(self, task_ids: list[str]) -> None:
        """Each task: one ``main``, one ``after`` (no re-run, no lost end)."""
        by_task: dict[str, dict[str, int]] = {}
        for e in self.events():
            counts = by_task.setdefault(e["task"], {})
            counts[e["event"]] = counts.get(e["event"], 0) + 1
        wrong = {t: by_task.get(t, {}) for t in task_ids if by_task.get(t, {}).get("main") != 1}
        wrong.update({t: by_task.get(t, {}) for t in task_ids if by_task.get(t, {}).get("after") != 1})
        assert not wrong, f"tasks that did not run exactly once ({len(wrong)} of {len(task_ids)}): {wrong}"

    def assert_never_two_at_once(self, task_ids: list[str], died_at: dict[int, float] | None = None) -> None:
        """Each worker copy lives from its ``main`` to its ``release`` (or to when its process
        was seen dead, ``died_at``); the copies of one task never overlap."""
        died_at = died_at or {}
        for task_id in task_ids:
            spans = []
            for main in self.events(task_id, "main"):
                ends = [e["t"] for e in self.events(task_id, "release") if e["pid"] == main["pid"]]
                end = ends[0] if ends else died_at.get(main["pid"])
                if end is None:
                    end = float("inf") if alive(main["pid"]) else main["t"]
                spans.append((main["t"], end, main["pid"]))
            spans.sort()
            for (_, end, pid1), (start, _, pid2) in itertools.pairwise(spans):
                assert end <= start, f"task {task_id}: copies {pid1} and {pid2} ran at once ({spans})"


def _answers(controller: Controller) -> bool:
    try:
        return controller.http.get("/api/system/health").status_code < 500
    except Exception:
        return False


def freeze(proc: Any, seconds: float) -> None:
    """SIGSTOP a server process for ``seconds`` (a stalled VM, a GC pause), then SIGCONT it."""
    proc.send_signal(signal.SIGSTOP)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # the fault's duration, not a synchronisation
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGCONT)


def hold(seconds: float) -> None:
    """Keep a fault in place for ``seconds`` (an outage's length is the fault itself)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)


# ---- fixtures: servers of the chaos suite's own ---------------------------------------------
@pytest.fixture
def chaos_redis() -> Iterator[RedisServer]:
    with running("redis") as server:
        yield server


@pytest.fixture
def chaos_kafka() -> Iterator[TansuServer]:
    with running("kafka") as server:
        yield server


@pytest.fixture
def chaos_postgres() -> Iterator[PostgresServer]:
    with running("postgres", start=False) as server:
        server.durable_commits = True  # a killed server loses no acknowledged write
        server.start()
        yield server


def server_urls(postgres: PostgresServer, kafka: TansuServer, redis: RedisServer, prefix: str) -> dict[str, str]:
    """The backend URLs of a test on real servers: its own PostgreSQL schema, Kafka, Redis."""
    return {
        "SKALDS_STORE_URL": postgres_schema_url(postgres, prefix),
        "SKALDS_BUS_URL": f"{kafka.url}?session_timeout_ms=2000",
        "SKALDS_CACHE_URL": redis.url,
    }


@contextmanager
def shared_chaos(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    postgres: PostgresServer,
    kafka: TansuServer,
    redis_server: RedisServer,
) -> Iterator[Chaos]:
    """A :class:`Chaos` for a whole test module on the session's servers (an empty Redis, its own
    PostgreSQL schema); every process it started is stopped on exit."""
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    tmp = tmp_path_factory.mktemp(name)
    home = tmp / "home"
    home.mkdir()
    procs: list[Proc] = []
    chaos = Chaos(tmp, home, procs, server_urls(postgres, kafka, redis_server, name.replace("-", "")))
    try:
        yield chaos
    finally:
        chaos.close()
        for proc in procs:
            proc.stop()


@pytest.fixture
def distributed(
    tmp_path: Path, home: Path, procs: list[Proc], chaos_redis: RedisServer, chaos_kafka: TansuServer, postgres_server
) -> Iterator[Chaos]:
    """Redis and Kafka of this test's own (to fault), the session's PostgreSQL (own schema)."""
    chaos = Chaos(tmp_path, home, procs, server_urls(postgres_server, chaos_kafka, chaos_redis, "chaos"))
    yield chaos
    chaos.close()
