"""The key layout of Skalds 0.3.x, written on any :class:`StateCache` (see docs/wire-formats.md).

==================================  =========================================================
``skalds:hash``                     skald id → last activity (ms)
``skalds:mode:hash``                skald id → mode (node / edge)
``skalds:{id}:heartbeat``           lease: counter, TTL ``key_ttl``
``skalds:{id}:allow-task-class-name``  list of class names
``skalds:{id}:all-task``            list of the task ids it runs
``skalds:{id}:task-schemas``        JSON: class name → attachments JSON schema
``skalds:{id}:cordoned``            JSON ``{"drain": bool, "since": ms}``: no new tasks (no TTL)
``skalds:{id}:placement``           JSON ``{"labels", "resources", "classes"}``: what it offers for placement
``task:{id}:heartbeat``             lease: 0–199 alive; 200 finished, −1 failed, −2 cancelled
``task:{id}:has-error``             last error message (e.g. a rejected update)
``task:{id}:exception``             last exception text
``task:{id}:logs``                  list: the task's recent log lines (last 500, TTL a day)
``task:{id}:usage``                 JSON ``{"cpuPercent", "memoryBytes"}`` of its worker process, lease TTL
``task:{id}:placement``             why the dispatcher could place this Created task on no node (TTL an hour)
==================================  =========================================================

**Task log lines.** Each item of ``task:{id}:logs`` is compact JSON
``{"seq":…,"timestamp":…,"level":…,"message":…}`` (timestamp in ms, message masked and cut to
~1,000 chars), oldest first. ``seq`` = *base* + the worker process's own line counter (1, 2, …),
where *base* is the last seq already in the list when its skald first writes for that worker
process (0 for a new list). So seq keeps increasing across re-runs of a task — retry, failover to
another machine, restart — because every copy appends to the same list and starts after its last
line; only when the list has expired (a day after its last line) does it start again from 1, which
:meth:`StateView.task_logs` detects (a ``lastSeq`` below ``after``) and answers as if ``after``
were not given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from skalds.backends.cache.base import StateCache
from skalds.model.task import now_ms

SKALDS_HASH = "skalds:hash"
SKALDS_MODE_HASH = "skalds:mode:hash"
HEARTBEAT_FINISHED = 200
HEARTBEAT_FAILED = -1
HEARTBEAT_CANCELLED = -2
#: How long a skald's last-activity time in ``skalds:hash`` outlives its last heartbeat. Much
#: longer than the lease on purpose: the monitor counts a dead skald's offline time from it, so it
#: must still be there when the lease has gone (the monitor prunes older fields itself).
SKALD_ACTIVITY_TTL = 3600.0
#: How long the final heartbeat value and errors of an ended task stay readable.
ENDED_TASK_TTL = 3600.0
#: The recent log lines kept per task, and how long they stay after the last one.
TASK_LOG_MAX_LEN = 500
TASK_LOG_TTL = 86400.0

#: One log line as the worker ships it: ``[n, timestamp ms, level, message]``.
LogLine = Sequence[Any]


def skald_heartbeat_key(skald_id: str) -> str:
    return f"skalds:{skald_id}:heartbeat"


def skald_classes_key(skald_id: str) -> str:
    return f"skalds:{skald_id}:allow-task-class-name"


def skald_tasks_key(skald_id: str) -> str:
    return f"skalds:{skald_id}:all-task"


def skald_schemas_key(skald_id: str) -> str:
    return f"skalds:{skald_id}:task-schemas"


def skald_placement_key(skald_id: str) -> str:
    return f"skalds:{skald_id}:placement"


def skald_cordon_key(skald_id: str) -> str:
    return f"skalds:{skald_id}:cordoned"


def task_heartbeat_key(task_id: str) -> str:
    return f"task:{task_id}:heartbeat"


def task_error_key(task_id: str) -> str:
    return f"task:{task_id}:has-error"


def task_exception_key(task_id: str) -> str:
    return f"task:{task_id}:exception"


def task_logs_key(task_id: str) -> str:
    return f"task:{task_id}:logs"


def task_usage_key(task_id: str) -> str:
    return f"task:{task_id}:usage"


def task_placement_key(task_id: str) -> str:
    return f"task:{task_id}:placement"


def log_item(seq: int, timestamp: int, level: str, message: str) -> str:
    """One item of ``task:{id}:logs`` (compact JSON)."""
    return json.dumps(
        {"seq": seq, "timestamp": timestamp, "level": level, "message": message},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _parse_log_item(item: str) -> dict[str, Any] | None:
    try:
        line = json.loads(item)
    except ValueError:
        return None
    if not isinstance(line, dict) or not isinstance(line.get("seq"), int):
        return None
    return line


class StateView:
    """Domain writes and reads over a :class:`StateCache`."""

    def __init__(self, cache: StateCache, key_ttl: float) -> None:
        self.cache = cache
        self.key_ttl = key_ttl

    # ---- skalds --------------------------------------------------------------------------
    def register_skald(
        self,
        skald_id: str,
        mode: str,
        classes: list[str],
        schemas: dict[str, Any],
        placement: dict[str, Any] | None = None,
    ) -> None:
        """Advertise a skald; ``placement`` is its ``{"labels", "resources", "classes"}`` document."""
        self.cache.hset(SKALDS_MODE_HASH, {skald_id: mode})
        self.cache.list_replace(skald_classes_key(skald_id), classes, ttl=self.key_ttl)
        self.cache.set(skald_schemas_key(skald_id), json.dumps(schemas), ttl=self.key_ttl)
        if placement is not None:
            self.cache.set(skald_placement_key(skald_id), json.dumps(placement), ttl=self.key_ttl)

    def skald_heartbeat(self, skald_id: str, beat: int, task_ids: list[str], classes: list[str]) -> None:
        ttl = self.key_ttl
        self.cache.hset(SKALDS_HASH, {skald_id: str(now_ms())}, field_ttl=max(ttl, SKALD_ACTIVITY_TTL))
        self.cache.set(skald_heartbeat_key(skald_id), str(beat), ttl=ttl)
        self.cache.list_replace(skald_tasks_key(skald_id), task_ids, ttl=ttl)
        self.cache.expire(skald_classes_key(skald_id), ttl)
        self.cache.expire(skald_schemas_key(skald_id), ttl)
        self.cache.expire(skald_placement_key(skald_id), ttl)

    def unregister_skald(self, skald_id: str) -> None:
        self.cache.hdel(SKALDS_HASH, skald_id)
        self.cache.hdel(SKALDS_MODE_HASH, skald_id)
        self.cache.delete(
            skald_heartbeat_key(skald_id),
            skald_classes_key(skald_id),
            skald_tasks_key(skald_id),
            skald_schemas_key(skald_id),
            skald_placement_key(skald_id),
        )

    def set_cordon(self, skald_id: str, cordon: dict[str, Any] | None) -> None:
        """Cordon a skald (``{"drain": bool, "since": ms}``; kept without TTL, so it outlives
        controller and skald restarts) or, with None, make it schedulable again."""
        if cordon is None:
            self.cache.delete(skald_cordon_key(skald_id))
        else:
            self.cache.set(skald_cordon_key(skald_id), json.dumps(cordon))

    def skald_alive(self, skald_id: str) -> bool:
        return self.cache.get(skald_heartbeat_key(skald_id)) is not None

    # ---- tasks ---------------------------------------------------------------------------
    def task_heartbeats(self, beats: dict[str, int], lease: float) -> None:
        self.cache.pipeline_set({task_heartbeat_key(t): (str(v), lease) for t, v in beats.items()})

    def task_started(self, task_id: str) -> None:
        self.cache.delete(task_error_key(task_id), task_exception_key(task_id))

    def task_ended(self, task_id: str, value: int, exception: str | None = None) -> None:
        items: dict[str, tuple[str, float | None]] = {task_heartbeat_key(task_id): (str(value), ENDED_TASK_TTL)}
        if exception:
            items[task_exception_key(task_id)] = (exception, ENDED_TASK_TTL)
            items[task_error_key(task_id)] = (exception.strip().splitlines()[-1][:500], ENDED_TASK_TTL)
        self.cache.pipeline_set(items)

    def task_forget(self, task_id: str, only_if: str | None = None) -> None:
        """Drop the task's heartbeat lease (its copy here stopped; another owner may start).

        With ``only_if``, only while the lease still holds that value (our last beat), so a new
        owner's lease is left alone; on a cache without compare-and-expire it stays to expire.
        """
        if only_if is None:
            self.cache.delete(task_heartbeat_key(task_id))
            return
        try:
            self.cache.compare_and_expire(task_heartbeat_key(task_id), only_if, 0)
        except NotImplementedError:
            pass

    def task_error(self, task_id: str, message: str) -> None:
        self.cache.set(task_error_key(task_id), message, ttl=ENDED_TASK_TTL)

    def task_usage(self, usage: dict[str, dict[str, Any]], lease: float) -> None:
        """The CPU and memory of running tasks' worker processes, as leases (gone with the task)."""
        self.cache.pipeline_set({task_usage_key(t): (json.dumps(u), lease) for t, u in usage.items()})

    def task_placement(self, reasons: dict[str, str], cleared: Sequence[str] = ()) -> None:
        """Record why each of ``reasons``'s Created tasks fits on no node now; forget it for ``cleared``."""
        if reasons:
            self.cache.pipeline_set({task_placement_key(t): (why, ENDED_TASK_TTL) for t, why in reasons.items()})
        if cleared:
            self.cache.delete(*[task_placement_key(t) for t in cleared])

    def task_placements(self, task_ids: Sequence[str]) -> list[str | None]:
        """Why each of these Created tasks fits on no node (None: no reason recorded), in one read."""
        return self.cache.get_many([task_placement_key(i) for i in task_ids]) if task_ids else []

    def task_state(self, task_id: str) -> dict[str, Any]:
        """``{"heartbeat", "error", "exception", "usage"}`` of a task (None where the cache has
        nothing)."""
        return self.task_states([task_id])[0]

    def task_states(self, task_ids: Sequence[str]) -> list[dict[str, Any]]:
        """:meth:`task_state` of many tasks, in order, in one batched cache read."""
        per_task = (task_heartbeat_key, task_error_key, task_exception_key, task_usage_key)
        keys = [key(i) for i in task_ids for key in per_task]
        values = self.cache.get_many(keys)
        states = []
        for n in range(len(task_ids)):
            beat, error, exception, usage = values[4 * n : 4 * n + 4]
            heartbeat = int(beat) if beat is not None and beat.lstrip("-").isdigit() else None
            states.append({"heartbeat": heartbeat, "error": error, "exception": exception, "usage": _usage(usage)})
        return states

    # ---- task log lines (see the module docstring) ----------------------------------------
    def last_log_seq(self, task_id: str) -> int:
        """The seq of the newest line in the task's list (0 when there is none)."""
        items = self.cache.lrange(task_logs_key(task_id), -1, -1)
        line = _parse_log_item(items[0]) if items else None
        return int(line["seq"]) if line is not None else 0

    def append_task_logs(self, task_id: str, lines: Sequence[LogLine], base: int | None) -> int:
        """Append a worker's ``[n, timestamp, level, message]`` lines as seq ``base + n``.

        ``base`` None: read it first (:meth:`last_log_seq`). Returns the base used, which the
        caller keeps for that worker process's next lines. Malformed lines are skipped.
        """
        if base is None:
            base = self.last_log_seq(task_id)
        items: list[str] = []
        for line in lines:
            try:
                n, timestamp, level, message = line
                items.append(log_item(base + int(n), int(timestamp), str(level), str(message)))
            except (TypeError, ValueError):
                continue
        self.cache.extend_list(task_logs_key(task_id), items, max_len=TASK_LOG_MAX_LEN, ttl=TASK_LOG_TTL)
        return base

    def task_logs(self, task_id: str, after: int | None = None, limit: int = 200) -> tuple[list[dict[str, Any]], int]:
        """The task's log lines with seq > ``after``, oldest first: at most ``limit`` (the newest
        ones when there are more), and the last seq (``after``, or 0, when there are no lines).

        Poll with ``after`` = the last seq you got. A last seq below ``after`` means the list
        started again (it expired); the lines are then returned as if ``after`` were None.
        """
        limit = max(0, min(int(limit), TASK_LOG_MAX_LEN))
        items = self.cache.lrange(task_logs_key(task_id), -max(limit, 1), -1)
        parsed = [line for line in map(_parse_log_item, items) if line is not None]
        last = max((int(line["seq"]) for line in parsed), default=None)
        if last is None:
            return [], after if after is not None else 0
        if after is not None and last < after:
            after = None
        lines = [line for line in parsed if after is None or int(line["seq"]) > after]
        return (lines[-limit:] if limit else []), last

    def task_logs_page(self, task_id: str, after: int | None = None, limit: int = 200) -> dict[str, Any]:
        """:meth:`task_logs` in the shape of ``GET /api/tasks/{id}/logs``:
        ``{"taskId", "lines": [{"seq", "timestamp", "level", "message"}], "lastSeq"}``."""
        lines, last = self.task_logs(task_id, after, limit)
        return {"taskId": task_id, "lines": lines, "lastSeq": last}


def parse_cordon(raw: str | None) -> dict[str, Any] | None:
    """A ``skalds:{id}:cordoned`` value as ``{"drain": bool, "since": ms or None}``; None when
    absent. Any other value present still cordons (an operator's ``SET`` by hand counts)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return {"drain": False, "since": None}
    since = value.get("since")
    return {"drain": value.get("drain") is True, "since": since if isinstance(since, int) else None}


def _usage(raw: str | None) -> dict[str, Any] | None:
    """A ``task:{id}:usage`` value, or None when absent or not what a skald writes."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
