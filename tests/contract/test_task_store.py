"""Contract of every task store driver (see conftest.STORE_DRIVERS)."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from skalds.backends.store.base import TaskQuery, TaskStore
from skalds.errors import Conflict, IllegalTransition, TaskExists, TaskNotFound
from skalds.model.task import ModeEnum, Task, now_ms
from skalds.model.task import TaskLifecycleStatus as S

FORK = mp.get_context("fork")


def make_task(task_id: str, **fields: object) -> Task:
    return Task.model_validate({"id": task_id, "className": "Demo", **fields})


@pytest.fixture
def catalogue(task_store: TaskStore) -> TaskStore:
    """Five tasks with distinct classes, statuses, executors, modes, priorities and ages."""
    rows = [
        ("t1", "Alpha", S.CREATED, None, ModeEnum.PASSIVE, 1, 1000, "first job"),
        ("t2", "Beta", S.RUNNING, "e1", ModeEnum.ACTIVE, 5, 2000, "second job"),
        ("t3", "Alpha", S.ASSIGNING, "e1", ModeEnum.PASSIVE, 5, 3000, "third"),
        ("t4", "Beta", S.FINISHED, "e1", ModeEnum.PASSIVE, 9, 4000, None),
        ("x5", "Alpha", S.RUNNING, "e2", ModeEnum.ACTIVE, 0, 5000, "fifth job"),
    ]
    for tid, cls, status, executor, mode, prio, created, name in rows:
        task_store.create(
            make_task(
                tid,
                className=cls,
                lifecycleStatus=status,
                executor=executor,
                mode=mode,
                priority=prio,
                createDateTime=created,
                name=name,
            )
        )
    return task_store


def ids(store: TaskStore, **query: object) -> list[str]:
    return [t.id for t in store.list(TaskQuery(**query)).items]


# ---- create / get / require / delete ---------------------------------------------------------
def test_create_then_get_returns_stored_task_at_version_1(task_store: TaskStore) -> None:
    # Given a new task with attachments
    task = make_task("a", name="job", attachments={"n": 1, "nested": [1, 2]})
    # When it is created
    created = task_store.create(task)
    # Then it is stored at version 1 and reads back equal
    assert created.version == 1
    assert task_store.get("a") == created
    assert task_store.require("a").attachments == {"n": 1, "nested": [1, 2]}


def test_create_many_stores_all_or_none(task_store: TaskStore) -> None:
    # Given one stored task
    task_store.create(make_task("old"))
    # When three new tasks are stored together
    made = task_store.create_many([make_task(f"n{i}", priority=i) for i in range(3)])
    # Then all three are there at version 1 with their first status change, in order
    assert [t.id for t in made] == ["n0", "n1", "n2"]
    stored = task_store.require("n2")
    assert (stored.version, stored.priority, [c.status for c in stored.status_history]) == (1, 2, [S.CREATED])
    # When a batch holds a taken id, or the same id twice
    with pytest.raises(TaskExists, match="'old'"):
        task_store.create_many([make_task("x1"), make_task("old"), make_task("x2")])
    with pytest.raises(TaskExists, match="'y'"):
        task_store.create_many([make_task("y"), make_task("y")])
    # Then none of that batch is stored
    assert task_store.list(TaskQuery(ids=("x1", "x2", "y"))).total == 0
    assert task_store.list().total == 4
    # And an empty batch stores nothing
    assert task_store.create_many([]) == []


def test_get_missing_is_none_and_require_raises(task_store: TaskStore) -> None:
    # Given an empty store / When a missing id is read / Then get is None and require raises
    assert task_store.get("nope") is None
    with pytest.raises(TaskNotFound, match="nope"):
        task_store.require("nope")


def test_create_twice_raises_task_exists_naming_the_id(task_store: TaskStore) -> None:
    # Given a stored task
    task_store.create(make_task("dup", name="original"))
    # When another task with the same id is created
    with pytest.raises(TaskExists, match="dup"):
        task_store.create(make_task("dup", name="impostor"))
    # Then the original is untouched
    assert task_store.require("dup").name == "original"


def test_delete_removes_task_once(task_store: TaskStore) -> None:
    # Given a stored task
    task_store.create(make_task("d"))
    # When it is deleted twice
    first, second = task_store.delete("d"), task_store.delete("d")
    # Then only the first delete found it and the task is gone
    assert (first, second) == (True, False)
    assert task_store.get("d") is None
    assert task_store.list().total == 0


# ---- listing ---------------------------------------------------------------------------------
def test_list_everything_ordered_by_creation(catalogue: TaskStore) -> None:
    # Given five tasks / When listed without filters / Then all come oldest first with the total
    page = catalogue.list()
    assert [t.id for t in page.items] == ["t1", "t2", "t3", "t4", "x5"]
    assert page.total == 5


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"statuses": (S.RUNNING,)}, ["t2", "x5"]),
        ({"statuses": (S.RUNNING, S.ASSIGNING)}, ["t2", "t3", "x5"]),
        ({"statuses": ()}, []),
        ({"class_name": "Alpha"}, ["t1", "t3", "x5"]),
        ({"executor": "e1"}, ["t2", "t3", "t4"]),
        ({"mode": "Active"}, ["t2", "x5"]),
        ({"ids": ("t4", "x5", "missing")}, ["t4", "x5"]),
        ({"ids": ()}, []),
        ({"search": "x"}, ["x5"]),  # substring of the id
        ({"search": "job"}, ["t1", "t2", "x5"]),  # substring of the name
        ({"class_name": "Beta", "executor": "e1", "statuses": (S.FINISHED,)}, ["t4"]),
    ],
)
def test_list_filters(catalogue: TaskStore, query: dict[str, object], expected: list[str]) -> None:
    # Given five tasks / When listed with a filter / Then exactly the matching ones come back
    page = catalogue.list(TaskQuery(**query))
    assert [t.id for t in page.items] == expected
    assert page.total == len(expected)


def test_list_pagination_reports_total_without_offset_and_limit(catalogue: TaskStore) -> None:
    # Given five tasks / When the second page of two is read
    page = catalogue.list(TaskQuery(offset=2, limit=2))
    # Then it holds the third and fourth tasks and the total counts all five
    assert [t.id for t in page.items] == ["t3", "t4"]
    assert page.total == 5
    # And a page past the end is empty but still counts
    past = catalogue.list(TaskQuery(offset=10, limit=2, class_name="Alpha"))
    assert (past.items, past.total) == ([], 3)


def test_list_by_priority_then_age(catalogue: TaskStore) -> None:
    # Given tasks of priorities 1, 5, 5, 9, 0 / When listed by "-priority"
    # Then highest priority comes first, ties oldest first
    assert ids(catalogue, order="-priority") == ["t4", "t2", "t3", "t1", "x5"]
    assert ids(catalogue, order="-priority", statuses=(S.RUNNING, S.ASSIGNING), limit=2) == ["t2", "t3"]


def test_list_by_lowest_priority_status_and_last_change(catalogue: TaskStore) -> None:
    # Given tasks of priorities 1, 5, 5, 9, 0 / When listed by "priority" / Then lowest first, ties oldest first
    assert ids(catalogue, order="priority") == ["x5", "t1", "t2", "t3", "t4"]
    # When listed by status / Then status names A-Z (ties oldest first), or Z-A (ties newest first)
    assert ids(catalogue, order="lifecycleStatus") == ["t3", "t1", "t4", "t2", "x5"]
    assert ids(catalogue, order="-lifecycleStatus") == ["x5", "t2", "t4", "t1", "t3"]
    # When t3 and then t1 change after the others
    for task_id in ("t3", "t1"):
        before = now_ms()
        while now_ms() == before:  # the next millisecond, so the two changes never tie
            pass
        catalogue.modify(task_id, lambda t: {"name": "changed"})
    # Then by last change they come last (oldest change first) or first (newest change first)
    assert ids(catalogue, order="updateDateTime")[-2:] == ["t3", "t1"]
    assert ids(catalogue, order="-updateDateTime")[:2] == ["t1", "t3"]
    assert ids(catalogue, order="-updateDateTime", offset=1, limit=1) == ["t3"]


def test_counts_by_status_and_class(catalogue: TaskStore) -> None:
    # Given five tasks of two classes in four statuses / When counted
    # Then each (status, class) has its number, and nothing else appears
    assert catalogue.counts() == {
        ("Created", "Alpha"): 1,
        ("Running", "Beta"): 1,
        ("Assigning", "Alpha"): 1,
        ("Finished", "Beta"): 1,
        ("Running", "Alpha"): 1,
    }
    catalogue.set_status("t1", S.PAUSED)
    assert catalogue.counts()[("Paused", "Alpha")] == 1 and ("Created", "Alpha") not in catalogue.counts()


def test_list_newest_first(catalogue: TaskStore) -> None:
    # Given five tasks created one after another (and one more at the same time as the last)
    catalogue.create(make_task("x6", createDateTime=5000))
    # When listed by "-createDateTime" / Then newest first, ties by id descending, pages consistent
    assert ids(catalogue, order="-createDateTime") == ["x6", "x5", "t4", "t3", "t2", "t1"]
    assert ids(catalogue, order="-createDateTime", offset=2, limit=2) == ["t4", "t3"]
    assert ids(catalogue, order="-createDateTime", class_name="Beta") == ["t4", "t2"]


def test_owned_by_lists_only_live_tasks_of_the_executor(catalogue: TaskStore) -> None:
    # Given e1 holds a Running, an Assigning and a Finished task
    # When its owned tasks are read / Then only the live ones come back
    assert sorted(t.id for t in catalogue.owned_by("e1")) == ["t2", "t3"]
    assert [t.id for t in catalogue.owned_by("e2")] == ["x5"]
    assert catalogue.owned_by("nobody") == []


def test_versions_lists_ids_and_versions_of_matching_tasks(catalogue: TaskStore) -> None:
    # Given five tasks at version 1, one of them written twice more
    catalogue.update_attachments("t2", {"n": 1})
    catalogue.update_attachments("t2", {"n": 2})
    # When the versions of the live tasks are read
    live = catalogue.versions(TaskQuery(statuses=(S.RUNNING, S.ASSIGNING)))
    # Then exactly those tasks come back with their current versions
    assert live == {"t2": 3, "t3": 1, "x5": 1}
    # And the other filters apply; paging does not
    assert catalogue.versions(TaskQuery(class_name="Alpha", limit=1, offset=2)) == {"t1": 1, "t3": 1, "x5": 1}
    assert catalogue.versions(TaskQuery(statuses=())) == {}
    assert set(catalogue.versions()) == {"t1", "t2", "t3", "t4", "x5"}


# ---- writes ----------------------------------------------------------------------------------
def test_modify_bumps_version_and_keeps_columns_in_sync(task_store: TaskStore) -> None:
    # Given a stored task
    task_store.create(make_task("m", priority=1))
    # When it is modified
    updated = task_store.modify("m", lambda t: {"priority": 7, "name": "renamed"})
    # Then version is bumped and listings see the new values
    assert updated.version == 2
    assert task_store.require("m") == updated
    assert ids(task_store, search="renamed") == ["m"]
    assert ids(task_store, order="-priority") == ["m"]


def test_modify_returning_none_writes_nothing(task_store: TaskStore) -> None:
    # Given a stored task / When the change declines / Then the version stays
    task_store.create(make_task("m"))
    assert task_store.modify("m", lambda t: None).version == 1
    assert task_store.require("m").version == 1


def test_cas_with_stale_version_does_not_write(task_store: TaskStore) -> None:
    # Given a task modified once (version 2)
    task_store.create(make_task("c"))
    task_store.modify("c", lambda t: {"name": "v2"})
    # When a writer holding version 1 tries to write
    written = task_store._cas("c", 1, {"name": "stale", "version": 2})
    # Then nothing is written
    assert written is False
    assert task_store.require("c").name == "v2"
    assert task_store._cas("missing", 1, {"version": 2}) is False


def test_modify_missing_task_raises_not_found(task_store: TaskStore) -> None:
    with pytest.raises(TaskNotFound):
        task_store.modify("ghost", lambda t: {"name": "x"})


def test_set_status_legal_transition(task_store: TaskStore) -> None:
    # Given a Created task / When it is paused with an extra field
    task_store.create(make_task("s"))
    paused = task_store.set_status("s", S.PAUSED, exception="why")
    # Then status and field are stored and listings by status see it
    assert (paused.lifecycle_status, paused.exception, paused.version) == (S.PAUSED, "why", 2)
    assert ids(task_store, statuses=(S.PAUSED,)) == ["s"]


def test_set_status_illegal_transition_raises_and_writes_nothing(task_store: TaskStore) -> None:
    # Given a Created task / When it jumps straight to Running
    task_store.create(make_task("s"))
    with pytest.raises(IllegalTransition, match="Created to Running"):
        task_store.set_status("s", S.RUNNING)
    # Then it is unchanged
    stored = task_store.require("s")
    assert (stored.lifecycle_status, stored.version) == (S.CREATED, 1)


def test_set_status_fences(task_store: TaskStore) -> None:
    # Given a task assigned to e1 at epoch 1
    task_store.create(make_task("f"))
    task_store.assign("f", "e1")
    # When a writer with a wrong executor, epoch or expected status sets it Running
    # Then each is refused with Conflict and nothing is written
    with pytest.raises(Conflict, match="e1"):
        task_store.set_status("f", S.RUNNING, expect_executor="e2", expect_epoch=1)
    with pytest.raises(Conflict, match="epoch 1"):
        task_store.set_status("f", S.RUNNING, expect_executor="e1", expect_epoch=0)
    with pytest.raises(Conflict):
        task_store.set_status("f", S.RUNNING, expect_statuses=[S.CREATED])
    assert task_store.require("f").version == 2
    # And the rightful owner succeeds
    running = task_store.set_status("f", S.RUNNING, expect_executor="e1", expect_epoch=1, expect_statuses=[S.ASSIGNING])
    assert running.lifecycle_status == S.RUNNING


def test_assign_bumps_epoch_and_fences_on_expected_epoch(task_store: TaskStore) -> None:
    # Given a Created task at epoch 0
    task_store.create(make_task("a"))
    # When it is assigned to e1, then reassigned to e2
    first = task_store.assign("a", "e1", expect_epoch=0)
    second = task_store.assign("a", "e2", expect_epoch=1)
    # Then each assignment bumps the epoch and sets Assigning
    assert (first.executor, first.epoch, first.lifecycle_status) == ("e1", 1, S.ASSIGNING)
    assert (second.executor, second.epoch, second.version) == ("e2", 2, 3)
    assert [t.id for t in task_store.owned_by("e2")] == ["a"]
    assert task_store.owned_by("e1") == []
    # And an assignment expecting a stale epoch is refused
    with pytest.raises(Conflict):
        task_store.assign("a", "e3", expect_epoch=1)
    assert task_store.require("a").executor == "e2"


def test_update_attachments_replaces_only_attachments(task_store: TaskStore) -> None:
    # Given a task with a name and attachments
    task_store.create(make_task("u", name="keep", attachments={"a": 1}))
    # When its attachments are replaced
    updated = task_store.update_attachments("u", {"b": [2, 3]})
    # Then the new attachments are stored and everything else is kept
    stored = task_store.require("u")
    assert stored.attachments == {"b": [2, 3]} == updated.attachments
    assert (stored.name, stored.version) == ("keep", 2)


# ---- many processes --------------------------------------------------------------------------
def _increment(store: TaskStore, task_id: str, times: int) -> None:
    for _ in range(times):
        store.modify(task_id, lambda t: {"attachments": {"counter": t.attachments["counter"] + 1}})


def test_concurrent_modify_from_processes_loses_no_update(task_store: TaskStore) -> None:
    # Given a task with a counter, already used by this (parent) process
    task_store.create(make_task("ctr", attachments={"counter": 0}))
    assert task_store.require("ctr").version == 1
    # When 4 forked processes (sharing the inherited client) each increment it 50 times
    procs = [FORK.Process(target=_increment, args=(task_store, "ctr", 50)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    # Then every increment landed exactly once
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    final = task_store.require("ctr")
    assert final.attachments == {"counter": 200}
    assert final.version == 201


def _race_assign(factory, barrier, results, task_ids: list[str], me: str) -> None:
    store = factory()
    barrier.wait(timeout=10)
    for task_id in task_ids:
        try:
            store.assign(task_id, me, expect_epoch=0)
            results.put((task_id, me, "won"))
        except Conflict:
            results.put((task_id, me, "conflict"))
    store.close()


def test_racing_assign_has_exactly_one_winner(task_store_factory) -> None:
    # Given five Created tasks at epoch 0
    store = task_store_factory()
    task_ids = [f"race-{i}" for i in range(5)]
    for tid in task_ids:
        store.create(make_task(tid))
    # When two processes race to assign each of them expecting epoch 0
    barrier, results = FORK.Barrier(2), FORK.Queue()
    procs = [
        FORK.Process(target=_race_assign, args=(task_store_factory, barrier, results, task_ids, me))
        for me in ("p1", "p2")
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=30) for _ in range(2 * len(task_ids))]
    for p in procs:
        p.join(timeout=30)
    # Then per task exactly one wins, the other gets Conflict, and the store names the winner
    assert [p.exitcode for p in procs] == [0, 0]
    for tid in task_ids:
        mine = {me: result for t, me, result in outcomes if t == tid}
        assert sorted(mine.values()) == ["conflict", "won"]
        winner = next(me for me, result in mine.items() if result == "won")
        stored = store.require(tid)
        assert (stored.executor, stored.epoch) == (winner, 1)


def test_status_history_records_each_change_with_executor_epoch_and_reason(task_store: TaskStore) -> None:
    # Given a task created, assigned, run, failed, retried and reassigned
    task_store.create(make_task("h"))
    task_store.assign("h", "e1")
    task_store.set_status("h", S.RUNNING)
    task_store.update_attachments("h", {"x": 1})  # not a status change
    task_store.set_status("h", S.FAILED, exception="boom: " + "x" * 2000)
    task_store.modify("h", lambda t: {"lifecycle_status": S.CREATED, "executor": None})
    task_store.assign("h", "e2")
    task_store.assign("h", "e3")  # Assigning again, at a new epoch
    # When it is read back
    history = task_store.require("h").status_history
    # Then every status change is there, oldest first, with where and at which epoch it happened
    assert [(c.status, c.executor, c.epoch) for c in history] == [
        (S.CREATED, None, 0),
        (S.ASSIGNING, "e1", 1),
        (S.RUNNING, "e1", 1),
        (S.FAILED, "e1", 1),
        (S.CREATED, None, 1),
        (S.ASSIGNING, "e2", 2),
        (S.ASSIGNING, "e3", 3),
    ]
    # And the failure says why (shortened), the others say nothing; times never go back
    assert history[3].detail is not None and history[3].detail.startswith("boom: ")
    assert len(history[3].detail) <= 500
    assert [c.detail for c in history if c.status != S.FAILED] == [None] * 6
    times = [c.timestamp for c in history]
    assert times == sorted(times)


def test_status_history_keeps_the_last_fifty(task_store: TaskStore) -> None:
    # Given a task paused and resumed 40 times (81 changes with its creation)
    task_store.create(make_task("p"))
    for _ in range(40):
        task_store.set_status("p", S.PAUSED)
        task_store.set_status("p", S.CREATED)
    # Then the record keeps the last 50, ending with the latest
    history = task_store.require("p").status_history
    assert len(history) == 50
    assert [c.status for c in history[-2:]] == [S.PAUSED, S.CREATED]


def test_modify_many_applies_or_refuses_each_change_on_its_own(task_store: TaskStore) -> None:
    # Given three Created tasks, one Finished, and one that another writer changes
    for i in range(3):
        task_store.create(make_task(f"m{i}"))
    task_store.create(make_task("done", lifecycleStatus=S.FINISHED))
    task_store.create(make_task("raced"))

    def assign(t: Task) -> dict[str, object]:
        if t.lifecycle_status != S.CREATED:
            raise Conflict(f"{t.id} is {t.lifecycle_status.value}")
        return {"executor": "e1", "epoch": t.epoch + 1, "lifecycle_status": S.ASSIGNING}

    raced_once = []

    def raced(t: Task) -> dict[str, object] | None:
        if not raced_once:  # another writer moves it between the batch's read and its write
            raced_once.append(t.version)
            task_store.modify("raced", lambda _t: {"priority": 7})
        return {"lifecycle_status": S.ASSIGNING, "executor": "e1", "epoch": t.epoch + 1}

    # When they are all changed together, with an unknown id, a no-op and an illegal transition
    results = task_store.modify_many(
        {
            "m0": assign,
            "m1": assign,
            "nope": assign,
            "m2": lambda t: None,
            "done": lambda t: {"lifecycle_status": S.RUNNING},
            "raced": raced,
        }
    )

    # Then each result is its own: written (version 2, history), unchanged, or the refusal
    m0, m1 = results["m0"], results["m1"]
    assert isinstance(m0, Task) and isinstance(m1, Task)
    assert (m0.executor, m0.epoch, m0.version, m0.lifecycle_status) == ("e1", 1, 2, S.ASSIGNING)
    assert task_store.require("m1") == m1
    assert [c.status for c in task_store.require("m0").status_history] == [S.CREATED, S.ASSIGNING]
    assert isinstance(results["nope"], TaskNotFound)
    assert results["m2"] == task_store.require("m2") and task_store.require("m2").version == 1
    assert isinstance(results["done"], IllegalTransition)
    assert task_store.require("done").lifecycle_status == S.FINISHED
    # the raced task was decided again on what was stored: the other writer's change is kept
    raced_task = task_store.require("raced")
    assert results["raced"] == raced_task
    assert (raced_task.priority, raced_task.lifecycle_status, raced_task.version) == (7, S.ASSIGNING, 3)
    # And an empty batch changes nothing
    assert task_store.modify_many({}) == {}


def test_modify_in_turn_writes_each_change_onto_the_one_before(task_store: TaskStore) -> None:
    # Given an assigned task
    task_store.create(make_task("turn"))
    task_store.assign("turn", "e1")

    def fenced(status: S) -> object:
        def change(t: Task) -> dict[str, object]:
            if t.executor != "e1":
                raise Conflict(f"{t.id} is not e1's")
            return {"lifecycle_status": status}

        return change

    # When Running then Finished are written in turn
    done = task_store.modify_in_turn("turn", [fenced(S.RUNNING), lambda t: None, fenced(S.FINISHED)])
    # Then both are there, each its own version and history entry
    stored = task_store.require("turn")
    assert stored == done
    assert (stored.lifecycle_status, stored.version) == (S.FINISHED, 4)
    assert [(c.status, c.version) for c in stored.status_history] == [
        (S.CREATED, 1),
        (S.ASSIGNING, 2),
        (S.RUNNING, 3),
        (S.FINISHED, 4),
    ]

    # When a later change refuses, or the fence no longer holds
    task_store.create(make_task("turn2"))
    task_store.assign("turn2", "e1")

    def refuse(t: Task) -> dict[str, object]:
        raise Conflict(f"{t.id}: refused at version {t.version}")

    with pytest.raises(Conflict, match="refused at version 3"):  # it saw the Running change
        task_store.modify_in_turn("turn2", [fenced(S.RUNNING), refuse])
    task_store.assign("turn2", "e2")
    with pytest.raises(Conflict):
        task_store.modify_in_turn("turn2", [fenced(S.RUNNING), fenced(S.FINISHED)])
    # Then none of those changes was written
    after = task_store.require("turn2")
    assert (after.lifecycle_status, after.executor) == (S.ASSIGNING, "e2")
    assert S.RUNNING not in [c.status for c in after.status_history]


def test_mongo_a_task_written_by_03x_without_a_version_can_be_changed(mongo_uri: str) -> None:
    # Given a task document as Skalds 0.3.x wrote it (no version field)
    import uuid

    import pymongo

    from skalds.backends.store.mongo import MongoTaskStore

    db_name = "skalds_compat_" + uuid.uuid4().hex[:8]
    raw = pymongo.MongoClient(mongo_uri)
    try:
        doc = make_task("old-1").model_dump(by_alias=True, mode="json")
        doc.pop("version", None)
        raw[db_name]["tasks"].insert_one(doc)
        store = MongoTaskStore(mongo_uri, db_name=db_name)
        # When it is changed through the store
        changed = store.set_status("old-1", S.CANCELLED)
        # Then the write is taken (as version 0 → 1), not refused as a conflict for ever
        assert changed.lifecycle_status == S.CANCELLED and changed.version == 1
        store.close()
    finally:
        raw.drop_database(db_name)
        raw.close()
