"""The Skalds 0.3.x ``KafkaProxy`` facade, against a real Tansu broker (its own, so the exact 0.3.x topic
names can be used without a prefix)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import TopicPartition

from skalds.errors import BackendUnavailable
from skalds.model.event import TaskEvent, UpdateTaskWorkerEvent
from skalds.proxy.kafka import KafkaConfig, KafkaProxy, KafkaTopic
from tests.support.servers import TansuServer, free_port, running


@pytest.fixture(scope="module")
def broker() -> Iterator[TansuServer]:
    with running("kafka") as server:
        yield server


def _read_all(bootstrap: str, topic: str, count: int, timeout: float = 10.0) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of the first ``count`` messages of ``topic`` partition 0, read with a raw client."""
    raw = RawConsumer(
        {"bootstrap.servers": bootstrap, "group.id": "raw-" + uuid.uuid4().hex, "enable.auto.commit": False}
    )
    raw.assign([TopicPartition(topic, 0, 0)])
    got: list[tuple[bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for m in raw.consume(10, 0.5):
            if m.error() is None:
                got.append((m.key(), m.value() or b""))
    raw.close()
    return got


def test_topic_names_are_those_of_0_3() -> None:
    assert (
        KafkaTopic.TASK_ASSIGN,
        KafkaTopic.TASK_CANCEL,
        KafkaTopic.TASK_UPDATE_ATTACHMENT,
        KafkaTopic.TASKWORKER_UPDATE,
        KafkaTopic.TESTING_PRODUCER,
    ) == ("task.assign", "task.cancel", "task.update.attachment", "taskworker.update", "testing.producer")
    assert KafkaTopic.TASK_WORKER_UPDATE == KafkaTopic.TASKWORKER_UPDATE


def test_config_url_and_repr() -> None:
    # Given configs with one host, several hosts, and credentials
    plain = KafkaConfig("k1")
    many = KafkaConfig("k1:9093, k2", port=9094)
    secret = KafkaConfig("k1", 9092, username="al ice", password="p@ss:w/rd")
    # Then the URLs are what the event bus understands, and the password stays out of repr()
    assert plain.url == "kafka://k1:9092"
    assert many.url == "kafka://k1:9093,k2:9094"
    assert secret.url == "kafka://al%20ice:p%40ss%3Aw%2Frd@k1:9092"
    assert "p@ss" not in repr(secret)
    assert "p@ss" not in repr(KafkaProxy(secret))


def test_seed_readme_snippet_produces_task_event(broker: TansuServer) -> None:
    # Given the exact call of the 0.3.x README
    task_id = "task_" + uuid.uuid4().hex[:8]
    event = TaskEvent(taskIds=[task_id], initiator="system_controller", recipient="skalds-1")
    KafkaProxy(KafkaConfig("127.0.0.1", broker.port)).produce(
        KafkaTopic.TASK_ASSIGN, key=task_id, value=event.model_dump_json(by_alias=True)
    )
    # Then the broker holds camelCase JSON keyed by the task id on task.assign
    (value,) = [v for k, v in _read_all(broker.bootstrap, "task.assign", 1) if k == task_id.encode()]
    assert json.loads(value)["taskIds"] == [task_id]
    assert {"id", "title", "initiator", "recipient", "createDateTime", "updateDateTime", "taskIds"} == set(
        json.loads(value)
    )


def test_produce_accepts_str_bytes_and_models(broker: TansuServer) -> None:
    # Given a proxy
    with KafkaProxy(KafkaConfig("127.0.0.1", broker.port), is_block=True) as proxy:
        # When a str, bytes and a pydantic model are produced on the testing topic
        proxy.produce(KafkaTopic.TESTING_PRODUCER, "k1", "héllo")
        proxy.produce(KafkaTopic.TESTING_PRODUCER, "k2", b"\x00raw")
        proxy.produce(KafkaTopic.TESTING_PRODUCER, "k3", UpdateTaskWorkerEvent(attachments={"a": 1}))
    # Then they are on the broker as UTF-8, raw bytes and JSON by alias
    assert _read_all(broker.bootstrap, "testing.producer", 3) == [
        (b"k1", "héllo".encode()),
        (b"k2", b"\x00raw"),
        (b"k3", b'{"attachments":{"a":1}}'),
    ]


def test_consume_reads_the_configured_topics(broker: TansuServer) -> None:
    # Given a proxy consuming task.cancel as its own group
    group = "proxy-" + uuid.uuid4().hex[:8]
    config = KafkaConfig("127.0.0.1", broker.port, consume_topic_list=[KafkaTopic.TASK_CANCEL], consume_group_id=group)
    with KafkaProxy(config, session_timeout_ms=2000) as proxy:
        assert proxy.consume(0.1) == []  # joins the group, at the end of the topic
        # When a command is produced
        proxy.produce(KafkaTopic.TASK_CANCEL, "t-9", TaskEvent(taskIds=["t-9"]))
        got = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = proxy.consume(1.0)
    # Then it is read back with its key and topic
    assert [(m.topic, m.key) for m in got] == [("task.cancel", "t-9")]
    assert json.loads(got[0].value)["taskIds"] == ["t-9"]


def test_consume_without_topics_is_an_error(broker: TansuServer) -> None:
    with KafkaProxy(KafkaConfig("127.0.0.1", broker.port)) as proxy, pytest.raises(ValueError):
        proxy.consume(0.1)


def test_no_broker_raises_backend_unavailable() -> None:
    config = KafkaConfig("127.0.0.1", free_port(), username="u", password="Pw-s3cret-9")
    # is_block=True waits at most connect_wait
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as blocked:
        KafkaProxy(config, is_block=True, connect_wait=0.5)
    assert time.monotonic() - started < 5
    # and a non-blocking proxy raises on produce, after the publish timeout, instead of dropping it
    proxy = KafkaProxy(config, publish_timeout=1.0)
    with pytest.raises(BackendUnavailable) as produced:
        proxy.produce(KafkaTopic.TASK_ASSIGN, "t", "x")
    proxy.close()
    assert "Pw-s3cret-9" not in str(blocked.value) + str(produced.value)
