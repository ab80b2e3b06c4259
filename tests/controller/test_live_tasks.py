"""``LiveTasks``: the shared snapshot of open tasks, its activity log and timeline, on a real
embedded store and cache (no HTTP). Skalds and workers are played by the writes they would make."""

from __future__ import annotations

from pathlib import Path

import pytest

from skalds.backends.cache.state import task_error_key, task_heartbeat_key
from skalds.backends.store.base import TaskQuery
from skalds.backends.store.sqlite import SqliteTaskStore
from skalds.controller.config import ControllerConfig
from skalds.controller.live import LiveTasks
from skalds.controller.service import ControllerService
from skalds.model.task import Task, TaskLifecycleStatus

S = TaskLifecycleStatus


class CountingStore(SqliteTaskStore):
    """The real embedded store, counting whole-document reads by id."""

    fetched: list[str]

    def _query(self, query: TaskQuery):  # type: ignore[no-untyped-def]
        if query.ids is not None:
            self.fetched.extend(query.ids)
        return super()._query(query)


@pytest.fixture
def service(home: Path):
    svc = ControllerService(ControllerConfig(skalds_home=str(home)))
    yield svc
    svc.close()


@pytest.fixture
def store(service: ControllerService) -> CountingStore:
    counting = CountingStore(str(service.store.path))  # type: ignore[attr-defined]
    counting.fetched = []
    return counting


def make(store: SqliteTaskStore, task_id: str, **fields: object) -> Task:
    return store.create(Task.model_validate({"id": task_id, "className": "Job", **fields}))


def kinds(live: LiveTasks, task_id: str) -> list[str]:
    return [a["kind"] for a in reversed(live.recent_activity(500)) if a["taskId"] == task_id]


def test_snapshot_fetches_only_changed_records_and_reads_leases_in_one_batch(service, store):
    # Given three open tasks, two of them running with leases (one with an error), and a finished one
    live = LiveTasks(lambda: store, lambda: service.state)
    for tid in ("a", "b", "c", "done"):
        make(store, tid)
    for tid in ("a", "b"):
        store.assign(tid, "node-1")
        store.set_status(tid, S.RUNNING)
    store.assign("done", "node-1")
    store.set_status("done", S.FINISHED)
    service.state.cache.set(task_heartbeat_key("a"), "42", ttl=60)
    service.state.cache.set(task_error_key("a"), "disk full", ttl=60)

    # When a first snapshot is taken
    first = live.snapshot()

    # Then it holds the open tasks with the cache state of those that run
    assert sorted(first.tasks) == ["a", "b", "c"]
    assert first.state("a") == {"heartbeat": 42, "error": "disk full", "exception": None, "usage": None}
    assert first.state("b")["heartbeat"] is None  # no lease
    assert first.state("c") == first.state("nope")  # not running: nothing read
    assert sorted(store.fetched) == ["a", "b", "c"]

    # When nothing changes and it is refreshed
    store.fetched.clear()
    second = live.snapshot()
    # Then no record is read again, and unchanged tasks are the same objects
    assert store.fetched == []
    assert second.tasks["a"] is first.tasks["a"]

    # When one task changes and another ends
    store.update_attachments("b", {"n": 1})
    store.set_status("a", S.FINISHED)
    third = live.snapshot()
    # Then only those two are read (b changed; a left the open set), and a is gone from the snapshot
    assert sorted(store.fetched) == ["a", "b"]
    assert sorted(third.tasks) == ["b", "c"] and third.tasks["b"].attachments == {"n": 1}


def test_a_young_snapshot_is_shared(service, store):
    # Given a snapshot just taken
    live = LiveTasks(lambda: store, lambda: service.state)
    make(store, "x")
    first = live.snapshot()
    make(store, "y")
    # When callers accept one up to a minute old / accept none
    # Then the first get the same snapshot, the last a fresh one
    assert live.snapshot(max_age=60) is first
    assert sorted(live.snapshot(max_age=0).tasks) == ["x", "y"]
    assert live.refreshes == 2


def test_activity_tells_each_change_once_in_order_even_for_tasks_that_came_and_went(service, store):
    live = LiveTasks(lambda: store, lambda: service.state)
    make(store, "old", name="before the first look")
    live.snapshot()  # the first look learns, it does not replay history

    # Given a task that is created, runs, fails, is retried and then returned to dispatch
    make(store, "t", name="the job")
    live.snapshot()
    store.assign("t", "node-1")
    store.set_status("t", S.RUNNING)
    live.snapshot()
    store.set_status("t", S.FAILED, exception="boom")
    live.snapshot()
    store.modify("t", lambda t: {"lifecycle_status": S.CREATED, "executor": None, "retries": 1})
    store.assign("t", "node-2")
    store.set_status("t", S.RUNNING)
    store.modify("t", lambda t: {"lifecycle_status": S.CREATED, "executor": None})  # node-2 died
    # and a task created and finished entirely between two looks
    make(store, "short")
    store.assign("short", "node-1")
    store.set_status("short", S.FINISHED)
    live.snapshot()
    live.snapshot()

    # Then the activity log tells every change once, in order, with its executor and reason
    assert kinds(live, "t") == [
        "created",
        "assigned",
        "running",
        "failed",
        "retried",
        "assigned",
        "running",
        "failover",
    ]
    entries = {(a["taskId"], a["kind"]): a for a in live.recent_activity(500)}
    assert entries[("t", "failed")]["detail"] == "boom" and entries[("t", "failed")]["executor"] == "node-1"
    assert entries[("t", "failover")]["executor"] == "node-2"  # where it was lost
    assert entries[("t", "created")]["name"] == "the job" and entries[("t", "created")]["className"] == "Job"
    assert kinds(live, "short") == ["created", "assigned", "finished"]
    # And nothing from before the first look, newest first, limited on request
    assert kinds(live, "old") == []
    newest = live.recent_activity(2)
    assert len(newest) == 2 and newest[0]["timestamp"] >= newest[1]["timestamp"]


def test_timeline_counts_running_and_failed_per_interval(service, store):
    # Given a timeline with a point at every refresh (interval 0)
    live = LiveTasks(lambda: store, lambda: service.state, timeline_interval=0)
    for tid in ("r1", "r2", "f1"):
        make(store, tid)
        store.assign(tid, "node-1")
        store.set_status(tid, S.RUNNING)
    store.set_status("f1", S.FAILED)
    live.snapshot()
    store.set_status("r2", S.FINISHED)
    live.snapshot()
    # Then the points count Running and Failed tasks at each look
    points = live.timeline_points(0)
    assert [(p["running"], p["failed"]) for p in points] == [(2, 1), (1, 1)]
    assert live.timeline_points(points[-1]["timestamp"] + 1) == []


def test_a_task_deleted_while_the_snapshot_is_taken_is_not_kept_in_its_old_form(service, store):
    # Given a snapshot holding task "a", which then changes
    live = LiveTasks(lambda: store, lambda: service.state)
    make(store, "a")
    make(store, "b")
    live.snapshot()
    store.update_attachments("a", {"n": 1})

    # When "a" is deleted between the read of the versions and the read of the changed records
    read_versions = store._versions

    def then_delete(query):  # type: ignore[no-untyped-def]
        found = read_versions(query)
        store.delete("a")
        return found

    store._versions = then_delete  # type: ignore[method-assign]
    snapshot = live.snapshot()

    # Then the snapshot has no stale copy of it
    assert sorted(snapshot.tasks) == ["b"]


def test_a_task_retried_and_failed_again_between_two_looks_keeps_all_its_activity(service, store):
    # Given a task that failed, seen failed by a look
    live = LiveTasks(lambda: store, lambda: service.state)
    live.snapshot()
    make(store, "fast")
    store.assign("fast", "node-1")
    store.set_status("fast", S.RUNNING)
    store.set_status("fast", S.FAILED, exception="boom 1")
    live.snapshot()
    assert kinds(live, "fast") == ["created", "assigned", "running", "failed"]

    # When it is retried, runs and fails again twice, all between two looks (Failed at both)
    for n in (2, 3):
        store.modify("fast", lambda t: {"lifecycle_status": S.CREATED, "executor": None, "retries": t.retries + 1})
        store.assign("fast", "node-2")
        store.set_status("fast", S.RUNNING)
        store.set_status("fast", S.FAILED, exception=f"boom {n}")
    store.fetched.clear()
    live.snapshot()

    # Then every entry of its history counts, once, and only that record was fetched again
    run = ["assigned", "running", "failed"]
    assert kinds(live, "fast") == ["created", *run, "retried", *run, "retried", *run]
    details = [a["detail"] for a in reversed(live.recent_activity(500)) if a["kind"] == "failed"]
    assert details == ["boom 1", "boom 2", "boom 3"]
    assert store.fetched == ["fast"]
    live.snapshot()
    assert len(kinds(live, "fast")) == 12

    # When an operator retries a Finished task, which finishes again before the next look
    make(store, "done")
    store.assign("done", "node-1")
    store.set_status("done", S.FINISHED)
    live.snapshot()
    store.modify("done", lambda t: {"lifecycle_status": S.CREATED, "executor": None})
    live.watch("done")  # what the service does when it runs a task again
    store.assign("done", "node-1")
    store.set_status("done", S.FINISHED)
    live.snapshot()
    # Then that run is in the activity too
    assert kinds(live, "done") == ["created", "assigned", "finished", "retried", "assigned", "finished"]

    # And a watched task that is deleted is forgotten
    store.delete("fast")
    live.snapshot()
    assert "fast" not in live._ended
