"""Contract of every event bus driver (see conftest.BUS_DRIVERS)."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import statistics
import threading
import time

import pytest

from skalds.backends.bus.base import Consumer, EventBus, Message
from skalds.backends.bus.sqlite import SqliteEventBus
from skalds.model.task import now_ms

FORK = mp.get_context("fork")
TOPIC = "task.assign"


def poll_until(consumer: Consumer, count: int, timeout: float = 5.0) -> list[Message]:
    """Poll until ``count`` messages arrived or ``timeout`` passed; everything received."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(consumer.poll(max(deadline - time.monotonic(), 0.0)))
    return got


def test_publish_poll_roundtrip(event_bus: EventBus) -> None:
    # Given a subscribed consumer
    consumer = event_bus.subscribe("g", [TOPIC, "task.cancel"])
    try:
        # When messages with and without key, as bytes and str, are published on two topics
        event_bus.publish(TOPIC, "task-1", b'{"a":1}')
        event_bus.publish("task.cancel", None, "héllo")
        # Then they arrive with topic, key and value intact
        got = poll_until(consumer, 2)
        received = [(m.topic, m.key, m.value) for m in got]
        expected = [(TOPIC, "task-1", b'{"a":1}'), ("task.cancel", None, "héllo".encode())]
        if isinstance(event_bus, SqliteEventBus):
            # in publishing order: one sequence across topics there
            assert received == expected and got[0].offset < got[1].offset
        else:
            # Kafka orders messages within a partition only: two topics may arrive either way
            assert sorted(received, key=lambda r: r[0]) == expected
        assert all(abs(m.timestamp_ms - time.time() * 1000) < 60_000 for m in got)
    finally:
        consumer.close()  # a member left in group g would hold up the next test's consumer


def test_publish_many_delivers_every_message_in_order(event_bus: EventBus) -> None:
    # Given a subscribed consumer
    consumer = event_bus.subscribe("g", [TOPIC])
    # When a batch is published, then one more message
    batch: list[tuple[str | None, bytes | str]] = [(f"t{i}", f'{{"i":{i}}}') for i in range(50)]
    event_bus.publish_many(TOPIC, batch)
    event_bus.publish_many(TOPIC, [])
    event_bus.publish(TOPIC, "after", b"last")
    # Then every message arrives, with its key, in order per key (all of them on one partition here)
    got = poll_until(consumer, 51)
    assert sorted((m.key, m.value) for m in got) == sorted(
        [(f"t{i}", f'{{"i":{i}}}'.encode()) for i in range(50)] + [("after", b"last")]
    )
    if isinstance(event_bus, SqliteEventBus):
        assert [m.key for m in got] == [f"t{i}" for i in range(50)] + ["after"]
    consumer.close()


def test_consumer_only_gets_its_topics(event_bus: EventBus) -> None:
    # Given a consumer of one topic / When another topic gets a message, then its own
    consumer = event_bus.subscribe("g", [TOPIC])
    event_bus.publish("task.cancel", "x", b"other")
    event_bus.publish(TOPIC, "y", b"mine")
    # Then it only sees its own
    assert [m.value for m in poll_until(consumer, 1)] == [b"mine"]
    assert consumer.poll(0.2) == []
    consumer.close()


def test_two_groups_each_see_every_message(event_bus: EventBus) -> None:
    # Given two groups subscribed
    a, b = event_bus.subscribe("ga", [TOPIC]), event_bus.subscribe("gb", [TOPIC])
    # When three messages are published
    for i in range(3):
        event_bus.publish(TOPIC, str(i), f"m{i}")
    # Then each group receives all three
    assert [m.value for m in poll_until(a, 3)] == [b"m0", b"m1", b"m2"]
    assert [m.value for m in poll_until(b, 3)] == [b"m0", b"m1", b"m2"]
    a.close()
    b.close()


def test_one_group_sees_each_message_once(event_bus: EventBus) -> None:
    # Given a consumer that received two messages
    consumer = event_bus.subscribe("g", [TOPIC])
    event_bus.publish(TOPIC, None, b"1")
    event_bus.publish(TOPIC, None, b"2")
    assert len(poll_until(consumer, 2)) == 2
    # When it polls again, and again after one more publish
    again = consumer.poll(0.2)
    event_bus.publish(TOPIC, None, b"3")
    later = poll_until(consumer, 1)
    # Then nothing is repeated
    assert again == []
    assert [m.value for m in later] == [b"3"]
    assert consumer.poll(0.1) == []
    consumer.close()


def test_new_group_starts_at_end(event_bus: EventBus) -> None:
    # Given messages published before a group existed
    event_bus.publish(TOPIC, None, b"old-1")
    event_bus.publish(TOPIC, None, b"old-2")
    # When a new group subscribes and one more message comes
    consumer = event_bus.subscribe("fresh", [TOPIC])
    assert consumer.poll(0.2) == []
    event_bus.publish(TOPIC, None, b"new")
    # Then only the new one is delivered
    assert [m.value for m in poll_until(consumer, 1)] == [b"new"]
    consumer.close()


def test_new_group_since_a_time_starts_at_the_first_message_published_then(event_bus: EventBus) -> None:
    # Given a known group, and messages on two topics before a moment; then two more after it, on
    # one topic only (the other has nothing that new: a broker's time lookup may misanswer there)
    event_bus.subscribe("known", [TOPIC, "task.cancel"]).close()
    event_bus.publish(TOPIC, "a", b"before-1")
    event_bus.publish("task.cancel", "b", b"before-2")
    since = now_ms() + 1
    while now_ms() <= since:  # the next publish gets a later timestamp (a millisecond at most)
        pass
    event_bus.publish(TOPIC, "c", b"after-1")
    event_bus.publish(TOPIC, "d", b"after-2")
    # When a new group subscribes with since_ms, and one more message comes
    fresh = event_bus.subscribe("fresh", [TOPIC, "task.cancel"], since_ms=since)
    event_bus.publish("task.cancel", "e", b"later")
    # Then it gets what was published from then on, nothing older
    got = poll_until(fresh, 3)
    assert sorted(m.value for m in got) == [b"after-1", b"after-2", b"later"]
    assert fresh.poll(0.2) == []
    fresh.close()
    # And its start was committed: subscribed again it resumes there, not at the end
    event_bus.publish(TOPIC, "f", b"while-away")
    back = event_bus.subscribe("fresh", [TOPIC, "task.cancel"], since_ms=now_ms() + 60_000)
    assert [m.value for m in poll_until(back, 1)] == [b"while-away"]
    back.close()
    # And a known group ignores since_ms: it resumes after its committed offsets
    known = event_bus.subscribe("known", [TOPIC, "task.cancel"], since_ms=since)
    got = poll_until(known, 6)
    assert sorted(m.value for m in got) == [b"after-1", b"after-2", b"before-1", b"before-2", b"later", b"while-away"]
    known.close()


def test_known_group_resumes_after_close(event_bus: EventBus) -> None:
    # Given a group that consumed one message and closed
    consumer = event_bus.subscribe("g", [TOPIC])
    event_bus.publish(TOPIC, None, b"seen")
    assert len(poll_until(consumer, 1)) == 1
    consumer.close()
    # When two messages are published while it is away and it subscribes again
    event_bus.publish(TOPIC, "k1", b"missed-1")
    event_bus.publish(TOPIC, "k2", b"missed-2")
    back = event_bus.subscribe("g", [TOPIC])
    # Then it gets exactly the missed ones
    assert [m.value for m in poll_until(back, 2)] == [b"missed-1", b"missed-2"]
    assert back.poll(0.1) == []
    back.close()


def test_wakeup_unblocks_poll_from_another_thread(event_bus: EventBus) -> None:
    # Given a thread blocked in a long poll
    consumer = event_bus.subscribe("g", [TOPIC])
    polling, result = threading.Event(), {}

    def run() -> None:
        polling.set()
        started = time.monotonic()
        result["messages"] = consumer.poll(10.0)
        result["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    assert polling.wait(5)
    # When another thread calls wakeup
    consumer.wakeup()
    thread.join(timeout=5)
    # Then the poll returns at once with nothing
    assert not thread.is_alive()
    assert result["messages"] == []
    assert result["elapsed"] < 1.0
    consumer.close()


def _blocked_consumer(factory, ready, latencies, rounds: int) -> None:
    bus = factory()
    consumer = bus.subscribe("remote", [TOPIC])
    for _ in range(rounds):
        ready.set()
        got = consumer.poll(5.0)
        received = time.monotonic()
        ready.clear()
        latencies.put([received - float(m.value) for m in got])
    consumer.close()
    bus.close()


def test_cross_process_wakeup_is_fast(event_bus_factory) -> None:
    # Given a consumer in a child process, blocked in poll(5.0)
    bus = event_bus_factory()
    ready, latencies = FORK.Event(), FORK.Queue()
    rounds = 5
    child = FORK.Process(target=_blocked_consumer, args=(event_bus_factory, ready, latencies, rounds))
    child.start()
    measured: list[float] = []
    for i in range(rounds):
        assert ready.wait(10), "child never started polling"
        # (varying pauses so the child is inside poll's wait, at different points of its safety tick)
        time.sleep(0.03 + 0.07 * i)
        # When the parent publishes a message stamped with the monotonic clock
        bus.publish(TOPIC, None, repr(time.monotonic()))
        delays = latencies.get(timeout=10)
        assert len(delays) == 1
        measured.extend(delays)
    child.join(timeout=10)
    # Then every message reached the child well before the 250 ms safety re-check
    assert child.exitcode == 0
    assert max(measured) < 0.2, measured
    assert statistics.median(measured) < 0.05, measured


# ---- embedded-driver specifics ---------------------------------------------------------------
def _subscribe_and_die(factory, topic: str, publish_first: bool) -> None:
    bus = factory()
    consumer = bus.subscribe("crashy", [topic])
    if publish_first:
        bus.publish(topic, None, b"handed-out")
        assert len(poll_until(consumer, 1)) == 1
    os._exit(0)  # no close(): the waker row stays behind, nothing is committed


def _waker_rows(bus: SqliteEventBus) -> list[str]:
    with sqlite3.connect(bus.path) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM wakers")]


def test_dead_waker_rows_are_removed_on_publish(event_bus_factory, wait_until) -> None:
    bus = event_bus_factory()
    if not isinstance(bus, SqliteEventBus):
        pytest.skip("embedded driver only")
    # Given a consumer process that died without closing, and a live consumer
    child = FORK.Process(target=_subscribe_and_die, args=(event_bus_factory, TOPIC, False))
    child.start()
    child.join(timeout=10)
    live = bus.subscribe("alive", [TOPIC])
    assert len(_waker_rows(bus)) == 2
    # When a message is published on their topic
    bus.publish(TOPIC, None, b"x")
    # Then the dead consumer's row is gone and the live one still gets the message
    assert _waker_rows(bus) == [live.waker_name]
    assert [m.value for m in poll_until(live, 1)] == [b"x"]
    live.close()
    assert _waker_rows(bus) == []


def test_batch_of_crashed_consumer_is_redelivered(event_bus_factory) -> None:
    bus = event_bus_factory()
    if not isinstance(bus, SqliteEventBus):
        pytest.skip("embedded driver only (commit on next poll)")
    # Given a consumer process that received a message and died before polling again
    child = FORK.Process(target=_subscribe_and_die, args=(event_bus_factory, TOPIC, True))
    child.start()
    child.join(timeout=10)
    assert child.exitcode == 0
    # When its group subscribes again
    consumer = bus.subscribe("crashy", [TOPIC])
    # Then the uncommitted message comes again (at-least-once)
    assert [m.value for m in poll_until(consumer, 1)] == [b"handed-out"]
    consumer.close()


def test_old_events_are_trimmed(tmp_path) -> None:
    # Given a bus keeping at most 100 events, and a group that lags behind
    bus = SqliteEventBus(str(tmp_path / "trim.db"), max_events=100)
    consumer = bus.subscribe("lagging", [TOPIC])
    # When 1000 messages are published (trimming runs every 500)
    for i in range(1000):
        bus.publish(TOPIC, None, str(i))
    # Then only the newest 100 remain
    with sqlite3.connect(bus.path) as conn:
        count, oldest, newest = conn.execute("SELECT COUNT(*), MIN(seq), MAX(seq) FROM events").fetchone()
    assert (count, oldest, newest) == (100, 901, 1000)
    # And the lagging group resumes with what is left, in order
    got = poll_until(consumer, 100)
    assert [m.value for m in got] == [str(i).encode() for i in range(900, 1000)]
    consumer.close()
    bus.close()
