"""The floor of a process per task: CPU of one fork + exit through the skald's fork server.

``python bench/fork_floor.py [--n 1000]``

A skald runs every task in its own process, forked by its fork server (``skalds.worker.forkserver``)
from a parent that has already imported the worker's libraries. This measures just that part: the
fork server forks ``n`` children one after another, each exits at once (no worker code at all), and
the CPU of the fork server and its children together is divided by ``n``. Whatever else a task
costs (its record, its status writes, the worker's own start) comes on top, so ``n`` short tasks
can never take less CPU than ``n`` × this figure. The parent imports what a node skald imports
(skalds with its backends, pydantic, the benchmark worker), so its memory — which is what ``fork()``
copies page tables for — is a node's.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_workers  # noqa: F401 - what a node skald has imported when it forks

import skalds.node.agent  # noqa: F401
from skalds.worker.forkserver import ForkServer


def child_main(spec: dict[str, Any], channel: socket.socket) -> int:
    return 0


def bare_fork_exit(n: int) -> float:
    """CPU seconds (this process + children) of ``n`` bare ``fork()`` + ``_exit(0)`` + ``waitpid``."""
    before_self = resource.getrusage(resource.RUSAGE_SELF)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(n):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os._exit(0)
        os.waitpid(pid, 0)
    total = 0.0
    for who, before in ((resource.RUSAGE_SELF, before_self), (resource.RUSAGE_CHILDREN, before_children)):
        after = resource.getrusage(who)
        total += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return total


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000)
    args = p.parse_args()
    server = ForkServer(child_main)
    server.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    walls: list[float] = []
    t0 = time.perf_counter()
    for _ in range(args.n):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        start = time.perf_counter()
        _pid, pidfd = server.spawn({}, theirs)
        theirs.close()
        exited = False
        while not exited:  # until the fork server reports the child reaped
            exited = bool(server.read_exits())
            if not exited:
                time.sleep(0.0002)
        walls.append(time.perf_counter() - start)
        os.close(pidfd)
        ours.close()
    elapsed = time.perf_counter() - t0
    server.stop()  # reaps the fork server: its CPU and its children's land in RUSAGE_CHILDREN
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"parent RSS {rss_mib():.0f} MiB; {args.n} fork + exit through the fork server, one after another")
    print(f"CPU of fork server + children: {cpu:.2f} s = {cpu / args.n * 1000:.2f} ms per task")
    print(f"spawn → reaped: p50 {statistics.median(walls) * 1000:.2f} ms; all {elapsed:.2f} s")
    bare = bare_fork_exit(args.n)
    print(f"for comparison, a bare fork() + _exit() + waitpid() of this process: {bare / args.n * 1000:.2f} ms CPU")
    cores = os.cpu_count() or 1
    print(f"so {args.n} tasks need at least {cpu:.2f} CPU-s: ≥ {cpu / cores:.2f} s on {cores} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
