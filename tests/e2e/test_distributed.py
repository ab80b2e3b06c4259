"""End to end on real servers: Kafka (Tansu) + Redis + PostgreSQL, separate skald processes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from skalds.client import SkaldsClient
from skalds.config.skald_config import SkaldConfig
from skalds.model.event import TaskEvent, UpdateTaskWorkerEvent
from skalds.model.task import Task, TaskLifecycleStatus
from tests.support.procs import ROOT, Proc, alive, base_env, wait_for
from tests.support.workers import read_events

S = TaskLifecycleStatus
RUNNER = ROOT / "tests" / "support" / "run_skald.py"


class Dist:
    """URLs of one test's slice of the shared servers (own PostgreSQL schema, flushed Redis)."""

    def __init__(self, kafka, redis_server, postgres, tmp: Path, home: Path) -> None:
        import psycopg
        import redis

        self.tag = uuid.uuid4().hex[:8]
        schema = f"e2e_{self.tag}"
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        redis.Redis.from_url(redis_server.url).flushdb()
        self.store_url = f"{postgres.url}?options=-csearch_path%3D{schema}"
        self.bus_url = f"{kafka.url}?session_timeout_ms=2000"
        self.cache_url = redis_server.url
        self.kafka = kafka
        self.tmp = tmp
        self.home = home

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(
            self.home,
            SKALDS_STORE_URL=self.store_url,
            SKALDS_BUS_URL=self.bus_url,
            SKALDS_CACHE_URL=self.cache_url,
            EVENTS_FILE=str(self.tmp / "events.jsonl"),
            **extra,
        )

    def config(self) -> SkaldConfig:
        return SkaldConfig(store_url=self.store_url, bus_url=self.bus_url, cache_url=self.cache_url)

    def skald(self, procs: list[Proc], mode: str, name: str, *args: str) -> Proc:
        skald_id = f"{name}-{self.tag}"
        p = Proc.python(RUNNER, mode, skald_id, *args, env=self.env(), log=self.tmp / f"{name}.log")
        procs.append(p)
        p.wait_output(r"listening for commands", timeout=30)
        return p

    def events(self, task: str, kind: str | None = None) -> list[dict]:
        found = [e for e in read_events(str(self.tmp / "events.jsonl")) if e["task"] == task]
        return [e for e in found if kind is None or e["event"] == kind]


@pytest.fixture
def dist(kafka_server, redis_server, postgres_server, tmp_path, home) -> Dist:
    return Dist(kafka_server, redis_server, postgres_server, tmp_path, home)


@pytest.fixture
def client(dist: Dist):
    c = SkaldsClient(dist.config())
    yield c
    c.close()


def test_assign_update_cancel_on_kafka_redis_postgres(procs, dist, client):
    from skalds.proxy.kafka import KafkaConfig, KafkaProxy, KafkaTopic

    # Given two node skalds on Kafka + Redis + PostgreSQL
    a = dist.skald(procs, "node", "a")
    b = dist.skald(procs, "node", "b")
    b_id = f"b-{dist.tag}"
    task_id = f"task-{dist.tag}"

    # When a task is written to the store for b and announced on task.assign (as the 0.3.x README does)
    client.store.create(Task(id=task_id, className="Recorder", attachments={"someValue": 1}))
    client.store.assign(task_id, b_id)
    host, port = dist.kafka.bootstrap.split(":")
    proxy = KafkaProxy(KafkaConfig(host=host, port=int(port)))
    proxy.produce(
        KafkaTopic.TASK_ASSIGN, key=task_id, value=TaskEvent(taskIds=[task_id]).model_dump_json(by_alias=True)
    )

    # Then it starts on b only and the store and cache say so
    main = wait_for(lambda: dist.events(task_id, "main"), timeout=15, what="main on b")
    assert main[0]["pid"] in [c.pid for c in b.descendants()]
    assert main[0]["pid"] not in [c.pid for c in a.descendants()]
    wait_for(lambda: client.get(task_id).lifecycle_status == S.RUNNING, what="Running")
    wait_for(lambda: (client.task_state(task_id)["heartbeat"] or -9) >= 0, what="heartbeat lease in Redis")

    # When the attachments are updated through the store + task.update.attachment
    client.update_attachments(task_id, {"someValue": 2})
    wait_for(lambda: [e["value"] for e in dist.events(task_id, "update")] == [2], timeout=10, what="update 1")

    # And an outside client produces straight on taskworker.update
    proxy.produce(KafkaTopic.TASKWORKER_UPDATE, key=task_id, value=UpdateTaskWorkerEvent(attachments={"someValue": 3}))
    wait_for(lambda: [e["value"] for e in dist.events(task_id, "update")] == [2, 3], timeout=10, what="update 2")

    # When it is cancelled, the skald that runs it stops it
    client.cancel(task_id)
    wait_for(lambda: dist.events(task_id, "release"), timeout=10, what="release")
    wait_for(lambda: not alive(main[0]["pid"]), what="process gone")
    wait_for(lambda: client.task_state(task_id)["heartbeat"] == -2, what="-2 in Redis")
    assert client.get(task_id).lifecycle_status == S.CANCELLED
    assert task_id not in a.output()


def test_single_process_heartbeats_to_redis_and_obeys_kafka(procs, dist, client, tmp_path):
    # Given a single_process skald with Kafka + Redis + PostgreSQL configured
    yml = tmp_path / "job.yml"
    task_id = f"sp-{dist.tag}"
    yml.write_text(f"TaskWorkers:\n  {task_id}:\n    className: Recorder\n    attachments: {{someValue: 1}}\n")
    p = Proc.python(RUNNER, "single_process", f"sp-{dist.tag}", str(yml), env=dist.env(), log=tmp_path / "sp.log")
    procs.append(p)
    wait_for(lambda: dist.events(task_id, "main"), timeout=15, what="main")

    # Then its heartbeat lease is in Redis
    wait_for(lambda: (client.task_state(task_id)["heartbeat"] or -9) >= 0, timeout=10, what="heartbeat")

    # When an update for its task id is produced on Kafka, the handler gets it
    def update_seen() -> bool:
        client.send_worker_update(task_id, {"someValue": 8})  # repeated until the consumer has joined
        return any(e["value"] == 8 for e in dist.events(task_id, "update"))

    wait_for(update_seen, timeout=20, interval=0.5, what="update over Kafka")

    # When a cancel for it arrives, it releases and exits 143
    from skalds.backends.bus.base import Topic

    client._event(Topic.TASK_CANCEL, task_id)
    assert p.wait(20) == 143
    assert dist.events(task_id, "release")


@pytest.mark.parametrize("style", ["host-port-names", "kafka-with-embedded-store"])
def test_configuration_styles_and_mixes(procs, dist, tmp_path, home, style):
    # Given a node configured the 0.3.x way (KAFKA_HOST/PORT, REDIS_HOST/PORT) or Kafka + the SQLite file
    host, port = dist.kafka.bootstrap.split(":")
    if style == "host-port-names":
        redis_port = dist.cache_url.rsplit(":", 1)[1].split("/")[0]
        env = base_env(
            home,
            KAFKA_HOST=host,
            KAFKA_PORT=port,
            REDIS_HOST="127.0.0.1",
            REDIS_PORT=redis_port,
            REDIS_PASSWORD="",
            SKALDS_STORE_URL=dist.store_url,
            EVENTS_FILE=str(tmp_path / "events.jsonl"),
        )
        config = SkaldConfig(
            kafka_host=host,
            kafka_port=int(port),
            redis_host="127.0.0.1",
            redis_port=int(redis_port),
            store_url=dist.store_url,
        )
    else:
        env = base_env(home, SKALDS_BUS_URL=dist.bus_url, EVENTS_FILE=str(tmp_path / "events.jsonl"))
        config = SkaldConfig(bus_url=dist.bus_url, skalds_home=str(home))
    skald_id = f"mix-{dist.tag}"
    p = Proc.python(RUNNER, "node", skald_id, env=env, log=tmp_path / "mix.log")
    procs.append(p)
    p.wait_output(r"listening for commands", timeout=30)
    assert f"event bus: kafka://{host}:{port}" in p.output()

    # When a task is assigned to it, it runs, and a cancel over Kafka stops it
    with SkaldsClient(config) as c:
        task_id = f"t-{dist.tag}"
        c.create_task(Task(id=task_id, className="Recorder"), executor=skald_id)
        wait_for(lambda: dist.events(task_id, "main"), timeout=15, what="main")
        c.cancel(task_id)
        wait_for(lambda: dist.events(task_id, "release"), timeout=15, what="release")
        wait_for(lambda: c.get(task_id).lifecycle_status == S.CANCELLED, what="Cancelled")


def test_direct_updates_sent_right_after_assign_are_not_lost(procs, dist, client):
    # Given a node skald on Kafka (assign and update travel on different topics: no order between them)
    dist.skald(procs, "node", "fast")
    skald_id = f"fast-{dist.tag}"
    ids = [f"u{i}-{dist.tag}" for i in range(8)]

    # When each task is created and, the moment that returns, an outside producer updates it
    for i, task_id in enumerate(ids):
        client.create_task(Task(id=task_id, className="Recorder", attachments={"someValue": 0}), executor=skald_id)
        client.send_worker_update(task_id, {"someValue": 100 + i})

    # Then every worker's handler gets its update (or starts with it), none is dropped
    for i, task_id in enumerate(ids):
        wait_for(
            lambda t=task_id, v=100 + i: any(
                e["value"] == v for e in dist.events(t) if e["event"] in ("update", "main")
            ),
            timeout=15,
            what=f"update of {task_id}",
        )
