"""The controller when a backend is down: 503 ``backend_unavailable`` (never a 500), creates that are
safe to retry (Idempotency-Key), a stored create that always answers 201, health that says which
backend is wrong and why.

Each test runs the controller app in this process on real servers (PostgreSQL, Redis, Tansu, the
embedded SQLite file) and takes a server down for real.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from skalds.controller.app import create_app
from skalds.controller.config import ControllerConfig
from skalds.controller.service import ControllerService
from tests.support.disks import fill, tmpfs
from tests.support.procs import wait_for
from tests.support.servers import PostgresServer, RedisServer, TansuServer

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


def register(service: ControllerService, skald_id: str = "node-a", classes: tuple[str, ...] = ("Job",)) -> None:
    """A node skald as the cache shows it (what a real one writes when it starts)."""
    service.state.register_skald(skald_id, "node", list(classes), {c: SCHEMA for c in classes})
    service.state.skald_heartbeat(skald_id, 1, [], list(classes))


@pytest.fixture
def pg_schema(postgres_server: PostgresServer) -> Iterator[str]:
    """A store URL on a fresh schema of the session's PostgreSQL server."""
    name = "o" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield f"{postgres_server.url}?options=-csearch_path%3D{name}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def make_client(home: Path) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**config)``: the controller app (lifespan running) on ``home`` plus the given
    settings, with node-a advertising ``Job``."""
    clients: list[TestClient] = []

    def make(**settings: Any) -> TestClient:
        settings.setdefault("skalds_home", str(home))
        config = ControllerConfig(redis_key_ttl=60, monitor_heartbeat_timeout=120, **settings)
        client = TestClient(create_app(config), base_url="http://127.0.0.1", raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        register(client.app.state.service)  # type: ignore[attr-defined]
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def error_code(response: Any) -> str:
    return str(response.json()["error"]["code"])


def tasks_named(client: TestClient, name: str) -> list[dict[str, Any]]:
    page = client.get("/api/tasks", params={"q": name, "pageSize": 100}).json()
    return [t for t in page["items"] if t["name"] == name]


# ---- 503 instead of 500 -------------------------------------------------------------------------
def test_a_store_outage_is_503_naming_the_store_and_nothing_is_lost(
    make_client: Callable[..., TestClient], postgres_server: PostgresServer, pg_schema: str
) -> None:
    # Given a controller on PostgreSQL with one task stored
    client = make_client(store_url=pg_schema)
    first = client.post("/api/tasks", json={"id": "kept", "className": "Job", "attachments": {}})
    assert first.status_code == 201, first.text
    # When the PostgreSQL server goes down (a crash; the test server commits asynchronously, so
    # its acknowledged writes are made durable first, as a production server's are)
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    postgres_server.kill()
    try:
        # Then creates and reads answer 503 backend_unavailable naming the store (not 500), and
        # say when to retry
        create = client.post("/api/tasks", json={"className": "Job", "attachments": {}, "name": "during"})
        assert create.status_code == 503, create.text
        assert error_code(create) == "backend_unavailable"
        assert "task store" in create.json()["error"]["message"]
        assert create.headers["Retry-After"] == "1"
        for response in (client.get("/api/tasks"), client.get("/api/tasks/kept")):
            assert response.status_code == 503 and error_code(response) == "backend_unavailable", response.text
        # And health is degraded and says which backend and why
        health = client.get("/api/system/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        assert health.json()["checks"]["cache"] == "ok"
        assert "task store" in health.json()["checks"]["store"]
    finally:
        postgres_server.start()
    # When it is back / Then the same controller works again and kept what it had acknowledged
    wait_for(lambda: client.get("/api/system/health").status_code == 200, timeout=10, what="health ok again")
    assert client.get("/api/tasks/kept").status_code == 200
    assert client.post("/api/tasks", json={"className": "Job", "attachments": {}}).status_code == 201
    assert tasks_named(client, "during") == []


def test_a_stored_create_answers_201_when_the_cache_fails_right_after(
    make_client: Callable[..., TestClient], redis_server: RedisServer
) -> None:
    # Given a controller whose cache is Redis, its first sweep done (the next one is an hour away)
    client = make_client(cache_url=redis_server.url, dispatcher_interval=3600)
    app: Any = client.app
    wait_for(lambda: "lastRun" in app.state.loops.get("dispatcher", {}), timeout=10, what="first sweep")
    dispatcher = app.state.dispatcher

    # When Redis dies right after the task is stored (the dispatch pass is the first step after
    # the store write)
    dispatch_pending = dispatcher.dispatch_pending

    def redis_dies_first(*args: Any) -> Any:
        redis_server.kill()
        return dispatch_pending(*args)

    dispatcher.dispatch_pending = redis_dies_first
    try:
        response = client.post("/api/tasks", json={"className": "Job", "attachments": {}, "name": "stored"})
    finally:
        dispatcher.dispatch_pending = dispatch_pending
        redis_server.start()
    # Then the answer is 201 with the stored task (its live fields unknown), not an error that
    # would make a client create it again
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "stored" and response.json()["status"] == "Created"
    assert response.headers["Location"] == f"/api/tasks/{response.json()['id']}"


# ---- idempotent creates -------------------------------------------------------------------------
def test_a_create_retried_with_the_same_idempotency_key_is_answered_again(
    make_client: Callable[..., TestClient], home: Path
) -> None:
    client = make_client()
    body = {"className": "Job", "attachments": {"n": 1}, "name": "once"}
    key = {"Idempotency-Key": "3c1f9a52-create-1"}
    # When the same create is sent three times with one key
    first = client.post("/api/tasks", json=body, headers=key)
    again = client.post("/api/tasks", json=body, headers=key)
    # Then the first creates it (201) and the retries get the same task (200, marked replayed)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and again.headers["Location"] == first.headers["Location"]
    assert again.json()["idempotencyKey"] == key["Idempotency-Key"]
    # And also through another controller on the same store (the key is stored with the task)
    other = make_client()
    assert other.post("/api/tasks", json=body, headers=key).json()["id"] == first.json()["id"]
    assert len(tasks_named(client, "once")) == 1

    # When the key comes back with another body / Then 422 idempotency_key_reused, nothing stored
    changed = client.post("/api/tasks", json={**body, "attachments": {"n": 2}}, headers=key)
    assert changed.status_code == 422 and error_code(changed) == "idempotency_key_reused", changed.text
    assert "another body" in changed.json()["error"]["message"]
    assert client.get(f"/api/tasks/{first.json()['id']}").json()["attachments"] == {"n": 1}

    # When a key is not usable / Then 422 naming the header
    bad = client.post("/api/tasks", json=body, headers={"Idempotency-Key": "x" * 201})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "header.Idempotency-Key"

    # When a client-chosen id is retried without a key / Then 409 task_exists: no copy either
    mine = {**body, "id": "chosen", "name": "chosen"}
    assert client.post("/api/tasks", json=mine).status_code == 201
    retry = client.post("/api/tasks", json=mine)
    assert retry.status_code == 409 and error_code(retry) == "task_exists"
    # And a key with a client-chosen id answers the retry with that task
    keyed = {**body, "id": "chosen-2"}
    assert client.post("/api/tasks", json=keyed, headers={"Idempotency-Key": "k2"}).status_code == 201
    replay = client.post("/api/tasks", json=keyed, headers={"Idempotency-Key": "k2"})
    assert replay.status_code == 200 and replay.json()["id"] == "chosen-2"
    taken = client.post("/api/tasks", json=keyed, headers={"Idempotency-Key": "k3"})
    assert taken.status_code == 409 and error_code(taken) == "task_exists"


def test_a_batch_retried_with_the_same_idempotency_key_is_answered_again(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client()
    batch = {"tasks": [{"className": "Job", "attachments": {}, "name": "b"} for _ in range(3)]}
    key = {"Idempotency-Key": "batch-7"}
    first = client.post("/api/tasks/batch", json=batch, headers=key)
    again = client.post("/api/tasks/batch", json=batch, headers=key)
    assert first.status_code == 201, first.text
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert [t["id"] for t in again.json()["items"]] == [t["id"] for t in first.json()["items"]]
    assert len({t["id"] for t in first.json()["items"]}) == 3
    assert len(tasks_named(client, "b")) == 3
    # The same key with a different batch is refused, and stores nothing
    other = {"tasks": batch["tasks"][:2]}
    refused = client.post("/api/tasks/batch", json=other, headers=key)
    assert refused.status_code == 422 and error_code(refused) == "idempotency_key_reused", refused.text
    assert len(tasks_named(client, "b")) == 3


# ---- a full disk (embedded backend) -------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "2m") as mount:
        yield mount


def test_a_full_disk_is_503_naming_it_health_degraded_and_creates_work_once_space_is_freed(
    make_client: Callable[..., TestClient], small_disk: Path
) -> None:
    # Given a controller on the embedded backend, on a 2 MiB disk, with tasks stored
    client = make_client(skalds_home=str(small_disk))
    stored = [
        client.post("/api/tasks", json={"className": "Job", "attachments": {}, "name": "before"}) for _ in range(3)
    ]
    assert [r.status_code for r in stored] == [201] * 3
    db = small_disk / "skalds.db"
    # When the disk fills up
    filler = fill(small_disk)
    # Then health is degraded, saying the store's disk is full and where
    health = client.get("/api/system/health")
    assert health.status_code == 503 and health.json()["status"] == "degraded", health.text
    assert "disk is full" in health.json()["checks"]["store"] and str(db) in health.json()["checks"]["store"]
    # And creates answer 503 backend_unavailable naming the disk (once the log's free pages are
    # used up), never 500
    body = {"className": "Job", "attachments": {"n": 1}, "name": "during"}
    answers = []
    for n in range(200):
        response = client.post("/api/tasks", json=body, headers={"Idempotency-Key": f"full-{n}"})
        answers.append(response.status_code)
        if response.status_code != 201:
            break
    assert answers[-1] == 503 and set(answers) <= {201, 503}, answers
    error = response.json()["error"]
    assert error["code"] == "backend_unavailable" and "disk is full" in error["message"] and str(db) in error["message"]
    # And what was stored before is still there
    assert all(client.get(f"/api/tasks/{r.json()['id']}").status_code == 200 for r in stored)

    # When space is freed
    filler.unlink()
    # Then health is ok again, the refused create succeeds when retried (once), and the store
    # keeps working: the write-ahead log is truncated, not left to grow into the freed space
    wait_for(lambda: client.get("/api/system/health").status_code == 200, timeout=10, what="health ok again")
    retry = client.post("/api/tasks", json=body, headers={"Idempotency-Key": f"full-{len(answers) - 1}"})
    assert retry.status_code == 201, retry.text
    for _ in range(30):
        after = client.post("/api/tasks", json={**body, "name": "after"})
        sizes = {p.name: p.stat().st_size for p in small_disk.iterdir()}
        assert after.status_code == 201, (after.text, sizes)
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size < 1024 * 1024, wal.stat().st_size
    assert os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize > 512 * 1024
    assert len(tasks_named(client, "during")) == len(answers)


# ---- a broker that is down; a create on a standby controller -------------------------------------
def test_requests_do_not_wait_for_a_broker_that_is_down(
    make_client: Callable[..., TestClient], kafka_server: TansuServer
) -> None:
    # Given a controller publishing to Kafka (store and cache embedded), its topics in use
    client = make_client(bus_url=f"{kafka_server.url}?prefix=o{uuid.uuid4().hex[:8]}")
    service: ControllerService = client.app.state.service  # type: ignore[attr-defined]
    assert client.post("/api/tasks", json={"className": "Job", "attachments": {}}).status_code == 201
    # When the broker goes down
    kafka_server.kill()
    try:
        # Then creates (each publishes a task.assign) and cancels (task.cancel) answer at once,
        # not after the producer's 5 s timeout
        for n in range(3):
            started = time.monotonic()
            created = client.post("/api/tasks", json={"className": "Job", "attachments": {}, "name": f"down-{n}"})
            cancelled = client.put(f"/api/tasks/{created.json()['id']}/status", json={"status": "Cancelled"})
            took = time.monotonic() - started
            assert created.status_code == 201 and cancelled.status_code == 200, (created.text, cancelled.text)
            assert took < 1.0, f"create + cancel took {took:.2f} s with the broker down"
        # And once a publish has failed, health says the bus is failing and why
        wait_for(lambda: client.get("/api/system/health").json()["checks"]["bus"] != "ok", timeout=10, what="bus")
        health = client.get("/api/system/health")
        assert health.status_code == 503 and "kafka" in health.json()["checks"]["bus"]
    finally:
        kafka_server.start()

    # When the broker is back / Then events are published again and health is ok
    def published_again() -> bool:
        client.post("/api/tasks", json={"className": "Job", "attachments": {}})
        return service.publisher.down_since is None

    wait_for(published_again, timeout=20, interval=0.2, what="publishing again")
    assert client.get("/api/system/health").status_code == 200


def test_a_task_created_on_a_standby_controller_is_dispatched_within_a_second(
    make_client: Callable[..., TestClient],
) -> None:
    # Given two dispatching controllers on the same backends, the first leading, sweeps far apart
    leader = make_client(dispatcher_interval=60)
    wait_for(lambda: leader.app.state.leader.is_leader, timeout=10, what="a leader")  # type: ignore[attr-defined]
    standby = make_client(dispatcher_interval=60)
    assert not standby.app.state.leader.is_leader  # type: ignore[attr-defined]
    # When a task is created through the standby
    started = time.monotonic()
    created = standby.post("/api/tasks", json={"className": "Job", "attachments": {}})
    assert created.status_code == 201 and created.json()["executor"] is None
    # Then the leader assigns it within about a second, not at its next sweep
    task_id = created.json()["id"]
    wait_for(lambda: leader.get(f"/api/tasks/{task_id}").json()["executor"] == "node-a", timeout=3, interval=0.02)
    assert time.monotonic() - started < 1.0
    # And so does a batch
    batch = standby.post("/api/tasks/batch", json={"tasks": [{"className": "Job", "attachments": {}}] * 3})
    ids = [t["id"] for t in batch.json()["items"]]
    wait_for(
        lambda: all(leader.get(f"/api/tasks/{i}").json()["executor"] == "node-a" for i in ids), timeout=3, interval=0.02
    )
