"""Tasks a node holds back because their class is at its ``max_concurrent_tasks`` limit.

They stay Assigning (owned, visible) and start as running ones end: **highest priority first,
then oldest** (by creation time, then by arrival here) — the order the dispatcher uses. A heap
keeps picking the next one O(log n) for a burst of thousands; removals (a cancel, a pause, a task
moved elsewhere) are lazy: the id leaves the index at once and its heap entry is skipped later.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

from skalds.model.task import Task


class WaitingQueue:
    """The waiting tasks of one class."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._heap: list[tuple[int, int, int, str]] = []
        self._arrival = itertools.count()

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._tasks))

    def add(self, task: Task) -> bool:
        """Queue ``task``; False when it is already waiting."""
        if task.id in self._tasks:
            return False
        self._tasks[task.id] = task
        heapq.heappush(self._heap, (-task.priority, task.create_date_time, next(self._arrival), task.id))
        return True

    def pop(self) -> str | None:
        """The id of the next task to start (removed from the queue), or None when empty."""
        while self._heap:
            *_, task_id = heapq.heappop(self._heap)
            if self._tasks.pop(task_id, None) is not None:
                return task_id
        return None

    def discard(self, task_id: str) -> bool:
        found = self._tasks.pop(task_id, None) is not None
        if not self._tasks:
            self._heap.clear()
        return found


__all__ = ["WaitingQueue"]
