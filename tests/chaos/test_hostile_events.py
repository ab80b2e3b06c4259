"""Chaos: malformed events on the bus — logged, skipped; the skald keeps running and obeys the
commands that follow."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from skalds.backends.bus.base import Topic
from tests.chaos.conftest import Chaos
from tests.support.procs import Proc, wait_for

DEEP = b'{"attachments": ' + b"[" * 1000 + b"]" * 1000 + b"}"
DEEP_EVENT = b'{"id": "x", "taskIds": ' + b"[" * 1000 + b"]" * 1000 + b"}"


@pytest.fixture(params=["sqlite", "kafka"])
def bus_chaos(request, tmp_path: Path, home: Path, procs: list[Proc]) -> Iterator[Chaos]:
    """Embedded store and cache; the bus embedded or Kafka (the session's Tansu)."""
    db = home / "skalds.db"
    urls = {"SKALDS_STORE_URL": f"sqlite:///{db}", "SKALDS_CACHE_URL": f"sqlite:///{db}"}
    if request.param == "kafka":
        kafka = request.getfixturevalue("kafka_server")
        urls["SKALDS_BUS_URL"] = f"{kafka.url}?session_timeout_ms=2000"
    else:
        urls["SKALDS_BUS_URL"] = f"sqlite:///{db}"
    chaos = Chaos(tmp_path, home, procs, urls)
    chaos.kind = request.param  # type: ignore[attr-defined]
    yield chaos
    chaos.close()


def test_malformed_events_are_skipped_and_later_commands_obeyed(bus_chaos: Chaos) -> None:
    chaos = bus_chaos
    node_id = f"n-{chaos.tag}"
    node = chaos.node(node_id)
    task = f"t-{chaos.tag}"
    chaos.create(task, executor=node_id, duration=300)
    wait_for(lambda: chaos.events(task, "main"), timeout=20, what="task running")
    bus = chaos.client.bus

    # When events nested 1,000 deep arrive on every command topic
    bus.publish(Topic.TASKWORKER_UPDATE.value, task, DEEP)
    bus.publish(Topic.TASK_UPDATE_ATTACHMENT.value, task, DEEP)
    bus.publish(Topic.TASK_ASSIGN.value, task, DEEP_EVENT)
    bus.publish(Topic.TASK_CANCEL.value, task, DEEP_EVENT)
    # and bytes that are not JSON, JSON that is not an event, an update with no key
    bus.publish(Topic.TASKWORKER_UPDATE.value, task, b"\xff\xfe not json")
    bus.publish(Topic.TASK_ASSIGN.value, task, b'["not", "an", "event"]')
    bus.publish(Topic.TASKWORKER_UPDATE.value, None, b'{"attachments": {"someValue": 1}}')
    if chaos.kind == "sqlite":  # type: ignore[attr-defined]
        # and a row no producer of ours writes: value stored as TEXT, a timestamp that is no number
        with sqlite3.connect(chaos.home / "skalds.db") as raw:
            raw.execute(
                "INSERT INTO events (topic, key, value, ts_ms) VALUES (?, ?, ?, ?)",
                (Topic.TASKWORKER_UPDATE.value, task, '{"attachments": {"someValue": 2}}', "abc"),
            )
            raw.execute(
                "INSERT INTO events (topic, key, value, ts_ms) VALUES (?, ?, ?, ?)",
                (Topic.TASKWORKER_UPDATE.value, task, 3.5, 0),
            )

    # Then a valid update sent after them is applied, and the skald still runs
    chaos.client.send_worker_update(task, {"someValue": 9, "duration": 300})
    wait_for(lambda: 9 in [e["value"] for e in chaos.events(task, "update")], timeout=15, what="valid update applied")
    assert node.popen.poll() is None
    assert "skipped a malformed event" in node.output()
    # the poison TEXT row is readable, so it is delivered as the update it spells
    values = [e["value"] for e in chaos.events(task, "update")]
    assert 1 not in values, "an update without a key was applied"
    assert values[-1] == 9, values
    assert len(chaos.events(task, "main")) == 1
    # And a cancel still stops it
    chaos.client.cancel(task)
    wait_for(lambda: chaos.events(task, "release"), timeout=15, what="cancel obeyed")
    assert "RecursionError" not in node.output()
