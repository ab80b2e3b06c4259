"""What only the PostgreSQL task store promises, beyond the shared contract (tests/contract).

Schema and indexes, columns kept in sync with the jsonb document, reconnecting after the server
restarted, many threads, and no password in error messages. Runs against real PostgreSQL servers
(the session's, and a private one for the restart test). The two-process assignment race is part of
the contract suite, which runs on PostgreSQL too.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from skalds.backends.factory import open_store
from skalds.backends.store.base import TaskQuery
from skalds.backends.store.postgres import INDEXES, PostgresTaskStore
from skalds.errors import BackendUnavailable, ConfigError
from skalds.model.task import Task
from skalds.model.task import TaskLifecycleStatus as S
from tests.support.servers import PostgresServer, free_port, running

SECRET = "Pw-s3cr3t-9f2c"


def make_task(task_id: str, **fields: object) -> Task:
    return Task.model_validate({"id": task_id, "className": "Demo", **fields})


@pytest.fixture
def schema(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh schema on the session's server, dropped afterwards."""
    name = "t" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def store(postgres_server: PostgresServer, schema: str) -> Iterator[PostgresTaskStore]:
    s = PostgresTaskStore(f"{postgres_server.url}?options=-csearch_path%3D{schema}")
    yield s
    s.close()


def sql(server: PostgresServer, schema: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of ``query`` run in ``schema`` on a connection of the test's own."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("SELECT set_config('search_path', %s, false)", [schema])
        return conn.execute(query, args or None).fetchall()


@pytest.fixture
def private_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test only, which it may kill and restart."""
    with running("postgres") as server:
        yield server


def checkpoint(server: PostgresServer) -> None:
    """Make committed writes survive a crash (the test servers run with synchronous_commit=off)."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


# ---- schema ----------------------------------------------------------------------------------
def test_first_use_creates_table_and_dispatcher_indexes(
    store: PostgresTaskStore, postgres_server: PostgresServer, schema: str
) -> None:
    # Given a store on an empty schema / When it is first used
    assert store.get("nothing") is None
    # Then the table and the indexes of the dispatcher's queries exist in that schema
    rows = sql(
        postgres_server,
        schema,
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'tasks'",
        schema,
    )
    defs = dict(rows)
    assert set(defs) == {"tasks_pkey", *INDEXES}
    assert "(lifecycle_status, priority DESC, create_date_time)" in defs["tasks_status_priority_created"]
    assert "(executor, lifecycle_status)" in defs["tasks_executor_status"]
    assert "(class_name)" in defs["tasks_class_name"]
    # And another store on the same schema reuses them
    other = PostgresTaskStore(store.url)
    assert other.list().total == 0
    other.close()


def test_stores_opening_an_empty_schema_at_once_all_succeed(postgres_server: PostgresServer, schema: str) -> None:
    # Given eight stores on one empty schema
    url = f"{postgres_server.url}?options=-csearch_path%3D{schema}"
    stores = [PostgresTaskStore(url) for _ in range(8)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def first_use(s: PostgresTaskStore) -> None:
        barrier.wait(timeout=10)
        try:
            s.list()
        except BaseException as exc:
            errors.append(exc)

    # When they all create the schema concurrently
    threads = [threading.Thread(target=first_use, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # Then none fails (creation is serialised)
    assert errors == []
    for s in stores:
        s.close()


# ---- document and columns --------------------------------------------------------------------
def test_attachments_are_queryable_as_jsonb(
    store: PostgresTaskStore, postgres_server: PostgresServer, schema: str
) -> None:
    # Given tasks with nested attachments
    store.create(make_task("cam1", attachments={"x": "rtsp://a", "fps": 25, "roi": [1, 2]}))
    store.create(make_task("cam2", attachments={"x": "rtsp://b", "fps": 5}))
    # When SQL looks into the document
    by_x = sql(postgres_server, schema, "SELECT id FROM tasks WHERE doc->'attachments'->>'x' = %s", "rtsp://b")
    fast = sql(postgres_server, schema, "SELECT id FROM tasks WHERE (doc->'attachments'->>'fps')::int > 10")
    kind = sql(postgres_server, schema, "SELECT jsonb_typeof(doc->'attachments'->'roi') FROM tasks WHERE id = 'cam1'")
    # Then attachments are real JSON, not a string
    assert (by_x, fast, kind) == ([("cam2",)], [("cam1",)], [("array",)])


def test_every_write_keeps_columns_and_document_in_sync(
    store: PostgresTaskStore, postgres_server: PostgresServer, schema: str
) -> None:
    # Given a task that is created, assigned, renamed and re-prioritised
    store.create(make_task("s", name="before", priority=2, createDateTime=1234, attachments={"a": 1}))
    store.assign("s", "e1", expect_epoch=0)
    store.modify("s", lambda t: {"name": "after", "priority": 8})
    # When the row is read column by column
    columns = "class_name, lifecycle_status, executor, mode, priority, create_date_time, version, name"
    (row,) = sql(postgres_server, schema, f"SELECT {columns}, doc FROM tasks WHERE id = 's'")
    *values, doc = row
    # Then every column equals the document's field, and the untouched fields are kept
    assert values == ["Demo", "Assigning", "e1", "Passive", 8, 1234, 3, "after"]
    fields = ("className", "lifecycleStatus", "executor", "mode", "priority", "createDateTime", "version", "name")
    assert values == [doc[f] for f in fields]
    assert (doc["attachments"], doc["epoch"]) == ({"a": 1}, 1)


def test_search_takes_text_literally(store: PostgresTaskStore) -> None:
    # Given ids and names containing LIKE wildcards
    store.create(make_task("a%b", name="50%_off"))
    store.create(make_task("axb", name="plain"))
    # When searching for the wildcard characters / Then only literal matches come back
    assert [t.id for t in store.list(TaskQuery(search="%")).items] == ["a%b"]
    assert [t.id for t in store.list(TaskQuery(search="_")).items] == ["a%b"]
    assert [t.id for t in store.list(TaskQuery(search="A")).items] == []  # case-sensitive, as SQLite


def test_factory_opens_postgres_urls(postgres_server: PostgresServer, schema: str) -> None:
    # Given a postgresql:// URL / When opened through the factory / Then it is a working PostgreSQL store
    s = open_store(f"{postgres_server.url}?options=-csearch_path%3D{schema}")
    assert isinstance(s, PostgresTaskStore)
    s.create(make_task("f"))
    assert s.require("f").version == 1
    s.close()


# ---- connections -----------------------------------------------------------------------------
def test_threads_each_use_their_own_connection_and_lose_no_update(store: PostgresTaskStore) -> None:
    # Given a counter task
    store.create(make_task("ctr", attachments={"counter": 0}))
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(25):
                store.modify("ctr", lambda t: {"attachments": {"counter": t.attachments["counter"] + 1}})
        except BaseException as exc:
            errors.append(exc)

    # When four threads of one process increment it through one store
    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # Then every increment landed once
    assert errors == []
    final = store.require("ctr")
    assert (final.attachments, final.version) == ({"counter": 100}, 101)


def test_store_reconnects_after_server_restart(private_server: PostgresServer) -> None:
    # Given a store that has written a task
    store = PostgresTaskStore(private_server.url)
    store.create(make_task("r", name="before"))
    checkpoint(private_server)
    # When the server crashes and comes back on the same port
    private_server.kill()
    private_server.start()
    # Then the first call fails on the dead connection, as "backend down"
    with pytest.raises(BackendUnavailable) as down:
        store.get("r")
    assert isinstance(down.value.__cause__, psycopg.OperationalError) and down.value.backend == "task store"
    # And the same store object works again from the next call on, reads and writes
    assert store.require("r").name == "before"
    assert store.modify("r", lambda t: {"name": "after"}).version == 2

    # When the server is down / Then calls fail fast with BackendUnavailable
    checkpoint(private_server)
    private_server.kill()
    started = time.monotonic()
    for _ in range(2):
        with pytest.raises(BackendUnavailable):
            store.get("r")
    assert time.monotonic() - started < 10
    # And once it is back, the next call succeeds
    private_server.start()
    assert store.require("r").name == "after"
    store.close()


# ---- secrets ---------------------------------------------------------------------------------
def _full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


def test_password_never_appears_when_the_server_is_unreachable() -> None:
    # Given a store whose URL carries a password, on a port where nothing listens
    store = PostgresTaskStore(f"postgresql://skalds:{SECRET}@127.0.0.1:{free_port()}/skalds")
    # When it is used / Then the error does not contain the password, nor does the store's repr
    with pytest.raises(BackendUnavailable) as caught:
        store.get("x")
    assert SECRET not in _full_text(caught.value)
    assert SECRET not in repr(store)
    assert "***" in repr(store)


def test_password_never_appears_when_the_server_refuses(postgres_server: PostgresServer) -> None:
    # Given a URL with a password naming a database that does not exist
    store = PostgresTaskStore(f"postgresql://postgres:{SECRET}@127.0.0.1:{postgres_server.port}/no_such_db")
    # When it is used / Then the server's refusal is reported without the password
    with pytest.raises(BackendUnavailable, match="no_such_db") as caught:
        store.get("x")
    assert SECRET not in _full_text(caught.value)


def test_password_never_appears_in_a_bad_url_error() -> None:
    # Given a URL that cannot be parsed / When a store is built / Then ConfigError hides the password
    with pytest.raises(ConfigError) as caught:
        PostgresTaskStore(f"postgresql://skalds:{SECRET}@[::1/skalds")
    assert SECRET not in _full_text(caught.value)
    assert "***" in str(caught.value)


def test_status_filters_use_bound_parameters(store: PostgresTaskStore) -> None:
    # Given a task / When filters carry SQL-looking text / Then they are compared as values
    store.create(make_task("q", executor="e1"))
    hostile = "e1' OR '1'='1"
    assert store.list(TaskQuery(executor=hostile)).total == 0
    assert store.list(TaskQuery(ids=("q'; DROP TABLE tasks; --",))).total == 0
    assert store.list(TaskQuery(statuses=(S.CREATED,))).total == 1
