"""CPU and memory of worker processes, read from ``/proc`` (Linux), for the task heartbeats.

Each sample reads ``/proc/<pid>/stat`` (user + system CPU time, in clock ticks) and
``/proc/<pid>/statm`` (resident pages): a few microseconds per process, no extra dependency. CPU
is a rate — the CPU time used since the previous sample of the same process divided by the wall
time between them, in percent of one core (so 200 means two cores busy) — and is None at a
process's first sample. Memory is the resident set size in bytes. A process that has gone (or a
system without ``/proc``) is simply left out.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class Usage:
    """One process's resource use at one sample."""

    cpu_percent: float | None
    memory_bytes: int

    def to_json(self) -> dict[str, float | int | None]:
        cpu = None if self.cpu_percent is None else round(self.cpu_percent, 1)
        return {"cpuPercent": cpu, "memoryBytes": self.memory_bytes}


class UsageSampler:
    """Samples processes by pid, remembering each one's previous CPU time for the rate."""

    def __init__(self) -> None:
        self._previous: dict[int, tuple[float, float]] = {}  # pid → (cpu seconds, monotonic time)

    def sample(self, pids: list[int]) -> dict[int, Usage]:
        now = time.monotonic()
        found: dict[int, Usage] = {}
        seen: dict[int, tuple[float, float]] = {}
        for pid in pids:
            read = _read(pid)
            if read is None:
                continue
            cpu_seconds, rss = read
            previous = self._previous.get(pid)
            percent = None
            if previous is not None and now > previous[1]:
                percent = max(0.0, (cpu_seconds - previous[0]) / (now - previous[1]) * 100.0)
            seen[pid] = (cpu_seconds, now)
            found[pid] = Usage(percent, rss)
        self._previous = seen  # processes not asked for any more are forgotten
        return found


def _read(pid: int) -> tuple[float, int] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        with open(f"/proc/{pid}/statm", "rb") as fh:
            statm = fh.read().split()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count from its end.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of the whole line
        rss_pages = int(statm[1])
    except (IndexError, ValueError):
        return None
    return (utime + stime) / _TICKS, rss_pages * _PAGE


__all__ = ["Usage", "UsageSampler"]
