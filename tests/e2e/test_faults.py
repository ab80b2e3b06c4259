"""Faults on real servers: broker and Redis restarts under running workers; edge with servers down."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from skalds.client import SkaldsClient
from skalds.config.skald_config import SkaldConfig
from skalds.model.task import Task, TaskLifecycleStatus
from tests.support.procs import ROOT, Proc, alive, base_env, wait_for
from tests.support.servers import PostgresServer, RedisServer, TansuServer, running
from tests.support.workers import read_events

S = TaskLifecycleStatus
RUNNER = ROOT / "tests" / "support" / "run_skald.py"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with running("redis", start=False) as server:
        yield server


@pytest.fixture
def own_kafka() -> Iterator[TansuServer]:
    with running("kafka", start=False) as server:
        yield server


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with running("postgres", start=False) as server:
        yield server


def events(tmp: Path, task: str, kind: str | None = None) -> list[dict]:
    found = [e for e in read_events(str(tmp / "events.jsonl")) if e["task"] == task]
    return [e for e in found if kind is None or e["event"] == kind]


def test_broker_and_redis_restarts_leave_workers_untouched(
    procs, tmp_path, home, own_kafka, own_redis, postgres_server
):
    import psycopg
    import redis

    # Given a node skald on Kafka + Redis + PostgreSQL with two running workers
    own_kafka.start()
    own_redis.start()
    schema = "f" + uuid.uuid4().hex[:8]
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    urls = {
        "store_url": f"{postgres_server.url}?options=-csearch_path%3D{schema}",
        "bus_url": own_kafka.url,
        "cache_url": own_redis.url,
    }
    env = base_env(
        home,
        SKALDS_STORE_URL=urls["store_url"],
        SKALDS_BUS_URL=urls["bus_url"],
        SKALDS_CACHE_URL=urls["cache_url"],
        EVENTS_FILE=str(tmp_path / "events.jsonl"),
    )
    node = Proc.python(RUNNER, "node", "n1", env=env, log=tmp_path / "n1.log")
    procs.append(node)
    node.wait_output(r"listening for commands", timeout=30)
    client = SkaldsClient(SkaldConfig(**urls))
    for t in ("r1", "r2"):
        client.create_task(Task(id=t, className="Recorder"), executor="n1")
    wait_for(lambda: events(tmp_path, "r1", "main") and events(tmp_path, "r2", "main"), timeout=15, what="running")
    pids = {t: events(tmp_path, t, "main")[0]["pid"] for t in ("r1", "r2")}
    raw = redis.Redis.from_url(own_redis.url)

    # When the broker is killed and restarted
    own_kafka.kill()
    own_kafka.start()
    # Then the workers are untouched and commands sent after recovery are applied
    client.close()
    client = SkaldsClient(SkaldConfig(**urls))
    client.update_attachments("r1", {"someValue": 5})
    wait_for(lambda: [e["value"] for e in events(tmp_path, "r1", "update")] == [5], timeout=20, what="update after")

    # When Redis is killed and restarted (it loses everything: memory only)
    own_redis.kill()
    assert all(alive(p) for p in pids.values())
    own_redis.start()
    # Then the skald registers again and heartbeat leases come back
    wait_for(lambda: raw.exists("skalds:n1:heartbeat"), timeout=15, what="skald re-registered")
    wait_for(lambda: raw.get("task:r2:heartbeat") is not None, timeout=15, what="task lease back")
    classes = raw.lrange("skalds:n1:allow-task-class-name", 0, -1)
    assert sorted(classes) == [
        b"Digest",
        b"PooledRecorder",
        b"Recorder",
        b"ReusedDigest",
        b"ReusedRecorder",
        b"Stubborn",
    ]

    # And a cancel after both recoveries stops exactly its worker
    client.cancel("r2")
    wait_for(lambda: events(tmp_path, "r2", "release"), timeout=15, what="cancel after recovery")
    assert alive(pids["r1"]) and not events(tmp_path, "r1", "release")
    assert node.popen.poll() is None
    client.close()


def test_edge_starts_with_every_server_down_and_registers_when_they_come_up(
    procs, tmp_path, home, own_kafka, own_redis, own_postgres
):
    import redis

    # Given an edge skald configured for Kafka + Redis + PostgreSQL that are all down
    yml = tmp_path / "tasks.yml"
    yml.write_text("TaskWorkers:\n  cam1:\n    className: Recorder\n  cam2:\n    className: Recorder\n")
    env = base_env(
        home,
        SKALDS_STORE_URL=own_postgres.url,
        SKALDS_BUS_URL=own_kafka.url,
        SKALDS_CACHE_URL=own_redis.url,
        EVENTS_FILE=str(tmp_path / "events.jsonl"),
    )
    edge = Proc.python(RUNNER, "edge", "e1", str(yml), env=env, log=tmp_path / "e1.log")
    procs.append(edge)

    # Then its YAML workers run at once
    wait_for(lambda: events(tmp_path, "cam1", "main") and events(tmp_path, "cam2", "main"), timeout=10, what="run")

    # When the servers come up
    own_redis.start()
    own_postgres.start()
    own_kafka.start()

    # Then the skald registers, records its tasks, and its workers were never restarted
    raw = redis.Redis.from_url(own_redis.url)
    wait_for(lambda: raw.exists("skalds:e1:heartbeat"), timeout=20, what="registered in Redis")
    assert raw.hget("skalds:mode:hash", "e1") == b"edge"
    client = SkaldsClient(SkaldConfig(store_url=own_postgres.url, bus_url=own_kafka.url, cache_url=own_redis.url))
    wait_for(
        lambda: client.get("cam1") is not None and client.get("cam1").lifecycle_status == S.RUNNING,
        timeout=20,
        what="recorded in PostgreSQL",
    )
    edge.wait_output(r"listening for commands", timeout=30)
    client.send_worker_update("cam2", {"someValue": 9})
    wait_for(lambda: events(tmp_path, "cam2", "update"), timeout=20, what="update over Kafka")
    assert len(events(tmp_path, "cam1", "main")) == 1 and len(events(tmp_path, "cam2", "main")) == 1
    client.close()
