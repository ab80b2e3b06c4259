"""Settings of the Kafka driver: the ``kafka://`` URL, librdkafka client options, tunable constants.

Kept apart from the bus so that the URL grammar (hosts, credentials, ``prefix``, tuning
parameters) and the options every librdkafka client shares (servers, security, reconnect
back-off, logging) can be read and used on their own — tests build admin clients from
:func:`client_config` — without the producer and consumer logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from skalds.backends.bus.kafka.runtime import RdkafkaLog
from skalds.errors import ConfigError
from skalds.utils.logging import mask_secrets

#: Seconds between two attempts to (re)create missing topics.
ENSURE_BACKOFF = 2.0
#: Seconds :meth:`KafkaEventBus.subscribe` waits for the group to assign partitions.
ASSIGN_TIMEOUT = 10.0
#: Default port of a host given without one.
DEFAULT_PORT = 9092

INT_OPTIONS = (
    "partitions",
    "replication_factor",
    "fetch_wait_max_ms",
    "session_timeout_ms",
    "heartbeat_interval_ms",
)
URL_OPTIONS = frozenset({*INT_OPTIONS, "security_protocol", "sasl_mechanism"})


@dataclass(frozen=True)
class KafkaUrl:
    """The parts of a ``kafka://`` URL."""

    hosts: tuple[str, ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    prefix: str = ""
    options: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return ",".join(self.hosts)


def parse_kafka_url(url: str) -> KafkaUrl:
    """Split ``kafka://[user:pass@]host[:port][,host[:port]…][?prefix=…&key=value…]``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "kafka":
        raise ConfigError(f"not a kafka:// URL: {mask_secrets(url)!r}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, sep, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if sep else None
    hosts = []
    for raw in hostlist.split(","):
        host = raw.strip()
        if not host:
            continue
        has_port = host.rsplit("]", 1)[-1].count(":") == 1 if host.startswith("[") else ":" in host
        hosts.append(host if has_port else f"{host}:{DEFAULT_PORT}")
    if not hosts:
        raise ConfigError(f"kafka URL {mask_secrets(url)!r} names no host")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    prefix = query.pop("prefix", "")
    return KafkaUrl(tuple(hosts), username, password, prefix, query)


def client_config(parsed: KafkaUrl) -> dict[str, Any]:
    """librdkafka settings shared by producer, consumer and admin client: servers and security."""
    conf: dict[str, Any] = {
        "bootstrap.servers": parsed.bootstrap,
        "client.id": "skalds",
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
        "logger": RdkafkaLog(),
    }
    protocol = parsed.options.get("security_protocol")
    if parsed.username:
        if protocol is None:
            cloud = any(h.split(":")[0].endswith("confluent.cloud") for h in parsed.hosts)
            protocol = "SASL_SSL" if cloud else "SASL_PLAINTEXT"
        conf["sasl.mechanism"] = parsed.options.get("sasl_mechanism", "PLAIN").upper()
        conf["sasl.username"] = parsed.username
        conf["sasl.password"] = parsed.password or ""
    if protocol is not None:
        conf["security.protocol"] = protocol.upper()
    return conf
