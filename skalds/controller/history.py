"""Recent task heartbeats, sampled by the controller and kept in its memory.

The cache holds only a task's current heartbeat lease; the API's ``heartbeatHistory`` needs the
last few values over time. This slice keeps them in the controller process (bounded per task and
in the number of tasks), filled by a periodic sampler. A restart forgets them, which is acceptable
for a diagnostic view; a shared history (a capped cache list) can replace this later.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Any


class HeartbeatHistory:
    """Last ``size`` samples ``{"timestamp": ms, "heartbeat": value}`` per task, thread-safe."""

    def __init__(self, size: int = 60, max_tasks: int = 10_000) -> None:
        self.size = size
        self.max_tasks = max_tasks
        self._samples: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, task_id: str, timestamp_ms: int, heartbeat: int | None) -> None:
        with self._lock:
            samples = self._samples.get(task_id)
            if samples is None:
                samples = self._samples[task_id] = deque(maxlen=self.size)
                while len(self._samples) > self.max_tasks:
                    self._samples.popitem(last=False)  # the least recently sampled task
            else:
                self._samples.move_to_end(task_id)
            samples.append({"timestamp": timestamp_ms, "heartbeat": heartbeat})

    def get(self, task_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._samples.get(task_id, ()))

    def forget(self, task_id: str) -> None:
        with self._lock:
            self._samples.pop(task_id, None)
