"""The Kafka event bus (confluent-kafka / librdkafka), with the same semantics as the SQLite one.

The driver is split by concern: :mod:`.bus` holds :class:`KafkaEventBus` (producer, admin client,
topics) and explains its settings and guarantees, :mod:`.config` parses the ``kafka://`` URL and
builds librdkafka settings, :mod:`.consumer` holds :class:`KafkaConsumer`, and :mod:`.runtime` the
process-wide machinery (log throttling, the idle-queue drainer, fork hooks). This package
re-exports the public names.
"""

from __future__ import annotations

from skalds.backends.bus.kafka.bus import KafkaEventBus
from skalds.backends.bus.kafka.config import (
    ASSIGN_TIMEOUT,
    DEFAULT_PORT,
    ENSURE_BACKOFF,
    KafkaUrl,
    client_config,
    parse_kafka_url,
)
from skalds.backends.bus.kafka.consumer import BATCH, WAKE_SLICE, KafkaConsumer

__all__ = [
    "ASSIGN_TIMEOUT",
    "BATCH",
    "DEFAULT_PORT",
    "ENSURE_BACKOFF",
    "WAKE_SLICE",
    "KafkaConsumer",
    "KafkaEventBus",
    "KafkaUrl",
    "client_config",
    "parse_kafka_url",
]
