"""Status history, activity, timeline and search through the REST API (real controller, real skald)."""

from __future__ import annotations

from tests.controller.conftest import online
from tests.support.procs import wait_for


def test_history_activity_timeline_and_search(start_controller, start_skald, events):
    # Given a controller (DISPATCHER mode) and a node skald
    api = start_controller()
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")

    # When a named task is created, runs, and is cancelled, beside another task
    api.create(id="hist-1", className="Recorder", name="camera north", attachments={"someValue": 1})
    api.create(id="other-2", className="Recorder", name="camera south", attachments={"someValue": 2})
    wait_for(lambda: api.status_is("hist-1", "Running"), what="hist-1 Running")

    # And its attachments change while it runs
    api.http.put("/api/tasks/hist-1/attachments", json={"attachments": {"someValue": 5}})
    wait_for(lambda: events("hist-1", "update"), what="update handled")

    # Then its worker's log lines can be read, in order, and polled for newer ones only
    def log_text(after: int | None = None) -> tuple[list[str], int]:
        params = {} if after is None else {"after": after}
        page = api.http.get("/api/tasks/hist-1/logs", params=params).json()
        assert page["taskId"] == "hist-1"
        return [line["message"] for line in page["lines"]], page["lastSeq"]

    def with_update_line() -> tuple[list[str], int] | None:
        got = log_text()
        return got if any("someValue=5" in m for m in got[0]) else None

    lines, last = wait_for(with_update_line, what="the update's log line")
    main_at = next(i for i, m in enumerate(lines) if "recorder main: someValue=1" in m)
    update_at = next(i for i, m in enumerate(lines) if "recorder update: someValue=5" in m)
    assert main_at < update_at
    assert log_text(after=last) == ([], last)
    assert api.http.get("/api/tasks/hist-1/logs", params={"limit": 1}).json()["lines"][-1]["seq"] == last
    assert api.http.get("/api/tasks/nope/logs").status_code == 404
    assert api.http.get("/api/tasks/hist-1/logs", params={"limit": 0}).status_code == 422

    assert api.set_status("hist-1", "Cancelled").status_code == 200
    wait_for(lambda: events("hist-1", "release"), what="release")

    # Then its history lists each status change, oldest first, with where it ran
    history = api.http.get("/api/tasks/hist-1/history").json()
    steps = [(i["status"], i["executor"]) for i in history["items"]]
    assert steps == [
        ("Created", None),
        ("Assigning", "node-a"),
        ("Running", "node-a"),
        ("Cancelled", "node-a"),
    ], steps
    times = [i["timestamp"] for i in history["items"]]
    assert times == sorted(times)
    assert api.http.get("/api/tasks/nope/history").status_code == 404

    # And the activity log tells the same, newest first
    def hist_activity() -> list[str]:
        items = api.http.get("/api/system/activity", params={"limit": 100}).json()["items"]
        return [i["kind"] for i in reversed(items) if i["taskId"] == "hist-1"]

    wait_for(lambda: "cancelled" in hist_activity(), what="cancel in activity")
    assert hist_activity() == ["created", "assigned", "running", "cancelled"]
    newest = api.http.get("/api/system/activity", params={"limit": 1}).json()["items"]
    assert len(newest) == 1
    assert api.http.get("/api/system/activity", params={"limit": 0}).status_code == 422

    # And the timeline has points counting Running tasks
    timeline = api.http.get("/api/system/timeline", params={"minutes": 5}).json()
    assert timeline["intervalMs"] > 0 and timeline["points"]
    assert {"timestamp", "running", "failed"} <= set(timeline["points"][-1])
    wait_for(
        lambda: api.http.get("/api/system/timeline").json()["points"][-1]["running"] >= 1,
        timeout=30,
        what="a point with the other task Running",
    )

    # And a search by part of the name or id finds just the matching tasks
    def found(q: str) -> list[str]:
        return [t["id"] for t in api.http.get("/api/tasks", params={"q": q}).json()["items"]]

    assert found("north") == ["hist-1"]
    assert found("other") == ["other-2"]
    assert sorted(found("camera")) == ["hist-1", "other-2"]
    assert found("camera") == ["hist-1", "other-2"]  # oldest first by default
    newest = api.http.get("/api/tasks", params={"q": "camera", "order": "-createDateTime"}).json()["items"]
    assert [t["id"] for t in newest] == ["other-2", "hist-1"]
    assert api.http.get("/api/tasks", params={"order": "name"}).status_code == 422
    assert api.http.get("/api/tasks", params={"q": "camera", "status": "Cancelled"}).json()["total"] == 1
