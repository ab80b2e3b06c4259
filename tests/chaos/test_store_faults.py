"""Chaos: the task store restarts or stays down while tasks end — every end is kept and written,
no task runs again."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.conftest import Chaos, hold, report
from tests.support.procs import Proc, wait_for


@pytest.fixture
def on_own_postgres(
    tmp_path: Path, home: Path, procs: list[Proc], chaos_postgres, kafka_server, redis_server
) -> Iterator[Chaos]:
    urls = {
        "SKALDS_STORE_URL": chaos_postgres.url,
        "SKALDS_BUS_URL": f"{kafka_server.url}?session_timeout_ms=2000",
        "SKALDS_CACHE_URL": redis_server.url,
    }
    chaos = Chaos(tmp_path, home, procs, urls)
    yield chaos
    chaos.close()


def _start(chaos: Chaos, node: str, prefix: str, n: int) -> list[str]:
    ids = [f"{prefix}{i}-{uuid.uuid4().hex[:4]}" for i in range(n)]
    for i, t in enumerate(ids):
        chaos.create(t, executor=node, duration=0.6 + 0.1 * i)
    wait_for(lambda: all(chaos.events(t, "main") for t in ids), timeout=30, what=f"{prefix} tasks running")
    return ids


def test_store_restart_and_outage_lose_no_end_and_run_nothing_twice(on_own_postgres: Chaos, chaos_postgres) -> None:
    chaos = on_own_postgres
    node_id = f"n-{chaos.tag}"
    node = chaos.node(node_id)

    # Given tasks that end over the next seconds, when PostgreSQL restarts at once (a fast restart)
    quick = _start(chaos, node_id, "q", 12)
    chaos_postgres.kill("fast")
    chaos_postgres.start()
    restarted = time.monotonic()
    # Then every one ends exactly once and its end reaches the store
    wait_for(lambda: chaos.ended(quick), timeout=30, what="tasks ended")
    wait_for(lambda: chaos.all_status(quick, "Finished"), timeout=30, what="ends written")
    report("PostgreSQL restart: every end stored", time.monotonic() - restarted, tasks=len(quick))

    # When tasks end while PostgreSQL stays down for 4 s
    held = _start(chaos, node_id, "h", 12)
    chaos_postgres.kill()
    hold(4.0)
    chaos_postgres.start()
    back = time.monotonic()
    # Then their ends were kept and are written once it is back; none ran again
    wait_for(lambda: chaos.ended(held), timeout=30, what="tasks ended")
    wait_for(lambda: chaos.all_status(held, "Finished"), timeout=30, what="kept ends written")
    report("PostgreSQL down 4 s: every kept end stored", time.monotonic() - back, tasks=len(held))
    assert node.popen.poll() is None
    # And a task assigned after recovery runs
    late = _start(chaos, node_id, "late", 1)
    wait_for(lambda: chaos.ended(late), timeout=20, what="task after recovery ended")
    # (it ran for longer than a reconcile interval after the last kept end was written: a re-run
    # of any task would have started by now)
    everything = [*quick, *held, *late]
    chaos.assert_ran_once(everything)
    chaos.assert_never_two_at_once(everything)
