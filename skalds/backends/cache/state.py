"""The key layout of Skalds 0.3.x (SPEC §4), written on any :class:`StateCache`.

==================================  =========================================================
``skalds:hash``                     skald id → last activity (ms)
``skalds:mode:hash``                skald id → mode (node / edge)
``skalds:{id}:heartbeat``           lease: counter, TTL ``key_ttl``
``skalds:{id}:allow-task-class-name``  list of class names
``skalds:{id}:all-task``            list of the task ids it runs
``skalds:{id}:task-schemas``        JSON: class name → attachments JSON schema
``task:{id}:heartbeat``             lease: 0–199 alive; 200 finished, −1 failed, −2 cancelled
``task:{id}:has-error``             last error message (e.g. a rejected update)
``task:{id}:exception``             last exception text
==================================  =========================================================
"""

from __future__ import annotations

import json
from typing import Any

from skalds.backends.cache.base import StateCache
from skalds.model.task import now_ms

SKALDS_HASH = "skalds:hash"
SKALDS_MODE_HASH = "skalds:mode:hash"
HEARTBEAT_FINISHED = 200
HEARTBEAT_FAILED = -1
HEARTBEAT_CANCELLED = -2
#: How long the final heartbeat value and errors of an ended task stay readable.
ENDED_TASK_TTL = 3600.0


def skald_heartbeat_key(skald_id: str) -> str:
    return f"skalds:{skald_id}:heartbeat"


def skald_classes_key(skald_id: str) -> str:
    return f"skalds:{skald_id}:allow-task-class-name"


def skald_tasks_key(skald_id: str) -> str:
    return f"skalds:{skald_id}:all-task"


def skald_schemas_key(skald_id: str) -> str:
    return f"skalds:{skald_id}:task-schemas"


def task_heartbeat_key(task_id: str) -> str:
    return f"task:{task_id}:heartbeat"


def task_error_key(task_id: str) -> str:
    return f"task:{task_id}:has-error"


def task_exception_key(task_id: str) -> str:
    return f"task:{task_id}:exception"


class StateView:
    """Domain writes and reads over a :class:`StateCache`."""

    def __init__(self, cache: StateCache, key_ttl: float) -> None:
        self.cache = cache
        self.key_ttl = key_ttl

    # ---- skalds --------------------------------------------------------------------------
    def register_skald(self, skald_id: str, mode: str, classes: list[str], schemas: dict[str, Any]) -> None:
        self.cache.hset(SKALDS_MODE_HASH, {skald_id: mode})
        self.cache.list_replace(skald_classes_key(skald_id), classes, ttl=self.key_ttl)
        self.cache.set(skald_schemas_key(skald_id), json.dumps(schemas), ttl=self.key_ttl)

    def skald_heartbeat(self, skald_id: str, beat: int, task_ids: list[str], classes: list[str]) -> None:
        ttl = self.key_ttl
        self.cache.hset(SKALDS_HASH, {skald_id: str(now_ms())}, field_ttl=ttl)
        self.cache.set(skald_heartbeat_key(skald_id), str(beat), ttl=ttl)
        self.cache.list_replace(skald_tasks_key(skald_id), task_ids, ttl=ttl)
        self.cache.expire(skald_classes_key(skald_id), ttl)
        self.cache.expire(skald_schemas_key(skald_id), ttl)

    def unregister_skald(self, skald_id: str) -> None:
        self.cache.hdel(SKALDS_HASH, skald_id)
        self.cache.hdel(SKALDS_MODE_HASH, skald_id)
        self.cache.delete(
            skald_heartbeat_key(skald_id),
            skald_classes_key(skald_id),
            skald_tasks_key(skald_id),
            skald_schemas_key(skald_id),
        )

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

    def task_state(self, task_id: str) -> dict[str, Any]:
        beat = self.cache.get(task_heartbeat_key(task_id))
        return {
            "heartbeat": int(beat) if beat is not None and beat.lstrip("-").isdigit() else None,
            "error": self.cache.get(task_error_key(task_id)),
            "exception": self.cache.get(task_exception_key(task_id)),
        }
