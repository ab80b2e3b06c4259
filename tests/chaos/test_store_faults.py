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


def test_an_edge_started_while_the_store_is_down_records_each_end_and_runs_nothing_again(
    on_own_postgres: Chaos, chaos_postgres
) -> None:
    chaos = on_own_postgres
    oneshot, done, late = f"os-{chaos.tag}", f"ok-{chaos.tag}", f"late-{chaos.tag}"
    tasks = chaos.tmp / "tasks.yml"
    tasks.write_text(
        "TaskWorkers:\n"
        f"  {oneshot}: {{className: Recorder, attachments: {{duration: 0.1, fail: true}}}}\n"
        f"  {done}: {{className: Recorder, attachments: {{duration: 0.1, returns: {{n: 1}}}}}}\n"
        # ends 7 s after the edge starts: past the 5 s in which an edge does not start a task that
        # just ended, plus a reconcile pass — a re-run of the others would have begun by then
        f"  {late}: {{className: Recorder, attachments: {{duration: 7.0}}}}\n"
    )
    # Given PostgreSQL is down when an edge starts: its tasks start at once all the same
    chaos_postgres.kill()
    edge = chaos.edge(f"e-{chaos.tag}", tasks)
    # and two of them end before the store holds any record of them
    wait_for(lambda: chaos.ended([done]) and chaos.events(oneshot, "release"), timeout=20, what="two tasks ended")
    edge.wait_output(rf"task {oneshot}: ended Failed while the task store could not take the write", timeout=10)
    # When PostgreSQL is back
    chaos_postgres.start()
    # Then each is recorded with its end, not as a task to start
    edge.wait_output(rf"task {oneshot}: recorded with its end \(Failed\) now that the store is back", timeout=20)
    edge.wait_output(rf"task {done}: recorded with its end \(Finished\) now that the store is back", timeout=20)
    stored = chaos.client.get(oneshot)
    assert stored is not None and stored.lifecycle_status.value == "Failed"
    assert "boom from main" in (stored.exception or "")
    finished = chaos.client.get(done)
    assert finished is not None and finished.lifecycle_status.value == "Finished" and finished.result == {"n": 1}
    # and neither ran again while the edge kept running
    wait_for(lambda: chaos.ended([late]), timeout=20, what="the long task ended")
    assert len(chaos.events(oneshot, "main")) == 1 and len(chaos.events(done, "main")) == 1
    wait_for(lambda: chaos.status(late) == "Finished", timeout=10, what="the long task recorded Finished")
