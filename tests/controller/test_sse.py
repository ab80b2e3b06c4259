"""SSE: every skald and task change reaches the streams within a second; slow clients are dropped."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from skalds.controller.events import TASKS, EventHub
from skalds.controller.metrics import ControllerMetrics
from tests.controller.conftest import online
from tests.controller.sse_client import SSEReader
from tests.support.procs import wait_for

ORDER = ["Created", "Assigning", "Running", "Finished"]


def test_task_changes_stream_within_a_second(start_controller, start_skald):
    # Given a node skald and a client on the task stream
    api = start_controller()
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    reader = SSEReader(api.url + "/api/events/tasks")
    only_b = SSEReader(api.url + "/api/events/tasks?taskId=b")
    no_beats = SSEReader(api.url + "/api/events/tasks?types=task_status,task_exception")
    try:
        wait_for(lambda: reader.of("snapshot") and only_b.of("snapshot") and no_beats.of("snapshot"), what="snapshots")
        assert reader.of("snapshot")[0][1]["data"] == {"tasks": []}

        # When a short task a runs, b waits for it (so b is Created long enough to see), and c fails
        api.create(id="a", className="Recorder", attachments={"duration": 1.5})
        api.create(id="b", className="Recorder", dependencies=["a"])
        api.create(id="c", className="Recorder", attachments={"duration": 0, "fail": True})
        wait_for(lambda: api.status_is("b", "Running"), timeout=15, what="b Running")
        wait_for(
            lambda: (
                reader.of("task_status", taskId="b")
                and reader.of("task_status", taskId="b")[-1][1]["data"]["status"] == "Running"
            ),
            what="b Running event",
        )
        wait_for(lambda: reader.of("task_exception", taskId="c"), what="c's exception")

        # Then b's status events go Created → … → Running in order, each within 1 s of the change
        b_events = reader.of("task_status", taskId="b")
        statuses = [e["data"]["status"] for _, e in b_events]
        assert statuses[0] == "Created" and statuses[-1] == "Running", statuses
        assert [ORDER.index(s) for s in statuses] == sorted(ORDER.index(s) for s in statuses)
        delays = [arrived - e["data"]["updateDateTime"] / 1000 for arrived, e in b_events]
        assert all(d < 1.0 for d in delays), delays
        # and a was seen to its end (it was dispatched within the create request, so its Created state
        # lasted milliseconds: a poll every 0.5 s may first see it Assigning or Running)
        a_statuses = [e["data"]["status"] for _, e in reader.of("task_status", taskId="a")]
        assert a_statuses[-1] == "Finished" and a_statuses[0] in ORDER[:3], a_statuses
        # and heartbeats and the failure's exception came too
        assert reader.of("task_heartbeat", taskId="b")
        assert reader.of("task_exception", taskId="c")[0][1]["data"]["exception"]
        for _, event in reader.events:
            assert set(event) == (
                {"type", "data", "timestamp"} | ({"taskId"} if event["type"] != "snapshot" else set())
            )

        # And the filtered stream only carried b
        assert {e["taskId"] for _, e in only_b.events if e["type"] != "snapshot"} == {"b"}
        assert [e["data"]["status"] for _, e in only_b.of("task_status")] == statuses

        # And the stream filtered by type carried the same status changes and exceptions, no heartbeats
        assert {e["type"] for _, e in no_beats.events} == {"snapshot", "task_status", "task_exception"}
        assert [e["data"]["status"] for _, e in no_beats.of("task_status", taskId="b")] == statuses
        # and an unknown type is refused with a message naming the known ones
        bad = api.http.get("/api/events/tasks", params={"types": "task_status,task_heartbeats"})
        assert bad.status_code == 422 and "task_heartbeat," in bad.json()["error"]["message"]
    finally:
        reader.close()
        only_b.close()
        no_beats.close()

    # When the clients are gone, Then their subscriptions are released
    wait_for(lambda: "skalds_sse_subscribers 0.0" in api.http.get("/metrics").text, what="subscribers released")


def test_skald_going_offline_streams_within_a_second(start_controller, start_skald):
    # Given a client on the skald stream and a node skald coming up
    api = start_controller()
    reader = SSEReader(api.url + "/api/events/skalds")
    try:
        wait_for(lambda: reader.of("snapshot"), what="snapshot")
        node = start_skald("node-a")
        up = wait_for(lambda: reader.of("skald_status", skaldId="node-a"), what="online event")
        assert up[0][1]["data"]["status"] == "online" and up[0][1]["data"]["type"] == "node"
        wait_for(lambda: reader.of("skald_heartbeat", skaldId="node-a"), what="heartbeat event")

        # When the skald stops
        node.stop()
        stopped = time.time()

        # Then an offline event arrives within a second
        down = wait_for(
            lambda: [e for e in reader.of("skald_status", skaldId="node-a") if e[1]["data"]["status"] == "offline"],
            what="offline event",
        )
        assert down[0][0] - stopped < 1.0
        assert down[0][1]["data"]["previous"] == "online"
    finally:
        reader.close()


def test_a_slow_client_is_dropped_not_buffered():
    async def scenario() -> None:
        # Given a subscriber whose queue holds 3 passes and who reads none
        hub = EventHub(cast(Any, None), ControllerMetrics(), queue_size=3)
        slow = hub.subscribe(TASKS)
        fast = hub.subscribe(TASKS)
        hub.publish([])  # their snapshots
        assert [e["type"] for e in fast.queue.get_nowait()] == ["snapshot"]

        # When more passes come than its queue holds
        events = [{"type": "task_heartbeat", "taskId": "t", "data": {"heartbeat": i}, "timestamp": 0} for i in range(5)]
        for event in events:
            hub.publish([event])
            while not fast.queue.empty():  # the fast one keeps up
                fast.queue.get_nowait()

        # Then the slow one is dropped: its stream gets the end marker and nothing else is kept
        assert slow.dropped and slow not in hub.subscribers
        assert slow.queue.qsize() == 1 and slow.queue.get_nowait() is None
        # and the fast one stays subscribed
        assert not fast.dropped and fast in hub.subscribers
        assert hub.metrics is not None and hub.metrics.registry.get_sample_value("skalds_sse_dropped_total") == 1

    asyncio.run(scenario())


def test_a_pass_with_thousands_of_changes_is_one_queue_item():
    async def scenario() -> None:
        # Given a subscriber with room for 3 passes
        hub = EventHub(cast(Any, None), ControllerMetrics(), queue_size=3)
        sub = hub.subscribe(TASKS)
        hub.publish([])  # its snapshot
        sub.queue.get_nowait()
        # When one pass reports 8,000 heartbeat changes (8,000 live tasks)
        beats = [
            {"type": "task_heartbeat", "taskId": f"t{i}", "data": {"heartbeat": 1}, "timestamp": 0} for i in range(8000)
        ]
        hub.publish(beats)
        # Then the client is not dropped and gets all of them
        assert not sub.dropped
        assert len(sub.queue.get_nowait()) == 8000

    asyncio.run(scenario())


def test_heartbeats_cost_nothing_when_no_stream_wants_them(home):
    # Given a hub over a real embedded store and cache with one running task
    from skalds.backends.cache.state import task_heartbeat_key
    from skalds.controller.config import ControllerConfig
    from skalds.controller.service import ControllerService
    from skalds.model.task import Task
    from skalds.model.task import TaskLifecycleStatus as S

    service = ControllerService(ControllerConfig(skalds_home=str(home)))
    try:
        service.store.create(Task(id="r", class_name="Job"))
        service.store.assign("r", "node-1")
        service.store.set_status("r", S.RUNNING)
        hub = EventHub(service, snapshot_age=0)  # every pass looks afresh
        beat = lambda n: service.state.cache.set(task_heartbeat_key("r"), str(n), ttl=60)  # noqa: E731
        beat(1)
        hub.poll()
        first = hub._tasks["r"]

        # When the beat moves and no fleet-wide stream wants heartbeats
        beat(2)
        events = hub.poll(beats=False)
        # Then the pass reports nothing and keeps the task's view as it was
        assert events == [] and hub._tasks["r"] is first
        # But a stream watching that task gets its beats
        beat(3)
        assert [e["type"] for e in hub.poll(watched={"r"}, beats=False)] == ["task_heartbeat"]
        # And once a stream wants heartbeats, the next pass reports the current beat
        beat(4)
        events = hub.poll(beats=True)
        assert [(e["type"], e["data"]["heartbeat"]) for e in events] == [("task_heartbeat", 4)]
    finally:
        service.close()


def test_deleting_an_ended_task_streams_task_deleted(start_controller, start_skald):
    # Given a task that finished, and one that was cancelled before it ran, before anyone listened
    api = start_controller()
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    api.create(id="done", className="Recorder", attachments={"duration": 0})
    api.create(
        id="never", className="Recorder", attachments={"duration": 60}, notBefore=int(time.time() * 1000) + 60_000
    )
    assert api.set_status("never", "Cancelled").status_code == 200
    wait_for(lambda: api.status_is("done", "Finished"), what="done Finished")
    reader = SSEReader(api.url + "/api/events/tasks")
    only_done = SSEReader(api.url + "/api/events/tasks?taskId=done&types=task_deleted")
    try:
        wait_for(lambda: reader.of("snapshot") and only_done.of("snapshot"), what="snapshots")
        assert reader.of("snapshot")[0][1]["data"] == {"tasks": []}  # ended tasks are not in it

        # When they are deleted through the API
        deleted_at = time.time()
        assert api.http.delete("/api/tasks/done").status_code == 204
        assert api.http.delete("/api/tasks/never").status_code == 204

        # Then each is streamed as task_deleted within a second, with the status it had
        wait_for(lambda: len(reader.of("task_deleted")) == 2, timeout=5, what="task_deleted of both")
        events = {e["taskId"]: (arrived, e) for arrived, e in reader.of("task_deleted")}
        assert events["done"][1]["data"] == {"previous": "Finished"}
        assert events["never"][1]["data"] == {"previous": "Cancelled"}
        assert all(arrived - deleted_at < 1.0 for arrived, _ in events.values())
        # and a stream filtered on one task gets only its own
        wait_for(lambda: only_done.of("task_deleted"), what="the filtered stream's task_deleted")
        assert [e["taskId"] for _, e in only_done.events if e["type"] != "snapshot"] == ["done"]
        # and nothing brings them back afterwards
        time.sleep(1.0)
        for task_id in ("done", "never"):
            ours = [e["type"] for _, e in reader.events if e.get("taskId") == task_id]
            assert ours[-1] == "task_deleted" and ours.count("task_deleted") == 1, ours
    finally:
        reader.close()
        only_done.close()


def test_new_requirements_stream_as_task_requirements(start_controller, start_skald, home):
    from skalds.client import SkaldsClient
    from skalds.config.skald_config import SkaldConfig

    # Given a running task on node-a (two GPUs), a client on its stream and one on the fleet's changes of requirements
    api = start_controller()
    start_skald("node-a", SKALD_RESOURCES="gpu=2")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    api.create(id="r", className="Recorder", attachments={"duration": 300}, requires={"gpu": 1})
    wait_for(lambda: api.status_is("r", "Running"), timeout=15, what="r Running")
    reader = SSEReader(api.url + "/api/events/tasks?taskId=r")
    only = SSEReader(api.url + "/api/events/tasks?types=task_requirements")
    try:
        wait_for(lambda: reader.of("snapshot") and only.of("snapshot"), what="snapshots")
        view = reader.of("snapshot")[0][1]["data"]["tasks"][0]
        assert (view["requires"], view["nodeSelector"]) == ({"gpu": 1.0}, None)

        def changes() -> list[dict[str, Any]]:
            return [e["data"] for _, e in reader.of("task_requirements")]

        # When they change over the API (placed: it is not moved, its placement stays null)
        body = {"requires": {"gpu": 2}, "nodeSelector": {"zone": "eu-1"}}
        assert api.http.put("/api/tasks/r/requirements", json=body).status_code == 200

        # Then the stream says so, with what they were
        wait_for(lambda: changes(), what="task_requirements of the API's change")
        assert changes() == [
            {
                "requires": {"gpu": 2.0},
                "nodeSelector": {"zone": "eu-1"},
                "previous": {"requires": {"gpu": 1.0}, "nodeSelector": None},
                "lifecycleStatus": "Running",
            }
        ]

        # When a client changes them in the store, not through this controller, Then that is streamed too
        with SkaldsClient(SkaldConfig(skalds_home=str(home))) as client:
            client.set_requirements("r", requires=None)
        wait_for(lambda: len(changes()) == 2, what="task_requirements of the client's change")
        assert changes()[1]["previous"] == {"requires": {"gpu": 2.0}, "nodeSelector": {"zone": "eu-1"}}
        assert (changes()[1]["requires"], changes()[1]["nodeSelector"]) == (None, {"zone": "eu-1"})

        # When the same values are put again and then only the node selector changes,
        # Then only the real change is streamed
        assert api.http.put("/api/tasks/r/requirements", json={"requires": None}).status_code == 200
        assert api.http.put("/api/tasks/r/requirements", json={"nodeSelector": {}}).status_code == 200
        wait_for(lambda: len(changes()) >= 3, what="task_requirements of the node selector")
        assert [(c["requires"], c["nodeSelector"]) for c in changes()[1:]] == [(None, {"zone": "eu-1"}), (None, {})]

        # And the fleet-wide stream filtered on the type carried the same three and nothing else
        wait_for(lambda: len(only.of("task_requirements")) == 3, what="the filtered stream's three")
        assert {e["type"] for _, e in only.events} == {"snapshot", "task_requirements"}
        assert [e["data"] for _, e in only.of("task_requirements")] == changes()
        # and the task was never moved: any status the stream sent (its start may still reach a
        # stream that connected right after the API said Running) is Running on node-a, first epoch
        moved = [e["data"] for _, e in reader.of("task_status")]
        assert all((d["status"], d["executor"], d["epoch"]) == ("Running", "node-a", 1) for d in moved), moved
    finally:
        reader.close()
        only.close()
