"""The Kafka event bus (confluent-kafka / librdkafka), with the same semantics as the SQLite one.

URL: ``kafka://[user:password@]host:port[,host:port…][?prefix=…&…]``. Topics are exactly
``task.assign``, ``task.cancel``, ``task.update.attachment`` and ``taskworker.update`` (wire-
compatible with Skalds 0.3.x), optionally behind ``prefix`` (tests use one per test). With a user
name the connection uses SASL (``PLAIN`` unless ``sasl_mechanism=SCRAM-SHA-512`` etc.; protocol
``SASL_PLAINTEXT``, or ``SASL_SSL`` for Confluent Cloud hosts or with ``security_protocol=``).
Query parameters named like the keyword arguments (``partitions``, ``session_timeout_ms``, …)
override them, so a deployment can tune the bus from its URL alone.

Topics are created (admin API) with the configured partitions and replication when first used,
and again when the broker seems to have lost them (after a disconnect, or a consumer's "unknown
topic"): a memory-only broker such as Tansu forgets topics, groups and offsets when it restarts.

Why these settings (measured against Tansu 0.6.0 with confluent-kafka 2.16 / librdkafka 2.16):

* Producer ``linger.ms=0`` and every :meth:`KafkaEventBus.publish` waits for its delivery report:
  a command is either on the broker (``acks=all``) when ``publish`` returns or
  :class:`~skalds.errors.BackendUnavailable` is raised, within ``publish_timeout`` (5 s) also when
  no broker answers. ``message.timeout.ms`` is that timeout (less up to 1 s a first publish may
  spend creating its topic), so librdkafka itself gives the message up: it is not delivered
  minutes later by retries after the caller was told it failed.
  ``enable.idempotence`` stays off: an idempotent producer holds a producer id and sequence numbers
  the broker must remember; a broker that loses its state (Tansu is memory-only; any cluster after
  an unclean leader change) answers ``UNKNOWN_PRODUCER_ID``/``OUT_OF_ORDER_SEQUENCE`` and
  librdkafka may raise a *fatal* error that leaves the producer unusable until it is recreated.
  Retries can therefore duplicate a message: consumers are idempotent (at-least-once) anyway.
  ``partitioner=murmur2_random`` places keys like the Java client and kafka-python (0.3.x) do.
* Consumer ``fetch.wait.max.ms=10`` (the 500 ms default gives ~250 ms round trips, 0 hangs Tansu),
  low ``session.timeout.ms``/``heartbeat.interval.ms`` (a group join takes about half the session
  timeout on Tansu; 6 s is the lowest a stock Apache Kafka broker accepts), reconnect back-off
  capped at 1 s so a restarted broker is found again quickly.
* Offsets are committed explicitly, like the SQLite driver: a delivered batch is committed when the
  next ``poll`` starts (asynchronously, so a broker outage never blocks ``poll``), and synchronously
  on ``close`` and when a rebalance takes partitions away. A *new* group starts at the end of each
  partition, resolved synchronously in the assignment callback (high watermark) and committed at
  once, so (1) :meth:`KafkaEventBus.subscribe` returns only when a message published afterwards is
  certain to be delivered, and (2) a group that never received anything still resumes where it
  started. Because every assigned partition then has a committed offset, a partition that later
  shows up *without* one (the broker lost its state, or the partition is new) is read from its
  beginning — nothing published while the consumer re-joined is lost. For the same reason
  ``auto.offset.reset`` is ``earliest``: it only applies when a position falls out of range
  (retention deleted it, or the topic was recreated), where skipping ahead would lose commands.
* ``poll`` waits with librdkafka's ``poll`` (which returns at the first message; ``consume``
  would wait out its whole timeout unless the batch fills up) and then takes what else is already
  there. It waits in slices of at most :data:`WAKE_SLICE` seconds, between which it checks the
  flag :meth:`KafkaConsumer.wakeup` sets: confluent-kafka cannot interrupt a wait from another
  thread. Measured on Tansu, fresh topic, 200 messages: publish → ``poll`` median 1.5 ms, p99 6.5
  ms; ``publish`` itself (delivery confirmed) median 0.2 ms.
* ``close`` while the broker is down takes up to ``session.timeout.ms`` (librdkafka tries to
  commit and leave the group).
* librdkafka handles are never used across ``fork()``: each bus creates its producer and admin
  client lazily per process id; handles inherited from a parent are left alone — never used,
  closed or freed in the child, whose exit would otherwise crash in librdkafka's destructor.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import heapq
import os
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from skalds.backends.bus.base import Consumer, EventBus, Message
from skalds.errors import BackendUnavailable, ConfigError
from skalds.utils.logging import logger, mask_secrets, register_secret

#: Most messages one ``poll`` returns.
BATCH = 500
#: ``poll`` checks for :meth:`KafkaConsumer.wakeup` at least this often (seconds).
WAKE_SLICE = 0.05
#: Seconds between two attempts to (re)create missing topics.
ENSURE_BACKOFF = 2.0
#: Seconds :meth:`KafkaEventBus.subscribe` waits for the group to assign partitions.
ASSIGN_TIMEOUT = 10.0
#: Default port of a host given without one.
DEFAULT_PORT = 9092

_INT_OPTIONS = (
    "partitions",
    "replication_factor",
    "fetch_wait_max_ms",
    "session_timeout_ms",
    "heartbeat_interval_ms",
)
_URL_OPTIONS = frozenset({*_INT_OPTIONS, "security_protocol", "sasl_mechanism"})
_RECHECK_ERRORS = frozenset(
    {
        ck.KafkaError._TRANSPORT,
        ck.KafkaError._ALL_BROKERS_DOWN,
        ck.KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)
#: A message with where it came from: (message, Kafka topic name, partition, offset).
_Record = tuple[Message, str, int, int]
#: Every bus and consumer of this process, for :func:`_after_fork_in_child`.
_BUSES: weakref.WeakSet[KafkaEventBus] = weakref.WeakSet()
_CONSUMERS: weakref.WeakSet[KafkaConsumer] = weakref.WeakSet()


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
        "logger": _RdkafkaLog(),
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


class _Quiet:
    """Lets a repeated log line (same key) through at most once per ``interval`` seconds.

    While a broker is down librdkafka reports every reconnect attempt (several a second).
    """

    def __init__(self, interval: float = 30.0) -> None:
        self.interval = interval
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def reset_lock(self) -> None:
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last < self.interval:
                return False
            if len(self._seen) > 1000:
                self._seen.clear()
            self._seen[key] = now
            return True


_quiet = _Quiet()


def _log_error(who: str, err: ck.KafkaError) -> None:
    if _quiet.allow(f"{who}:{err.code()}"):
        logger.debug(f"{who}: {mask_secrets(str(err))} (repeats within {_quiet.interval:.0f} s not logged)")


class _RdkafkaLog:
    """Receives librdkafka's log lines (served from poll/consume) and sends them to our logger.

    Connection failures are logged by librdkafka at error level on every retry; callers see
    failures as exceptions, so everything but critical lines goes to debug, throttled.
    """

    def log(self, level: int, fmt: str, *args: object) -> None:
        if not _quiet.allow(f"{level}:{args[:2]!r}"):
            return
        text = mask_secrets(fmt % args if args else fmt)
        if level <= 2:
            logger.warning(f"librdkafka: {text}")
        else:
            logger.debug(f"librdkafka: {text}")


def _unwrap(topic: object) -> str:
    return str(getattr(topic, "value", topic))


class KafkaConsumer(Consumer):
    """One consumer group's subscription (one librdkafka consumer). Used by one thread."""

    def __init__(self, bus: KafkaEventBus, group: str, topics: tuple[str, ...], assign_timeout: float) -> None:
        self._bus = bus
        self.group = group
        self.topics = topics
        self._names = [bus.topic_name(t) for t in topics]
        self._pid = os.getpid()
        self._closed = False
        self._woken = False
        self._buffer: list[_Record] = []
        # per (topic name, partition): the next offset after the messages handed out, the offset
        # last sent in a commit request, and the offset the broker confirmed
        self._handed: dict[tuple[str, int], int] = {}
        self._sent: dict[tuple[str, int], int] = {}
        self._confirmed: dict[tuple[str, int], int] = {}
        #: set once the group assigned partitions to this consumer (first time: new group -> end).
        self._assigned = threading.Event()
        self._failure: BaseException | None = None
        self._known: set[tuple[str, int]] = set()
        self._next_ensure = 0.0
        conf = client_config(bus.parsed)
        conf.update(
            {
                "group.id": group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": bus.fetch_wait_max_ms,
                "session.timeout.ms": bus.session_timeout_ms,
                "heartbeat.interval.ms": bus.heartbeat_interval_ms,
                "topic.metadata.refresh.interval.ms": 5000,
                "error_cb": self._on_error,
                "on_commit": self._on_commit,
            }
        )
        self._consumer = ck.Consumer(conf)
        _CONSUMERS.add(self)
        try:
            self._consumer.subscribe(
                self._names, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            self._wait_assigned(assign_timeout)
        except BaseException:
            self._closed = True
            self._consumer.close()
            raise

    # ---- assignment ------------------------------------------------------------------------
    def _wait_assigned(self, timeout: float) -> None:
        """Consume (buffering what comes) until the group has assigned this consumer partitions."""
        deadline = time.monotonic() + timeout
        while not self._assigned.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendUnavailable(
                    mask_secrets(
                        f"kafka at {self._bus.parsed.bootstrap}: group {self.group!r} got no partitions of "
                        f"{self._names} within {timeout:.0f} s"
                    )
                )
            self._buffer.extend(self._consume(min(remaining, WAKE_SLICE)))

    def _consume(self, timeout: float) -> list[_Record]:
        """One ``consume`` call; errors from callbacks and fatal errors become BackendUnavailable."""
        try:
            # consume() waits its whole timeout unless the batch fills up: wait with poll(), which
            # returns at the first message, then take what else is already there
            first = self._consumer.poll(timeout)
            raw = [] if first is None else [first, *self._consumer.consume(BATCH - 1, 0)]
        except Exception as exc:
            failure, self._failure = self._failure or exc, None
            raise BackendUnavailable(mask_secrets(f"kafka consumer {self.group}: {failure}")) from exc
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise BackendUnavailable(mask_secrets(f"kafka consumer {self.group}: {failure}")) from failure
        return self._convert(raw)

    def _on_assign(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        """Give every partition an explicit start: committed offset, else end (new group) or beginning."""
        try:
            starts = self._resolve_starts(consumer, partitions)
            fresh = [tp for tp in starts if tp.offset >= 0 and (tp.topic, tp.partition) not in self._known]
            if fresh:
                # remember where this group starts, so a restart without any message resumes here
                consumer.commit(offsets=fresh, asynchronous=False)
        except Exception as exc:
            # assign nothing (librdkafka would otherwise start at auto.offset.reset); the error ends
            # the current consume() and the caller makes a new consumer
            self._failure = exc
            consumer.assign([])
            return
        consumer.assign(starts)
        logger.debug(f"kafka group {self.group}: assigned {[(tp.topic, tp.partition, tp.offset) for tp in starts]}")
        self._assigned.set()

    def _resolve_starts(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> list[ck.TopicPartition]:
        if not partitions:
            return []
        committed = consumer.committed(partitions, timeout=5.0)
        starts: list[ck.TopicPartition] = []
        first = not self._assigned.is_set()
        self._known = set()
        for tp in committed:
            if tp.error is not None:
                raise ck.KafkaException(tp.error)
            if tp.offset >= 0:
                self._known.add((tp.topic, tp.partition))
                starts.append(ck.TopicPartition(tp.topic, tp.partition, tp.offset))
            elif first:
                # a new group starts at the current end (synchronously, so nothing published
                # after subscribe() returns can fall before the start)
                _low, high = consumer.get_watermark_offsets(
                    ck.TopicPartition(tp.topic, tp.partition), timeout=5.0, cached=False
                )
                starts.append(ck.TopicPartition(tp.topic, tp.partition, max(int(high), 0)))
            else:
                # known group, no committed offset: the broker lost it, or the partition is new
                starts.append(ck.TopicPartition(tp.topic, tp.partition, ck.OFFSET_BEGINNING))
        return starts

    def _on_revoke(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        """A rebalance takes partitions away: commit what was handed out of them first."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._commit_sync(gone)
        self._forget(gone)

    def _on_lost(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        """The group dropped this member (e.g. the broker lost its state): nothing may be committed."""
        self._forget({(tp.topic, tp.partition) for tp in partitions})

    def _forget(self, keys: set[tuple[str, int]]) -> None:
        for table in (self._handed, self._sent, self._confirmed):
            for key in keys & table.keys():
                del table[key]

    def _on_error(self, err: ck.KafkaError) -> None:
        _log_error(f"kafka consumer {self.group}", err)
        if err.fatal():
            self._failure = ck.KafkaException(err)

    # ---- consuming -------------------------------------------------------------------------
    def poll(self, timeout: float) -> list[Message]:
        if self._closed:
            raise RuntimeError("poll() on a closed consumer")
        if os.getpid() != self._pid:
            raise RuntimeError("a Kafka consumer cannot be used across fork()")
        deadline = time.monotonic() + max(timeout, 0.0)
        self._commit_async()
        if self._buffer:
            records, self._buffer = self._buffer[:BATCH], self._buffer[BATCH:]
            return self._hand_out(records)
        while True:
            woken = self._woken
            remaining = deadline - time.monotonic()
            records = self._consume(0.0 if woken else max(min(remaining, WAKE_SLICE), 0.0))
            if records:
                return self._hand_out(records)
            if woken or self._woken or remaining <= WAKE_SLICE:
                self._woken = False
                return []

    def _hand_out(self, records: list[_Record]) -> list[Message]:
        """The messages of ``records``; their offsets are committed by the next poll or close."""
        self._woken = False
        for _msg, name, partition, offset in records:
            self._handed[(name, partition)] = offset + 1
        return [r[0] for r in records]

    def _convert(self, raw: Sequence[ck.Message]) -> list[_Record]:
        """Records from librdkafka's messages, merged across partitions by timestamp; errors handled."""
        runs: dict[tuple[str, int], list[tuple[int, int, _Record]]] = {}
        seq = 0
        for m in raw:
            err = m.error()
            if err is not None:
                self._on_consume_error(err)
                continue
            name, partition, offset = m.topic() or "", m.partition() or 0, m.offset() or 0
            ts_type, ts = m.timestamp()
            key = m.key()
            msg = Message(
                topic=self._bus.topic_of(name),
                key=key.decode("utf-8", "replace") if key is not None else None,
                value=m.value() or b"",
                offset=offset,
                timestamp_ms=ts if ts_type != ck.TIMESTAMP_NOT_AVAILABLE else 0,
            )
            runs.setdefault((name, partition), []).append((msg.timestamp_ms, seq, (msg, name, partition, offset)))
            seq += 1
        if len(runs) <= 1:
            return [m for run in runs.values() for _, _, m in run]
        # each partition stays in order; across partitions (topics) publish time decides
        return [m for _, _, m in heapq.merge(*runs.values(), key=lambda r: r[0])]

    def _on_consume_error(self, err: ck.KafkaError) -> None:
        if err.code() == ck.KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise BackendUnavailable(mask_secrets(f"kafka consumer {self.group}: {err}"))
        _log_error(f"kafka consumer {self.group}", err)
        if err.code() == ck.KafkaError.UNKNOWN_TOPIC_OR_PART and time.monotonic() >= self._next_ensure:
            # the broker lost the topics (a memory-only broker restarted): recreate them
            self._next_ensure = time.monotonic() + ENSURE_BACKOFF
            self._bus.ensure_topics(self._names, force=True)

    def _commit_async(self) -> None:
        """Send a commit for what was handed out since the last one; never blocks.

        A failed request is not repeated (a later batch or ``close`` commits a newer offset; a
        crash meanwhile only means redelivery). Repeating it could store an offset of a topic
        the broker has since lost, skipping messages of the recreated topic.
        """
        dirty = [ck.TopicPartition(t, p, o) for (t, p), o in self._handed.items() if self._sent.get((t, p)) != o]
        if not dirty:
            return
        try:
            self._consumer.commit(offsets=dirty, asynchronous=True)
        except ck.KafkaException as exc:
            logger.debug(f"kafka consumer {self.group}: commit failed: {mask_secrets(str(exc))}")
            return
        for tp in dirty:
            self._sent[(tp.topic, tp.partition)] = tp.offset

    def _commit_sync(self, keys: set[tuple[str, int]] | None = None) -> None:
        """Commit, and wait for, every handed-out offset the broker has not confirmed yet."""
        todo = [
            ck.TopicPartition(t, p, o)
            for (t, p), o in self._handed.items()
            if (keys is None or (t, p) in keys) and self._confirmed.get((t, p)) != o
        ]
        if not todo:
            return
        try:
            result = self._consumer.commit(offsets=todo, asynchronous=False)
        except ck.KafkaException as exc:
            logger.debug(f"kafka consumer {self.group}: commit failed: {mask_secrets(str(exc))}")
            return
        self._on_commit(None, result)

    def _on_commit(self, err: ck.KafkaError | None, partitions: list[ck.TopicPartition]) -> None:
        if err is not None:
            _log_error(f"kafka consumer {self.group}: commit", err)
            return
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if tp.error is None and key in self._handed and tp.offset > self._confirmed.get(key, -1):
                self._confirmed[key] = tp.offset

    def wakeup(self) -> None:
        self._woken = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self._pid:
            return  # the parent's consumer: left alone (see _after_fork_in_child)
        try:
            self._commit_sync()
        finally:
            self._consumer.close()


class _Flag:
    value = False


def _on_producer_error(recheck: _Flag, err: ck.KafkaError) -> None:
    _log_error("kafka producer", err)
    if err.code() in _RECHECK_ERRORS:
        recheck.value = True  # the broker may come back without our topics: create them again


class KafkaEventBus(EventBus):
    """Publish to and consume from Kafka topics (see the module docstring for the settings)."""

    def __init__(
        self,
        url: str,
        *,
        partitions: int = 1,
        replication_factor: int = 1,
        fetch_wait_max_ms: int = 10,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 500,
        create_topics: bool = True,
        publish_timeout: float = 5.0,
        assign_timeout: float = ASSIGN_TIMEOUT,
    ) -> None:
        self.url = url
        self.parsed = parse_kafka_url(url)
        register_secret(self.parsed.password)
        values: dict[str, int] = {
            "partitions": partitions,
            "replication_factor": replication_factor,
            "fetch_wait_max_ms": fetch_wait_max_ms,
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
        }
        unknown = sorted(set(self.parsed.options) - _URL_OPTIONS)
        if unknown:
            raise ConfigError(
                f"kafka URL {mask_secrets(url)!r}: unknown parameter(s) {', '.join(unknown)} "
                f"(known: prefix, {', '.join(sorted(_URL_OPTIONS))})"
            )
        for name in _INT_OPTIONS:
            if name in self.parsed.options:
                try:
                    values[name] = int(self.parsed.options[name])
                except ValueError:
                    raise ConfigError(f"kafka URL {mask_secrets(url)!r}: {name} must be an integer") from None
        self.partitions = values["partitions"]
        self.replication_factor = values["replication_factor"]
        self.fetch_wait_max_ms = max(values["fetch_wait_max_ms"], 1)  # 0 hangs fetches on Tansu
        self.session_timeout_ms = values["session_timeout_ms"]
        self.heartbeat_interval_ms = values["heartbeat_interval_ms"]
        if self.partitions < 1 or self.replication_factor < 1:
            raise ConfigError("kafka partitions and replication_factor must be at least 1")
        self.create_topics = create_topics
        self.publish_timeout = publish_timeout
        #: Part of the publish timeout a publish may spend creating its topic.
        self._ensure_budget = min(1.0, publish_timeout / 5)
        self.assign_timeout = assign_timeout
        self.prefix = self.parsed.prefix
        self._lock = threading.Lock()
        _BUSES.add(self)
        self._producer_slot: tuple[int, ck.Producer] | None = None
        self._admin_slot: tuple[int, AdminClient] | None = None
        self._ensured: set[str] = set()
        self._ensure_after: dict[str, float] = {}
        #: Set when the broker may have lost our topics (disconnects, failed publishes).
        self._recheck = _Flag()

    # ---- names -----------------------------------------------------------------------------
    def topic_name(self, topic: str) -> str:
        """The Kafka topic behind a bus topic (prefix + name)."""
        return f"{self.prefix}{topic}"

    def topic_of(self, name: str) -> str:
        """The bus topic of a Kafka topic name (prefix removed)."""
        return name[len(self.prefix) :] if self.prefix and name.startswith(self.prefix) else name

    # ---- clients (one per process) ---------------------------------------------------------
    def _producer(self) -> ck.Producer:
        pid = os.getpid()
        slot = self._producer_slot
        if slot is not None and slot[0] == pid:
            return slot[1]
        with self._lock:
            slot = self._producer_slot
            if slot is not None and slot[0] == pid:
                return slot[1]
            conf = client_config(self.parsed)
            conf.update(
                {
                    "linger.ms": 0,
                    "acks": "all",
                    "enable.idempotence": False,
                    "partitioner": "murmur2_random",
                    "message.timeout.ms": max(int((self.publish_timeout - self._ensure_budget) * 1000), 1000),
                    # not a bound method: the producer must not keep the bus alive (a cycle
                    # would keep connections open until the garbage collector runs)
                    "error_cb": functools.partial(_on_producer_error, self._recheck),
                }
            )
            producer = ck.Producer(conf)
            self._producer_slot = (pid, producer)
            _drainer.start()
            return producer

    def _admin(self) -> AdminClient:
        pid = os.getpid()
        with self._lock:
            slot = self._admin_slot
            if slot is not None and slot[0] == pid:
                return slot[1]
            admin = AdminClient(client_config(self.parsed))
            self._admin_slot = (pid, admin)
            _drainer.start()
            return admin

    # ---- topics ----------------------------------------------------------------------------
    def ensure_topics(self, names: Iterable[str], *, force: bool = False, wait: float | None = None) -> None:
        """Create the Kafka topics ``names`` (full names) that are missing; best effort.

        Topics get the configured partitions and replication. This waits at most ``wait`` seconds
        (default: the publish timeout); a request still running then completes in the background.
        Failures are logged and retried after :data:`ENSURE_BACKOFF` seconds; publishing still
        works through broker-side auto-creation where the broker allows it.
        """
        if not self.create_topics:
            return
        now = time.monotonic()
        with self._lock:
            if self._recheck.value:
                self._recheck.value = False
                self._ensured.clear()
            todo = [
                n
                for n in dict.fromkeys(names)
                if (force or n not in self._ensured) and self._ensure_after.get(n, 0) <= now
            ]
            for n in todo:  # one request at a time per topic
                self._ensure_after[n] = now + ENSURE_BACKOFF
        if not todo:
            return
        new = [NewTopic(n, num_partitions=self.partitions, replication_factor=self.replication_factor) for n in todo]
        try:
            futures = self._admin().create_topics(new, request_timeout=self.publish_timeout)
        except Exception as exc:
            logger.debug(f"kafka: create topics {todo} failed: {mask_secrets(str(exc))}")
            return
        for name, future in futures.items():
            future.add_done_callback(functools.partial(self._created, name))
        concurrent.futures.wait(list(futures.values()), timeout=self.publish_timeout if wait is None else wait)

    def _created(self, name: str, future: concurrent.futures.Future[None]) -> None:
        """Done callback of one topic creation (runs on librdkafka's admin thread)."""
        exc = future.exception()
        if exc is not None:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, ck.KafkaError) and err.code() == ck.KafkaError.TOPIC_ALREADY_EXISTS):
                logger.debug(f"kafka: create topic {name} failed: {mask_secrets(str(exc))}")
                return
        else:
            logger.debug(f"kafka: created topic {name} ({self.partitions} partitions)")
        with self._lock:
            self._ensured.add(name)
            self._ensure_after.pop(name, None)

    def ping(self, timeout: float = 2.0) -> bool:
        """True if a broker answers a metadata request within ``timeout`` seconds."""
        try:
            self._admin().list_topics(timeout=timeout)
        except ck.KafkaException:
            return False
        return True

    # ---- EventBus --------------------------------------------------------------------------
    def publish(self, topic: str, key: str | None, value: bytes | str) -> None:
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        name = self.topic_name(_unwrap(topic))
        producer = self._producer()
        producer.poll(0)  # serve pending error callbacks (a disconnect triggers a topic re-check)
        self.ensure_topics([name], wait=self._ensure_budget)
        outcome: list[ck.KafkaError | None] = []

        def delivered(err: ck.KafkaError | None, _msg: ck.Message) -> None:
            outcome.append(err)

        started = time.monotonic()
        try:
            producer.produce(
                name, value=data, key=key.encode("utf-8") if key is not None else None, on_delivery=delivered
            )
        except BufferError:
            self._recheck.value = True
            raise BackendUnavailable(
                mask_secrets(f"kafka at {self.parsed.bootstrap}: producer queue full (broker unreachable?)")
            ) from None
        except ck.KafkaException as exc:
            raise BackendUnavailable(mask_secrets(f"kafka at {self.parsed.bootstrap}: publish failed: {exc}")) from None
        # librdkafka fails the message itself after message.timeout.ms; this is only a safety net
        deadline = started + self.publish_timeout + 1.0
        while not outcome:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            producer.flush(min(remaining, 0.1))
        if outcome and outcome[0] is None:
            return
        self._recheck.value = True
        reason = str(outcome[0]) if outcome else f"not confirmed within {time.monotonic() - started:.1f} s"
        raise BackendUnavailable(mask_secrets(f"kafka at {self.parsed.bootstrap}: publish to {name} failed: {reason}"))

    def subscribe(self, group: str, topics: tuple[str, ...] | list[str]) -> Consumer:
        wanted = tuple(dict.fromkeys(_unwrap(t) for t in topics))
        if not wanted:
            raise ValueError("subscribe() needs at least one topic")
        self.ensure_topics([self.topic_name(t) for t in wanted])
        return KafkaConsumer(self, group, wanted, self.assign_timeout)

    def close(self) -> None:
        pid = os.getpid()
        with self._lock:
            producer_slot, self._producer_slot = self._producer_slot, None
            self._admin_slot = None
        if producer_slot is not None and producer_slot[0] == pid:
            producer_slot[1].flush(1.0)


class _Drainer:
    """Serves the event queues of producers and admin clients that sit idle, once a second.

    With a Python logger and an error callback configured, librdkafka queues its log lines and
    errors until the application polls. A producer nobody publishes through during a broker outage
    (and the admin client, used only now and then) would pile up ~5 events a second (measured),
    freed only at the next publish. One daemon thread per process, running while buses exist.
    """

    interval = 1.0

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def reset_lock(self) -> None:
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="skalds-kafka-events", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        pid = os.getpid()
        while True:
            time.sleep(self.interval)
            if not self._serve(pid):
                with self._lock:
                    if not _BUSES or os.getpid() != pid:
                        self._thread = None
                        return

    @staticmethod
    def _serve(pid: int) -> bool:
        """Poll every handle of this process once; False if there is no bus left.

        A method of its own so that no bus stays referenced while the thread sleeps.
        """
        buses = list(_BUSES)
        for bus in buses:
            for slot in (bus._producer_slot, bus._admin_slot):
                if slot is not None and slot[0] == pid:
                    try:
                        slot[1].poll(0)
                    except Exception as exc:  # never let the thread die on a callback's error
                        logger.debug(f"kafka: serving events failed: {exc!r}")
        return bool(buses)


_drainer = _Drainer()


def _leak(handle: object) -> None:
    """Make sure ``handle`` is never freed in this process.

    Freeing a librdkafka handle runs its destructor, which joins the handle's threads — threads
    that only exist in the parent: a forked child that exits normally then crashes (SIGSEGV,
    measured) or hangs. One extra reference keeps the object alive until the process ends.
    """
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(handle))


def _after_fork_in_child() -> None:
    """Leak the parent's librdkafka handles (see :func:`_leak`) and renew locks another thread of
    the parent may have held at ``fork()``. Buses create new handles here lazily."""
    _quiet.reset_lock()
    _drainer.reset_lock()
    for bus in list(_BUSES):
        bus._lock = threading.Lock()
        for slot in (bus._producer_slot, bus._admin_slot):
            if slot is not None:
                _leak(slot[1])
    for consumer in list(_CONSUMERS):
        if not consumer._closed:
            _leak(consumer._consumer)


os.register_at_fork(after_in_child=_after_fork_in_child)
