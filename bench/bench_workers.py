"""A node skald running the benchmark worker: ``python bench/bench_workers.py <skald-id>``.

Backends come from the environment (``SKALDS_HOME`` or ``SKALDS_*_URL``), as for any skald.

``BenchWorker`` reports to the benchmark over a unix datagram socket (path in its ``sock``
attachment). Each report is one JSON datagram ``{"k": kind, "task": id, "t": time.time(), "pid": ...}``
sent the instant the hook starts:

- ``init``: ``initialize`` ran (in the new worker process, before its lifecycle starts), with the
  ``seq``/``via`` of the last update its starting attachments already hold (-1 / "" for none);
- ``main``: the @run_main_handler started (``hold`` false: it returns at once, the task finishes;
  ``hold`` true: it sleeps in a loop until cancelled);
- ``update``: the @update_event_handler received an update (with the update's ``seq``, ``via`` and
  ``sentAt``);
- ``release``: the @release_handler ran.

With ``BENCH_PARENT_PID`` set, the skald gets SIGTERM (a graceful stop) when that process dies, so
a benchmark killed outright leaves no skald behind (its fork server and workers follow the skald).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys
import time

from pydantic import BaseModel, ConfigDict

from skalds import Skalds
from skalds.config.skald_config import SkaldConfig
from skalds.worker.baseclass import BaseTaskWorker, release_handler, run_main_handler, update_event_handler

PR_SET_PDEATHSIG = 1


class BenchModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    sock: str
    hold: bool = False
    sentAt: float = 0.0
    seq: int = -1
    via: str = ""


class BenchWorker(BaseTaskWorker[BenchModel]):
    def initialize(self, data: BenchModel) -> None:
        self.hold = data.hold
        self.sock_path = data.sock
        self.out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # Blocking, bounded: the receiver's queue holds only net.unix.max_dgram_qlen (often 10)
        # datagrams, and a burst of reports must wait for room rather than be dropped.
        self.out.settimeout(2.0)
        # seq/via: the last update already in the attachments the worker started with (-1: none)
        self.emit("init", time.time(), seq=data.seq, via=data.via)

    def emit(self, kind: str, t: float, **extra: object) -> None:
        message = {"k": kind, "task": self.task_id, "t": t, "pid": os.getpid(), **extra}
        try:
            self.out.sendto(json.dumps(message).encode(), self.sock_path)
        except OSError:
            pass  # the benchmark is gone or stuck: it will time out and say so

    @run_main_handler
    def main(self) -> None:
        self.emit("main", time.time())
        while self.hold:
            time.sleep(1.0)

    @update_event_handler
    def on_update(self, data: BenchModel) -> None:
        t = time.time()
        self.emit("update", t, seq=data.seq, via=data.via, sentAt=data.sentAt)

    @release_handler
    def release(self) -> None:
        self.emit("release", time.time())


class BenchReusedWorker(BenchWorker):
    """BenchWorker run by a pool, as Celery's prefork: one at a time per node skald
    (``max_concurrent_tasks``; two nodes make two worker processes, as ``celery worker
    --concurrency 2``), in a process that runs task after task (``max_tasks_per_process``)
    instead of a fresh fork per task."""

    max_tasks_per_process = 100_000
    max_concurrent_tasks = 1


def _die_with_parent() -> None:
    parent = os.environ.get("BENCH_PARENT_PID")
    if not parent:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the benchmark died before prctl took effect
        sys.exit(1)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/bench_workers.py <skald-id>")
    _die_with_parent()
    app = Skalds(SkaldConfig(skald_id=sys.argv[1], skald_mode="node"))
    app.register_task_worker(BenchWorker)
    app.register_task_worker(BenchReusedWorker)
    app.run()


if __name__ == "__main__":
    main()
