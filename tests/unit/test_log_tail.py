"""The log tail's parts on their own: the worker's buffer, its channel messages, the link sending
them, and the cache list's writer and reader (docs/wire-formats.md, log lines)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from skalds.backends.cache.state import TASK_LOG_MAX_LEN, StateView, task_logs_key
from skalds.backends.factory import open_cache
from skalds.utils.logging import logger, register_secret
from skalds.worker.link import ChannelLink
from skalds.worker.logtail import BATCH_BYTES, LogTail, encode_batches, parse_lines
from tests.support.procs import wait_for


class _Worker:
    def handle_update_message(self, message: object) -> bool:
        return True


@pytest.fixture
def tail():
    t = LogTail(capacity=50).install("DEBUG")
    yield t
    t.uninstall()


@pytest.fixture
def view(tmp_path: Path):
    cache = open_cache(f"sqlite:///{tmp_path / 'cache.db'}")
    yield StateView(cache, 5.0)
    cache.close()


def test_lines_are_numbered_masked_and_cut(tail):
    # Given a registered secret
    register_secret("tail-s3cret-value")

    # When the process logs, including the secret, a URL password, a long line and an exception
    logger.info("first")
    logger.warning("using tail-s3cret-value and redis://user:pw12345@host:6379/0")
    logger.info("x" * 5000)
    try:
        raise ValueError("bad tail-s3cret-value")
    except ValueError as exc:
        logger.opt(exception=exc).error("failed")
    lines = tail.take(0)

    # Then each line has n 1, 2, …, a timestamp, the level, and the text masked and cut
    assert [line[0] for line in lines] == [1, 2, 3, 4]
    assert [line[2] for line in lines] == ["INFO", "WARNING", "INFO", "ERROR"]
    assert abs(lines[0][1] - time.time() * 1000) < 5000
    assert lines[1][3] == "using *** and redis://user:***@host:6379/0"
    assert len(lines[2][3]) == 1000 and lines[2][3].endswith("…")
    assert lines[3][3] == "failed\nValueError: bad ***"
    assert all("s3cret" not in line[3] and "pw12345" not in line[3] for line in lines)
    # And numbering continues after a take
    logger.info("next")
    assert tail.take(0)[0][0] == 5


def test_a_full_buffer_drops_the_oldest_and_says_how_many(tail):
    # When 120 lines are logged into a buffer of 50
    for i in range(120):
        logger.info(f"line {i}")
    lines = tail.take(12345)

    # Then the newest 49 are kept, and a last WARNING line (with the next n) counts the 71 dropped
    assert len(lines) == 50
    assert [line[3] for line in lines[:2]] == ["line 71", "line 72"]
    assert lines[-2][3] == "line 119"
    assert lines[-1][0] == 121 and lines[-1][2] == "WARNING" and lines[-1][1] == 12345
    assert lines[-1][3].startswith("71 log lines dropped")
    assert tail.dropped_total == 71
    assert not tail


def test_lines_given_back_keep_their_place_and_order(tail):
    for i in range(3):
        logger.info(f"a{i}")
    taken = tail.take(0)
    logger.info("b0")
    tail.give_back(taken)
    assert [line[3] for line in tail.take(0)] == ["a0", "a1", "a2", "b0"]


def test_messages_stay_under_the_batch_size_and_round_trip():
    # Given 200 lines of 1,000 characters, some of them 4-byte UTF-8
    lines = [(i, 1, "INFO", ("𝄞" if i % 2 else "y") * 1000) for i in range(1, 201)]

    # When they are encoded
    batches = encode_batches(lines)

    # Then each message is under BATCH_BYTES and they carry every line once, in order
    assert all(len(data) <= BATCH_BYTES for data, _ in batches)
    decoded = [line for data, _ in batches for line in parse_lines(json.loads(data))]
    assert [tuple(line) for line in decoded] == lines
    assert sum(count for _, count in batches) == 200


def test_the_link_sends_lines_after_a_heartbeat_and_never_waits_for_a_silent_skald(tail):
    # Given a link with a tail, whose skald end is not read
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = ChannelLink(theirs, heartbeat_interval=0.02, tail=tail)
    link.start(_Worker())  # type: ignore[arg-type]
    try:
        # When a burst of lines is logged while nobody reads the channel
        started = time.monotonic()
        for i in range(5000):
            logger.info(f"burst {i}")
        burst = time.monotonic() - started
        wait_for(lambda: tail.dropped_total > 0, timeout=5, what="lines dropped")
        # Then logging did not wait on the channel (the buffer took it) and lines were dropped
        assert burst < 5.0

        # When the skald reads again
        received: list[list] = []

        def read() -> bool:
            ours.setblocking(False)
            try:
                while True:
                    message = json.loads(ours.recv(1 << 20))
                    if message["t"] == "logs":
                        received.extend(parse_lines(message))
            except BlockingIOError:
                pass
            return any(line[3] == "burst 4999" for line in received)

        wait_for(read, timeout=5, what="the last burst line")
        # Then the lines came in order, the newest kept, with a line about those dropped
        ns = [line[0] for line in received]
        assert ns == sorted(ns) and len(set(ns)) == len(ns)
        assert any("log lines dropped" in line[3] for line in received)
    finally:
        link.stop()
        ours.close()
        theirs.close()


def test_the_final_flush_waits_only_briefly_for_room(tail):
    # Given a channel that is full (its skald does not read)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setblocking(False)
    try:
        while True:
            theirs.send(b"x" * 1000)
    except BlockingIOError:
        pass
    link = ChannelLink(theirs, heartbeat_interval=1.0, tail=tail)
    logger.info("last words")

    # When the worker flushes on exit, it gives up after the timeout; the line stays buffered
    started = time.monotonic()
    link.flush_logs(timeout=0.2)
    assert 0.15 < time.monotonic() - started < 1.0
    assert tail

    # And once there is room, the flush sends it
    ours.setblocking(False)
    try:
        while ours.recv(4096):
            pass
    except BlockingIOError:
        pass
    link.flush_logs(timeout=1.0)
    assert not tail
    ours.close()
    theirs.close()


def test_seq_continues_across_worker_processes_and_the_reader_pages(view):
    # Given a first worker process's lines (n 1..3), written with no base known yet
    base = view.append_task_logs("t1", [[n, 1000 + n, "INFO", f"a{n}"] for n in (1, 2, 3)], None)
    assert base == 0
    # When a re-run (a new process, n from 1 again) writes its lines
    base2 = view.append_task_logs("t1", [[n, 2000 + n, "INFO", f"b{n}"] for n in (1, 2)], None)

    # Then its seq continue after the first run's
    assert base2 == 3
    lines, last = view.task_logs("t1")
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5] and last == 5
    assert lines[3] == {"seq": 4, "timestamp": 2001, "level": "INFO", "message": "b1"}
    # And the reader gives what is after a seq, the newest ones when limited
    assert [line["message"] for line in view.task_logs("t1", after=3)[0]] == ["b1", "b2"]
    assert [line["seq"] for line in view.task_logs("t1", limit=2)[0]] == [4, 5]
    assert view.task_logs("t1", after=5) == ([], 5)
    assert view.task_logs("t1", limit=0) == ([], 5)
    # And the route's shape is one call
    page = view.task_logs_page("t1", after=4, limit=10)
    assert page == {"taskId": "t1", "lines": [lines[4]], "lastSeq": 5}
    # And an unknown task has no lines
    assert view.task_logs("nope") == ([], 0)
    assert view.task_logs("nope", after=7) == ([], 7)


def test_the_list_keeps_the_last_500_and_a_reset_list_is_read_from_the_start(view):
    view.append_task_logs("t2", [[n, n, "INFO", str(n)] for n in range(1, 701)], 0)
    items = view.cache.lrange(task_logs_key("t2"))
    assert len(items) == TASK_LOG_MAX_LEN
    assert json.loads(items[0])["seq"] == 201
    # When the list started again (expired) below a reader's cursor, it reads from the start
    view.cache.delete(task_logs_key("t2"))
    view.append_task_logs("t2", [[1, 1, "INFO", "again"]], None)
    lines, last = view.task_logs("t2", after=700)
    assert [line["message"] for line in lines] == ["again"] and last == 1
