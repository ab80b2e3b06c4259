"""The Kafka driver's consumer: one consumer group's subscription on one librdkafka consumer.

It has its own state, separate from the bus that creates it (:meth:`KafkaEventBus.subscribe`):
partition assignment with explicit start offsets, the commit bookkeeping per partition (handed
out, sent, confirmed), the merge of a batch across partitions by publish time, and the recovery
when the broker lost its topics. The module docstring of :mod:`skalds.backends.bus.kafka.bus`
explains the settings and the guarantees.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import confluent_kafka as ck

from skalds.backends.bus.base import Consumer, Message
from skalds.backends.bus.kafka.config import ENSURE_BACKOFF, client_config
from skalds.backends.bus.kafka.runtime import CONSUMERS, leak_handle, log_error
from skalds.errors import BackendUnavailable
from skalds.utils.logging import logger, mask_secrets

if TYPE_CHECKING:
    from skalds.backends.bus.kafka.bus import KafkaEventBus

#: Most messages one ``poll`` returns.
BATCH = 500
#: ``poll`` checks for :meth:`KafkaConsumer.wakeup` at least this often (seconds).
WAKE_SLICE = 0.05
#: A message with where it came from: (message, Kafka topic name, partition, offset).
_Record = tuple[Message, str, int, int]


class KafkaConsumer(Consumer):
    """One consumer group's subscription (one librdkafka consumer). Used by one thread."""

    def __init__(
        self,
        bus: KafkaEventBus,
        group: str,
        topics: tuple[str, ...],
        assign_timeout: float,
        since_ms: int | None = None,
    ) -> None:
        self._bus = bus
        self.group = group
        self.topics = topics
        self._since_ms = since_ms
        #: Partitions started from a time lookup whose first messages may still be older than
        #: ``since_ms``: they are skipped until the first one that is not (see _fresh_starts).
        self._skip_older: set[tuple[str, int]] = set()
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
        CONSUMERS.add(self)
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
        fresh: list[ck.TopicPartition] = []
        first = not self._assigned.is_set()
        self._known = set()
        for tp in committed:
            if tp.error is not None:
                raise ck.KafkaException(tp.error)
            if tp.offset >= 0:
                self._known.add((tp.topic, tp.partition))
                starts.append(ck.TopicPartition(tp.topic, tp.partition, tp.offset))
            elif first:
                fresh.append(tp)
            else:
                # known group, no committed offset: the broker lost it, or the partition is new
                starts.append(ck.TopicPartition(tp.topic, tp.partition, ck.OFFSET_BEGINNING))
        return starts + self._fresh_starts(consumer, fresh)

    def _fresh_starts(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> list[ck.TopicPartition]:
        """Where this group starts on partitions it has no offset for, resolved synchronously (so
        nothing published after subscribe() returns can fall before the start).

        Without ``since_ms``: the current end. With it: the first message published at or after
        ``since_ms`` (the end when there is none). A broker may answer a time lookup with an
        earlier offset — Tansu answers 0 when no message is that new — so messages older than
        ``since_ms`` at the start of such a partition are skipped as they arrive (_convert):
        replays cost a read, never a delivery, and nothing newer is lost either way.
        """
        if not partitions:
            return []
        keys = [(tp.topic, tp.partition) for tp in partitions]
        starts: list[ck.TopicPartition] = []
        ends = keys
        if self._since_ms is not None:
            lookup = [ck.TopicPartition(t, p, self._since_ms) for t, p in keys]
            ends = []
            for tp in consumer.offsets_for_times(lookup, timeout=5.0):
                if tp.error is not None:
                    raise ck.KafkaException(tp.error)
                if tp.offset >= 0:
                    starts.append(ck.TopicPartition(tp.topic, tp.partition, tp.offset))
                    self._skip_older.add((tp.topic, tp.partition))
                else:  # nothing published since then
                    ends.append((tp.topic, tp.partition))
        for t, p in ends:
            _low, high = consumer.get_watermark_offsets(ck.TopicPartition(t, p), timeout=5.0, cached=False)
            starts.append(ck.TopicPartition(t, p, max(int(high), 0)))
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
        self._skip_older -= keys

    def _on_error(self, err: ck.KafkaError) -> None:
        log_error(f"kafka consumer {self.group}", err)
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
            if self._skip_older and (name, partition) in self._skip_older:
                if self._since_ms is not None and ts_type != ck.TIMESTAMP_NOT_AVAILABLE and ts < self._since_ms:
                    # before the start asked for (see _fresh_starts): skipped, and committed as read
                    self._handed[(name, partition)] = offset + 1
                    continue
                self._skip_older.discard((name, partition))
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
        log_error(f"kafka consumer {self.group}", err)
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
            log_error(f"kafka consumer {self.group}: commit", err)
            return
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if tp.error is None and key in self._handed and tp.offset > self._confirmed.get(key, -1):
                self._confirmed[key] = tp.offset

    def wakeup(self) -> None:
        self._woken = True

    def after_fork_in_child(self) -> None:
        """In a forked child: leak the parent's consumer, which is never used or freed here."""
        if not self._closed:
            leak_handle(self._consumer)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self._pid:
            return  # the parent's consumer: left alone (see after_fork_in_child)
        try:
            self._commit_sync()
        finally:
            self._consumer.close()
