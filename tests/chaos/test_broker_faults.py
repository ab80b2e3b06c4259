"""Chaos: the Kafka-protocol broker killed and restarted (it loses every topic and group: memory
storage), and commands sent in the first moments of a skald's life."""

from __future__ import annotations

import time

from tests.chaos.conftest import Chaos, report
from tests.support.procs import alive, wait_for


def test_broker_restart_keeps_workers_and_commands_after_it_apply(distributed: Chaos, chaos_kafka) -> None:
    chaos = distributed
    node_id = f"n-{chaos.tag}"
    node = chaos.node(node_id)
    keep, stop = f"keep-{chaos.tag}", f"stop-{chaos.tag}"
    for t in (keep, stop):
        chaos.create(t, executor=node_id, duration=300)
    wait_for(lambda: chaos.events(keep, "main") and chaos.events(stop, "main"), timeout=20, what="tasks running")
    pids = {t: chaos.events(t, "main")[0]["pid"] for t in (keep, stop)}

    # When the broker is killed and comes back empty
    chaos_kafka.kill()
    chaos_kafka.start()
    back = time.monotonic()
    chaos.reset_client()  # a client of the new broker (the old one's producer would reconnect too)

    # Then the workers were untouched, and an update, a cancel and a new task sent after it apply
    assert all(alive(p) for p in pids.values())
    chaos.client.update_attachments(keep, {"duration": 300, "someValue": 4})
    wait_for(lambda: [e["value"] for e in chaos.events(keep, "update")] == [4], timeout=30, what="update applied")
    report("broker restart → update applied", time.monotonic() - back)
    chaos.client.cancel(stop)
    wait_for(lambda: chaos.events(stop, "release"), timeout=15, what="cancel applied")
    late = f"late-{chaos.tag}"
    chaos.create(late, executor=node_id, duration=0.2)
    wait_for(lambda: chaos.ended([late]), timeout=15, what="new task ran")
    assert alive(pids[keep]) and node.popen.poll() is None
    assert len(chaos.events(keep, "main")) == 1
    chaos.assert_ran_once([late])


def test_updates_sent_while_a_new_skald_joins_the_bus_are_delivered(distributed: Chaos) -> None:
    chaos = distributed
    node_id = f"n-{chaos.tag}"
    task = f"t-{chaos.tag}"
    # Given a task already assigned to a skald that is only now starting
    chaos.create(task, executor=node_id, duration=300)
    node = chaos.node(node_id, wait=False)
    # When a direct update is sent the moment its worker runs (before the skald's consumer group
    # necessarily has its partitions)
    wait_for(lambda: chaos.events(task, "main"), timeout=30, what="worker running")
    chaos.client.send_worker_update(task, {"duration": 300, "someValue": 11})
    sent = time.monotonic()
    # Then it is delivered
    wait_for(lambda: 11 in [e["value"] for e in chaos.events(task, "update")], timeout=30, what="update delivered")
    report("update sent at a new skald's start → applied", time.monotonic() - sent)
    assert node.popen.poll() is None
