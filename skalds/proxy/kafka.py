"""``KafkaProxy``: the Skalds 0.3.x Kafka handle, kept for user code written against it.

Programs written for Skalds 0.3.x send commands to skalds with::

    KafkaProxy(KafkaConfig(host, port)).produce(
        KafkaTopic.TASK_ASSIGN, key=task_id, value=TaskEvent(...).model_dump_json(by_alias=True))

This facade keeps that working, on the same wire format (the shared topics, key = task id, camelCase
JSON; see docs/wire-formats.md). It wraps the event bus driver
(:class:`~skalds.backends.bus.kafka.KafkaEventBus`) rather than a second client, so it has the same
settings, topic creation, fork safety and error behaviour. Unlike 0.3.x, which queued the message
and logged failures, :meth:`KafkaProxy.produce` returns once the broker has the message and raises
:class:`~skalds.errors.BackendUnavailable` otherwise — a command that silently went nowhere is the
harder failure to debug.

``is_block=False`` (the default) connects on the first call; ``is_block=True`` waits for a broker
at construction, up to ``connect_wait`` seconds, then raises ``BackendUnavailable``. With a
``consume_topic_list``, :meth:`KafkaProxy.consume` reads those topics as consumer group
``consume_group_id`` (a fresh group per proxy if none is given).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from skalds.backends.bus.base import Consumer, Message
from skalds.backends.bus.kafka import DEFAULT_PORT, KafkaEventBus
from skalds.errors import BackendUnavailable
from skalds.utils.logging import mask_secrets

__all__ = ["KafkaConfig", "KafkaProxy", "KafkaTopic", "Message"]


class KafkaTopic:
    """The Kafka topics of Skalds (docs/wire-formats.md): one shared topic per kind of command."""

    TASK_ASSIGN = "task.assign"
    TASK_CANCEL = "task.cancel"
    TASK_UPDATE_ATTACHMENT = "task.update.attachment"
    TASKWORKER_UPDATE = "taskworker.update"
    #: 0.3.x spelling of :attr:`TASKWORKER_UPDATE`.
    TASK_WORKER_UPDATE = TASKWORKER_UPDATE
    #: For trying a connection out; no skald reads it.
    TESTING_PRODUCER = "testing.producer"

    #: The topics skalds consume.
    ALL = (TASK_ASSIGN, TASK_CANCEL, TASK_UPDATE_ATTACHMENT, TASKWORKER_UPDATE)


@dataclass
class KafkaConfig:
    """Where the brokers are. ``host`` may list several (``"a:9092,b:9092"``); the password is left
    out of ``repr()``."""

    host: str
    port: int = DEFAULT_PORT
    consume_topic_list: list[str] | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    consume_group_id: str | None = None

    @property
    def url(self) -> str:
        """The ``kafka://`` URL of this configuration (credentials percent-encoded)."""
        hosts = ",".join(
            h if _has_port(h) else f"{h}:{self.port}" for h in (p.strip() for p in self.host.split(",")) if h
        )
        auth = ""
        if self.username:
            auth = quote(self.username, safe="")
            if self.password:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        return f"kafka://{auth}{hosts}"


def _has_port(host: str) -> bool:
    if host.startswith("["):  # [IPv6]:port
        return "]:" in host
    return ":" in host


def _encode(value: str | bytes | BaseModel) -> bytes:
    if isinstance(value, BaseModel):
        return value.model_dump_json(by_alias=True).encode("utf-8")
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


class KafkaProxy:
    """Produce Skalds commands (and optionally consume topics) on a Kafka cluster."""

    def __init__(
        self,
        kafka_config: KafkaConfig,
        is_block: bool = False,
        *,
        connect_wait: float = 10.0,
        **bus_options: Any,
    ) -> None:
        self.config = kafka_config
        self.host = kafka_config.host
        self.port = kafka_config.port
        self.bus = KafkaEventBus(kafka_config.url, **bus_options)
        self._consumer: Consumer | None = None
        if is_block:
            self.wait_until_ready(connect_wait)

    def __repr__(self) -> str:
        return f"KafkaProxy({mask_secrets(self.config.url)})"

    def __enter__(self) -> KafkaProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def wait_until_ready(self, timeout: float = 10.0) -> None:
        """Return once a broker answers; :class:`BackendUnavailable` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.bus.ping(timeout=min(2.0, max(deadline - time.monotonic(), 0.1))):
            if time.monotonic() >= deadline:
                raise BackendUnavailable(f"no Kafka broker at {mask_secrets(self.config.url)} after {timeout:.0f} s")
            time.sleep(0.2)

    def produce(self, topic: str, key: str | None, value: str | bytes | BaseModel) -> None:
        """Publish one message (a model is sent as JSON by alias); returns once the broker has it."""
        self.bus.publish(topic, key, _encode(value))

    def consume(self, timeout: float = 1.0) -> list[Message]:
        """Messages of ``consume_topic_list`` that arrived, waiting up to ``timeout`` seconds.

        The first call joins the group (it starts at the end of each topic). Messages are
        committed by the next call (or :meth:`close`): at-least-once.
        """
        if self._consumer is None:
            topics = self.config.consume_topic_list
            if not topics:
                raise ValueError("KafkaConfig.consume_topic_list is empty: nothing to consume")
            group = self.config.consume_group_id or f"skalds-proxy-{uuid.uuid4().hex[:12]}"
            self._consumer = self.bus.subscribe(group, topics)
        return self._consumer.poll(timeout)

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        try:
            if consumer is not None:
                consumer.close()
        finally:
            self.bus.close()
