"""What the event bus contract cannot see on the Kafka driver (against a real Tansu broker): topic
creation and names, the key on the wire, no lost command right after ``subscribe()``, a broker
that dies and comes back (Tansu forgets everything), fork safety, URLs and secrets."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient
from loguru import logger

from skalds.backends.bus.base import ALL_TOPICS, Consumer, Message
from skalds.backends.bus.kafka import KafkaEventBus, client_config, parse_kafka_url
from skalds.backends.factory import open_bus
from skalds.client import SkaldsClient
from skalds.config.skald_config import SkaldConfig
from skalds.errors import BackendUnavailable, ConfigError
from skalds.model.task import Task
from skalds.node.backends import Backends
from skalds.node.listener import BusListener
from tests.support.procs import ROOT, Proc, base_env, wait_for
from tests.support.servers import TansuServer, free_port, running
from tests.support.workers import read_events

FORK = mp.get_context("fork")
TOPIC = "task.assign"
SECRET = "Sup3r-Secret-pw"
#: Tansu joins a group in about half the session timeout: 2 s keeps these tests quick.
FAST = "session_timeout_ms=2000"


def _url(server: TansuServer, prefix: str | None = None, extra: str = FAST) -> str:
    query = [f"prefix={prefix}"] if prefix else []
    if extra:
        query.append(extra)
    return server.url + ("?" + "&".join(query) if query else "")


def _ns() -> str:
    return "t" + uuid.uuid4().hex[:12] + "."


@pytest.fixture
def own_server() -> Iterator[TansuServer]:
    """A Tansu broker for this test only (the test may kill and restart it)."""
    with running("kafka") as server:
        yield server


@pytest.fixture
def bus_factory(kafka_server: TansuServer) -> Iterator[Callable[..., KafkaEventBus]]:
    """``make(**kw)``: a bus on the session broker under this test's own topic prefix."""
    prefix = _ns()
    made: list[KafkaEventBus] = []

    def make(**kw: Any) -> KafkaEventBus:
        bus = KafkaEventBus(_url(kafka_server, prefix), **kw)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.close()


def poll_until(consumer: Consumer, done: Callable[[list[Message]], bool], timeout: float = 10.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while not done(got) and time.monotonic() < deadline:
        got.extend(consumer.poll(min(1.0, max(deadline - time.monotonic(), 0.0))))
    return got


def _raw_consumer(bootstrap: str) -> RawConsumer:
    return RawConsumer(
        {"bootstrap.servers": bootstrap, "group.id": "raw-" + uuid.uuid4().hex, "enable.auto.commit": False}
    )


def _partitions(bootstrap: str) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in metadata.topics.items()}


# ---- topics and the wire -----------------------------------------------------------------
@pytest.mark.parametrize("partitions", [1, 3])
def test_topics_are_created_with_the_configured_partitions(kafka_server: TansuServer, partitions: int) -> None:
    # Given a bus configured for N partitions under a fresh prefix
    prefix = _ns()
    bus = KafkaEventBus(_url(kafka_server, prefix), partitions=partitions)
    # When a skald subscribes to all command topics
    consumer = bus.subscribe("skald-a", ALL_TOPICS)
    # Then each topic exists with N partitions (Tansu's auto-creation would have made 4)
    found = _partitions(kafka_server.bootstrap)
    assert {t: found.get(prefix + t) for t in ALL_TOPICS} == dict.fromkeys(ALL_TOPICS, partitions)
    consumer.close()
    bus.close()


def test_exact_topic_names_and_task_id_key_on_the_wire(own_server: TansuServer) -> None:
    # Given a bus without prefix (as a skald runs it) and messages on every topic
    bus = KafkaEventBus(own_server.url)
    for i, topic in enumerate(ALL_TOPICS):
        bus.publish(topic, f"task-{i}", f'{{"n":{i}}}')
    bus.publish(TOPIC, None, b"no key")
    # When a plain confluent-kafka consumer reads the topics from their beginning
    raw = _raw_consumer(own_server.bootstrap)
    raw.assign([TopicPartition(t, 0, 0) for t in ALL_TOPICS])
    seen: list[tuple[str | None, bytes | None, bytes | None]] = []
    deadline = time.monotonic() + 10
    while len(seen) < 5 and time.monotonic() < deadline:
        for m in raw.consume(10, 0.5):
            assert m.error() is None
            seen.append((m.topic(), m.key(), m.value()))
    raw.close()
    # Then the topics have the 0.3.x names and the key is the task id
    assert sorted(seen, key=lambda s: (s[0] or "", s[2] or b"")) == sorted(
        [
            ("task.assign", b"task-0", b'{"n":0}'),
            ("task.assign", None, b"no key"),
            ("task.cancel", b"task-1", b'{"n":1}'),
            ("task.update.attachment", b"task-2", b'{"n":2}'),
            ("taskworker.update", b"task-3", b'{"n":3}'),
        ],
        key=lambda s: (s[0] or "", s[2] or b""),
    )
    assert set(_partitions(own_server.bootstrap)) >= set(ALL_TOPICS)
    bus.close()


def test_same_key_always_lands_in_the_same_partition(bus_factory: Callable[..., KafkaEventBus]) -> None:
    # Given a topic with 4 partitions, and a consumer
    bus = bus_factory(partitions=4)
    consumer = bus.subscribe("g", [TOPIC])
    # When one task's commands are published among others
    for i in range(20):
        bus.publish(TOPIC, "task-x" if i % 2 else f"other-{i}", str(i))
    got = poll_until(consumer, lambda g: len(g) >= 20)
    # Then the task's commands arrive in publish order
    assert [m.value for m in got if m.key == "task-x"] == [str(i).encode() for i in range(1, 20, 2)]
    consumer.close()


# ---- no command lost at start-up ---------------------------------------------------------
@pytest.mark.parametrize("partitions", [1, 4])
def test_message_published_right_after_subscribe_is_delivered(
    bus_factory: Callable[..., KafkaEventBus], partitions: int
) -> None:
    # Given 20 fresh groups subscribing at once, on topics that already hold old messages
    bus = bus_factory(partitions=partitions)
    for i in range(5):
        bus.publish(TOPIC, f"old-{i}", b"old")
    results: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            consumer = bus.subscribe(f"fresh-{i}", [TOPIC])
            # When each publishes a command the moment subscribe() returned
            mine = f"mine-{i}".encode()
            bus.publish(TOPIC, f"task-{i}", mine)
            got = poll_until(consumer, lambda g: any(m.value == mine for m in g))
            results[i] = [m.value for m in got]
            consumer.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # Then every group received its command (duplicates of older ones are tolerated, losses not)
    assert not errors, errors
    assert sorted(results) == list(range(20))
    for i, values in results.items():
        assert f"mine-{i}".encode() in values


def test_known_group_that_received_nothing_resumes_where_it_started(
    bus_factory: Callable[..., KafkaEventBus],
) -> None:
    # Given a skald that subscribed and stopped before any command came
    bus = bus_factory()
    bus.subscribe("skald-1", ALL_TOPICS).close()
    # When commands are published while it is down, and it subscribes again
    bus.publish(TOPIC, "t1", b"while-down-1")
    bus.publish("task.cancel", "t1", b"while-down-2")
    back = bus.subscribe("skald-1", ALL_TOPICS)
    # Then it receives them (a new group would start at the end and miss them)
    got = poll_until(back, lambda g: len(g) >= 2)
    assert [m.value for m in got] == [b"while-down-1", b"while-down-2"]
    assert back.poll(0.3) == []
    back.close()


def test_commands_published_while_a_skald_joins_its_group_are_delivered(
    kafka_server: TansuServer, tmp_path: Path
) -> None:
    # Given a skald's bus listener starting on a new group (joining takes about 2 s here)
    url = _url(kafka_server, _ns(), extra="session_timeout_ms=4000&partitions=2")
    publisher = KafkaEventBus(url)
    backends = Backends(SkaldConfig(skalds_home=str(tmp_path), bus_url=url))
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{message}")
    got: list[Message] = []
    listener = BusListener(backends, f"skald-{uuid.uuid4().hex[:8]}", got.extend)
    listener.start()
    try:
        # When commands are published on every topic at once, while the group is still joining
        sent = {f"cmd-{i}-{topic}".encode() for i in range(3) for topic in ALL_TOPICS}
        for value in sorted(sent):
            publisher.publish(value.decode().split("-", 2)[2], f"task-{value[4:5].decode()}", value)
        assert not any("listening for commands" in line for line in lines)
        # Then every one is delivered once the group has its partitions
        wait_for(lambda: sent <= {m.value for m in got}, timeout=15, what="every command delivered")
        assert any("listening for commands" in line for line in lines)
    finally:
        listener.stop()
        listener.join(10)
        logger.remove(sink)
        backends.close()
        publisher.close()


RUNNER = ROOT / "tests" / "support" / "run_skald.py"
#: A skald without an id (so a generated one, a new consumer group at every start), in edge mode.
GENERATED_ID_RUNNER = """\
import sys
from skalds import SkaldConfig, Skalds
from tests.support.workers import Recorder
app = Skalds(SkaldConfig(skald_mode="edge", yaml_file=sys.argv[1]))
app.register_task_worker(Recorder)
app.run()
"""


def _updates(events_file: Path, task: str, value: int) -> list[dict[str, Any]]:
    return [
        e for e in read_events(str(events_file)) if e["task"] == task and e["event"] == "update" and e["value"] == value
    ]


def test_direct_update_sent_as_the_worker_heartbeat_appears_is_applied(
    kafka_server: TansuServer, procs: list[Proc], home: Path, tmp_path: Path
) -> None:
    # Given a task assigned in the store to a node skald that is starting on the Kafka bus (its
    # group's join takes about 3 s, long after its worker runs)
    url = _url(kafka_server, _ns(), extra="session_timeout_ms=6000")
    client = SkaldsClient(SkaldConfig(skalds_home=str(home), bus_url=url))
    skald_id = f"node-{uuid.uuid4().hex[:8]}"
    client.store.create(Task(id="t1", className="Recorder", attachments={"someValue": 1}))
    client.store.assign("t1", skald_id)
    events = tmp_path / "events.jsonl"
    node = Proc.python(
        RUNNER,
        "node",
        skald_id,
        env=base_env(home, SKALDS_BUS_URL=url, EVENTS_FILE=str(events)),
        log=tmp_path / "node.log",
    )
    procs.append(node)
    try:
        # When its worker's heartbeat appears, an outside producer updates the task at once
        wait_for(lambda: (client.task_state("t1")["heartbeat"] or -9) >= 0, timeout=15, what="heartbeat")
        client.send_worker_update("t1", {"someValue": 42})
        assert "listening for commands" not in node.output()  # the group had no partitions yet
        # Then the worker applies it
        wait_for(lambda: _updates(events, "t1", 42), timeout=15, what="update applied")
    finally:
        client.close()


def test_skald_with_a_generated_id_gets_commands_sent_while_it_was_down(
    kafka_server: TansuServer, procs: list[Proc], home: Path, tmp_path: Path
) -> None:
    # Given an edge skald without an id, running its task from the file
    url = _url(kafka_server, _ns())
    client = SkaldsClient(SkaldConfig(skalds_home=str(home), bus_url=url))
    script, tasks, events = tmp_path / "run_generated.py", tmp_path / "tasks.yml", tmp_path / "events.jsonl"
    script.write_text(GENERATED_ID_RUNNER)
    tasks.write_text("TaskWorkers:\n  cam1:\n    className: Recorder\n    attachments: {someValue: 1}\n")
    env = base_env(home, SKALDS_BUS_URL=url, EVENTS_FILE=str(events))

    def start(name: str) -> Proc:
        p = Proc.python(script, str(tasks), env=env, log=tmp_path / f"{name}.log")
        procs.append(p)
        return p

    try:
        first = start("first")
        first.wait_output("listening for commands", timeout=15)
        # When it stops, an update for its task is published while it is down, and it starts again
        first.stop()
        client.send_worker_update("cam1", {"someValue": 5})
        second = start("second")
        # Then the update reaches the task's worker in the new life (a new id, so a new group)
        wait_for(lambda: _updates(events, "cam1", 5), timeout=15, what="update sent while down")
        group = r"listening for commands as group (\S+)"
        assert first.wait_output(group).group(1) != second.wait_output(group).group(1)
    finally:
        client.close()


def test_subscribe_fails_in_bounded_time_without_broker() -> None:
    # Given no broker at all
    bus = KafkaEventBus(f"kafka://127.0.0.1:{free_port()}", assign_timeout=2.0)
    started = time.monotonic()
    # When a skald subscribes / Then it gets BackendUnavailable (the listener retries later)
    with pytest.raises(BackendUnavailable):
        bus.subscribe("g", [TOPIC])
    assert time.monotonic() - started < 10
    bus.close()


def _receive_and_die(url: str, got: Any) -> None:
    bus = KafkaEventBus(url)
    consumer = bus.subscribe("crashy", [TOPIC])
    bus.publish(TOPIC, "t", b"handed-out")
    got.put([m.value for m in poll_until(consumer, lambda g: len(g) >= 1)])
    got.close()
    got.join_thread()  # the queue's feeder thread must finish before _exit
    os._exit(0)  # no poll, no close: nothing committed, the group keeps a dead member


def test_batch_of_crashed_consumer_is_redelivered(kafka_server: TansuServer) -> None:
    # Given a consumer process that received a message and died before polling again
    url = _url(kafka_server, _ns())
    got = FORK.Queue()
    child = FORK.Process(target=_receive_and_die, args=(url, got))
    child.start()
    assert got.get(timeout=30) == [b"handed-out"]
    child.join(timeout=10)
    # When its group subscribes again (after the dead member's session expired)
    bus = KafkaEventBus(url)
    consumer = bus.subscribe("crashy", [TOPIC])
    # Then the uncommitted message comes again (at-least-once)
    assert [m.value for m in poll_until(consumer, lambda g: len(g) >= 1)] == [b"handed-out"]
    consumer.close()
    bus.close()


# ---- broker dies and comes back ----------------------------------------------------------
def test_publish_and_consume_recover_after_broker_restart(own_server: TansuServer) -> None:
    # Given a bus with 2 partitions per topic, a subscribed consumer and one delivered message
    bus = KafkaEventBus(_url(own_server), partitions=2, publish_timeout=4.0)
    consumer = bus.subscribe("skald-r", [TOPIC])
    bus.publish(TOPIC, "a", b"before")
    assert [m.value for m in poll_until(consumer, lambda g: len(g) >= 1)] == [b"before"]
    # When the broker is killed
    own_server.kill()
    # Then publishing fails within a bounded time, and polling just returns nothing
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        bus.publish(TOPIC, "b", b"during")
    assert time.monotonic() - started <= 6.0
    assert consumer.poll(0.5) == []
    # And when it comes back (empty: Tansu keeps nothing), the same bus publishes again
    own_server.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            bus.publish(TOPIC, "c", b"after")
            break
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
    # and the same consumer receives what was published after the restart
    got = poll_until(consumer, lambda g: any(m.value == b"after" for m in g), timeout=20)
    assert b"after" in [m.value for m in got]
    bus.publish(TOPIC, "d", b"later")
    assert [m.value for m in poll_until(consumer, lambda g: len(g) >= 1)] == [b"later"]
    # and the topic was recreated with the configured partitions
    assert _partitions(own_server.bootstrap)[TOPIC] == 2
    consumer.close()
    bus.close()


# ---- processes ---------------------------------------------------------------------------
def _publish_in_child(bus: KafkaEventBus, done: Any) -> None:
    try:
        bus.publish(TOPIC, "child", b"from-child")
        done.put("ok")
    except BaseException as exc:
        done.put(repr(exc))


def test_bus_object_is_usable_after_fork(bus_factory: Callable[..., KafkaEventBus]) -> None:
    # Given a bus whose producer already exists in the parent
    bus = bus_factory()
    consumer = bus.subscribe("g", [TOPIC])
    bus.publish(TOPIC, "parent", b"from-parent-1")
    # When a forked child publishes through the same object
    done = FORK.Queue()
    child = FORK.Process(target=_publish_in_child, args=(bus, done))
    child.start()
    assert done.get(timeout=20) == "ok"
    child.join(timeout=10)
    # Then the child's and the parent's messages all arrive, and the parent keeps working
    bus.publish(TOPIC, "parent", b"from-parent-2")
    got = poll_until(consumer, lambda g: len(g) >= 3)
    assert sorted(m.value for m in got) == [b"from-child", b"from-parent-1", b"from-parent-2"]
    assert child.exitcode == 0
    consumer.close()


def test_dropped_bus_is_freed_at_once(kafka_server: TansuServer) -> None:
    # Given a bus that published (so it has a producer with callbacks) and was never closed
    bus = KafkaEventBus(_url(kafka_server, _ns()))
    bus.publish(TOPIC, "k", b"v")
    ref = weakref.ref(bus)
    # When the last reference goes / Then it is freed without waiting for the garbage collector
    # (no reference cycle through librdkafka callbacks keeping connections open)
    gc.disable()
    try:
        del bus
        deadline = time.monotonic() + 3  # (the event-serving thread may hold it for a moment)
        while ref() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ref() is None
    finally:
        gc.enable()


# ---- URLs, settings and secrets ----------------------------------------------------------
def test_url_parsing_and_client_settings() -> None:
    parsed = parse_kafka_url("kafka://us%40er:p%3Ass@k1:9093,k2,[::1]:9094?prefix=dev.&sasl_mechanism=scram-sha-512")
    assert parsed.hosts == ("k1:9093", "k2:9092", "[::1]:9094")
    assert (parsed.username, parsed.password, parsed.prefix) == ("us@er", "p:ss", "dev.")
    conf = client_config(parsed)
    assert conf["bootstrap.servers"] == "k1:9093,k2:9092,[::1]:9094"
    assert (conf["security.protocol"], conf["sasl.mechanism"]) == ("SASL_PLAINTEXT", "SCRAM-SHA-512")
    assert (conf["sasl.username"], conf["sasl.password"]) == ("us@er", "p:ss")
    cloud = client_config(parse_kafka_url("kafka://key:secret@pkc-1.europe-west1.gcp.confluent.cloud:9092"))
    assert (cloud["security.protocol"], cloud["sasl.mechanism"]) == ("SASL_SSL", "PLAIN")
    assert "security.protocol" not in client_config(parse_kafka_url("kafka://h"))
    # query parameters override the keyword arguments; topics get the prefix
    bus = KafkaEventBus("kafka://h:1?prefix=p.&partitions=6&fetch_wait_max_ms=5", partitions=1)
    assert (bus.partitions, bus.fetch_wait_max_ms, bus.session_timeout_ms) == (6, 5, 6000)
    assert (bus.topic_name(TOPIC), bus.topic_of("p." + TOPIC)) == ("p.task.assign", TOPIC)
    with pytest.raises(ConfigError):
        KafkaEventBus("kafka://")
    with pytest.raises(ConfigError, match="sesion_timeout_ms"):
        KafkaEventBus("kafka://h?sesion_timeout_ms=2000")
    with pytest.raises(ConfigError) as err:
        KafkaEventBus(f"kafka://u:{SECRET}@h?partitions=many")
    assert SECRET not in str(err.value)


def test_factory_passes_skald_options(kafka_server: TansuServer) -> None:
    bus = open_bus(_url(kafka_server, _ns()), partitions=2, replication_factor=1)
    assert isinstance(bus, KafkaEventBus)
    assert (bus.partitions, bus.replication_factor) == (2, 1)
    bus.close()


def test_password_never_appears_in_errors_or_logs() -> None:
    # Given a URL with a password, and no broker behind it; everything logged is captured
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message}")
    try:
        bus = KafkaEventBus(f"kafka://alice:{SECRET}@127.0.0.1:{free_port()}", publish_timeout=1.0, assign_timeout=1.5)
        # When publishing and subscribing fail
        with pytest.raises(BackendUnavailable) as pub:
            bus.publish(TOPIC, "t", b"x")
        with pytest.raises(BackendUnavailable) as sub:
            bus.subscribe("g", [TOPIC])
        bus.close()
    finally:
        logger.remove(sink)
    # Then neither the errors nor any log line show the password
    for text in (str(pub.value), repr(pub.value), str(sub.value), *lines):
        assert SECRET not in text
    assert "alice" in str(pub.value) or "127.0.0.1" in str(pub.value)
