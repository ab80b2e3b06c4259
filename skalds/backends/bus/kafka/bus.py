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
  on ``close`` and when a rebalance takes partitions away. A *new* group (no committed offset) gets
  its start resolved synchronously in the assignment callback and committed at once: the end of
  each partition (high watermark), or with ``since_ms`` the first offset published at or after that
  time (``offsets_for_times``; the end when there is none). So (1) :meth:`KafkaEventBus.subscribe`
  returns only when a message published afterwards is certain to be delivered, and (2) a group
  that never received anything still resumes where it started.
* Delivery guarantee at start-up: joining a group takes seconds (on Tansu about half the session
  timeout), and a group that started at the end *when it got its partitions* would lose what was
  published before — for a skald, the commands sent while its workers already run. A skald
  therefore subscribes with ``since_ms`` = its start less a look-back (``skalds.node.listener``):
  every command published after the skald started is delivered, and so is one published up to
  the look-back before (a restart with a generated id, whose group is new each time). Replays
  are possible, losses are not. A broker may answer the time lookup with an earlier offset than
  asked (Tansu answers 0 when no message is that new): the consumer skips messages older than
  ``since_ms`` at the start of such a partition, committing them as read, so that costs a read
  at most.
* Because every assigned partition then has a committed offset, a partition that later shows up
  *without* one (the broker lost its state, or the partition is new) is read from its beginning —
  nothing published while the consumer re-joined is lost. For the same reason
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

The driver's other modules are described in :mod:`skalds.backends.bus.kafka`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import threading
import time
from collections.abc import Iterable, Sequence

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from skalds.backends.bus.base import Consumer, EventBus
from skalds.backends.bus.kafka.config import (
    ASSIGN_TIMEOUT,
    ENSURE_BACKOFF,
    INT_OPTIONS,
    URL_OPTIONS,
    client_config,
    parse_kafka_url,
)
from skalds.backends.bus.kafka.consumer import KafkaConsumer
from skalds.backends.bus.kafka.runtime import BUSES, drainer, leak_handle, log_error
from skalds.errors import BackendUnavailable, ConfigError
from skalds.utils.logging import logger, mask_secrets, register_secret

_RECHECK_ERRORS = frozenset(
    {
        ck.KafkaError._TRANSPORT,
        ck.KafkaError._ALL_BROKERS_DOWN,
        ck.KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


def _unwrap(topic: object) -> str:
    return str(getattr(topic, "value", topic))


class _Flag:
    value = False


def _on_producer_error(recheck: _Flag, err: ck.KafkaError) -> None:
    log_error("kafka producer", err)
    if err.code() in _RECHECK_ERRORS:
        recheck.value = True  # the broker may come back without our topics: create them again


class KafkaEventBus(EventBus):
    """Publish to and consume from Kafka topics (see the module docstring for the settings)."""

    unavailable_errors = (ck.KafkaException, BufferError, OSError)

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
        unknown = sorted(set(self.parsed.options) - URL_OPTIONS)
        if unknown:
            raise ConfigError(
                f"kafka URL {mask_secrets(url)!r}: unknown parameter(s) {', '.join(unknown)} "
                f"(known: prefix, {', '.join(sorted(URL_OPTIONS))})"
            )
        for name in INT_OPTIONS:
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
        BUSES.add(self)
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
            drainer.start()
            return producer

    def _admin(self) -> AdminClient:
        pid = os.getpid()
        with self._lock:
            slot = self._admin_slot
            if slot is not None and slot[0] == pid:
                return slot[1]
            admin = AdminClient(client_config(self.parsed))
            self._admin_slot = (pid, admin)
            drainer.start()
            return admin

    def serve_events(self, pid: int) -> None:
        """Poll this process's producer and admin client once, so that idle ones do not pile up
        librdkafka's log lines and errors (called by the runtime's drainer thread)."""
        for slot in (self._producer_slot, self._admin_slot):
            if slot is not None and slot[0] == pid:
                try:
                    slot[1].poll(0)
                except Exception as exc:  # never let the drainer thread die on a callback's error
                    logger.debug(f"kafka: serving events failed: {exc!r}")

    def after_fork_in_child(self) -> None:
        """In a forked child: renew the lock (another thread of the parent may have held it) and
        leak the parent's handles, which are never used or freed here; new ones are created lazily."""
        self._lock = threading.Lock()
        for slot in (self._producer_slot, self._admin_slot):
            if slot is not None:
                leak_handle(slot[1])

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
        self.publish_many(topic, [(key, value)])

    def publish_many(self, topic: str, messages: Sequence[tuple[str | None, bytes | str]]) -> None:
        """Produce them all, then wait once for every delivery report (not one round trip each)."""
        if not messages:
            return
        name = self.topic_name(_unwrap(topic))
        producer = self._producer()
        producer.poll(0)  # serve pending error callbacks (a disconnect triggers a topic re-check)
        self.ensure_topics([name], wait=self._ensure_budget)
        outcome: list[ck.KafkaError | None] = []

        def delivered(err: ck.KafkaError | None, _msg: ck.Message) -> None:
            outcome.append(err)

        started = time.monotonic()
        for key, value in messages:
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
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
                raise BackendUnavailable(
                    mask_secrets(f"kafka at {self.parsed.bootstrap}: publish failed: {exc}")
                ) from None
        # librdkafka fails each message itself after message.timeout.ms; this is only a safety net
        deadline = started + self.publish_timeout + 1.0
        while len(outcome) < len(messages):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            producer.flush(min(remaining, 0.1))
        failed = [err for err in outcome if err is not None]
        if len(outcome) == len(messages) and not failed:
            return
        self._recheck.value = True
        if failed:
            reason = str(failed[0])
        else:
            missing = len(messages) - len(outcome)
            reason = f"{missing} of {len(messages)} not confirmed within {time.monotonic() - started:.1f} s"
        raise BackendUnavailable(mask_secrets(f"kafka at {self.parsed.bootstrap}: publish to {name} failed: {reason}"))

    def subscribe(self, group: str, topics: tuple[str, ...] | list[str], *, since_ms: int | None = None) -> Consumer:
        wanted = tuple(dict.fromkeys(_unwrap(t) for t in topics))
        if not wanted:
            raise ValueError("subscribe() needs at least one topic")
        self.ensure_topics([self.topic_name(t) for t in wanted])
        return KafkaConsumer(self, group, wanted, self.assign_timeout, since_ms)

    def close(self) -> None:
        pid = os.getpid()
        with self._lock:
            producer_slot, self._producer_slot = self._producer_slot, None
            self._admin_slot = None
        if producer_slot is not None and producer_slot[0] == pid:
            producer_slot[1].flush(1.0)
