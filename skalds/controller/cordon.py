"""Cordon and drain: take a node skald out of dispatch without stopping it.

* **Cordoned**: the dispatcher gives it no new task; what it runs keeps running.
* **Draining**: cordoned, and its Passive tasks (Assigning / Running) go back to Created, each
  fenced on executor + epoch + status like a failover (docs/design.md, principle 2), so a racing
  write — the task finished, an operator paused it — is never overwritten. The skald is told at
  once (a ``task.assign`` naming it: it reads the store, no longer owns the task and stops its
  copy; its next reconcile does the same should the event be lost), the dispatcher assigns the
  task to another node, and that node starts it only once the old copy's heartbeat lease is gone,
  so the task never runs twice at once.

The cordon is kept in the state cache, ``skalds:{id}:cordoned`` without TTL (docs/wire-formats.md):
every controller sees it, and it outlives controller and skald restarts. Being in the cache, it is
lost with the cache itself (a Redis without persistence that restarts): the skald is then
schedulable again, as it was before it was cordoned — nothing running is touched. The task store
would keep it, but the store holds tasks only, in every driver; a cordon is fleet state, like the
leases next to it.

Level-triggered (principle 1): the dispatcher's sweep drains every online draining skald again
(:func:`drain_pass`), so a task assigned by a pass that read the fleet just before the cordon, or a
move that failed, is moved at the next sweep. The tasks of an offline skald are left to the
monitor's failover, which waits ``MONITOR_HEARTBEAT_TIMEOUT`` so a frozen skald's workers have
fenced themselves first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skalds.backends.bus.base import Topic
from skalds.backends.store.base import TaskStore
from skalds.controller.fleet import SkaldInfo
from skalds.controller.service import ControllerService
from skalds.errors import Conflict, InvalidRequest, LostWrite, SkaldNotFound
from skalds.model.task import LIVE_STATUSES, ModeEnum, Task, TaskLifecycleStatus, now_ms
from skalds.utils.logging import logger

S = TaskLifecycleStatus


def return_to_dispatch(store: TaskStore, task: Task) -> Task:
    """Back to Created with the executor cleared, only if it is still live on the executor and at
    the epoch it was read with; raises :class:`~skalds.errors.LostWrite` (a Conflict) otherwise."""
    executor, epoch = task.executor, task.epoch

    def change(t: Task) -> dict[str, Any]:
        if t.executor != executor or t.epoch != epoch or t.lifecycle_status not in LIVE_STATUSES:
            raise Conflict(f"task {t.id!r} changed since it was read ({t.lifecycle_status.value} on {t.executor})")
        return {"lifecycle_status": S.CREATED, "executor": None}

    return store.modify(task.id, change)


def _node(service: ControllerService, skald_id: str) -> SkaldInfo:
    info = service.fleet.get(skald_id)
    if info is None:
        raise SkaldNotFound(f"no skald with id {skald_id!r}")
    if info.type != "node":
        raise InvalidRequest(
            f"skald {skald_id!r} is an edge skald: it runs the tasks of its YAML file and is never given"
            " tasks by the dispatcher, so it cannot be cordoned or drained",
            [{"field": "skaldId", "message": "not a node skald"}],
        )
    return info


def set_schedule(service: ControllerService, skald_id: str, *, cordoned: bool, drain: bool = False) -> list[str]:
    """Cordon (``drain``: and drain) or uncordon a node skald; returns the ids of the tasks moved
    off it now (the caller dispatches them). Cordoning again only changes ``drain``."""
    if drain and not cordoned:
        raise InvalidRequest(
            "drain needs cordoned: true (a drained skald that is not cordoned would be given tasks again)",
            [{"field": "drain", "message": "only with cordoned: true"}],
        )
    info = _node(service, skald_id)
    if not cordoned:
        service.state.set_cordon(skald_id, None)
        logger.info(f"skald {skald_id}: uncordoned; it is given tasks again")
        return []
    since = info.cordon.get("since") if info.cordon and info.cordon.get("since") else now_ms()
    if not drain or not info.online:
        service.state.set_cordon(skald_id, {"drain": drain, "since": since})
        logger.info(f"skald {skald_id}: cordoned" + ("; draining its tasks" if drain else ""))
        return []
    # Cordoned first, the drain flag only once this call has moved what the skald runs: a sweep
    # (drain_pass, on any controller) that drained it meanwhile would move some of its tasks
    # itself, and the answer would leave them out.
    service.state.set_cordon(skald_id, {"drain": False, "since": since})
    logger.info(f"skald {skald_id}: cordoned; draining its tasks")
    try:
        return drain_skald(service, skald_id)
    finally:
        service.state.set_cordon(skald_id, {"drain": True, "since": since})


def drain_skald(service: ControllerService, skald_id: str) -> list[str]:
    """Move the Passive tasks the store gives ``skald_id`` back to Created (fenced), tell the
    skald; returns the ids moved."""
    owned = service.store.owned_by(skald_id)
    moved: list[str] = []
    for task in owned:
        if task.mode != ModeEnum.PASSIVE or task.lifecycle_status not in LIVE_STATUSES:
            continue
        try:
            return_to_dispatch(service.store, task)
        except LostWrite as exc:
            logger.debug(f"task {task.id}: not drained: {exc}")
            continue
        moved.append(task.id)
    if moved:
        logger.info(f"skald {skald_id} drained: {len(moved)} task(s) back to dispatch ({', '.join(moved[:10])}…)")
        service.publish_many(Topic.TASK_ASSIGN, moved, recipient=skald_id)  # it stops its copies at once
    return moved


def drain_pass(service: ControllerService, skalds: Sequence[SkaldInfo]) -> list[tuple[str, str]]:
    """Drain every online draining node among ``skalds`` (the sweep's level-triggered pass);
    ``(task id, skald id)`` per task moved."""
    moved: list[tuple[str, str]] = []
    for skald in skalds:
        if skald.online and skald.draining and skald.type == "node":
            moved.extend((task_id, skald.id) for task_id in drain_skald(service, skald.id))
    return moved


__all__ = ["drain_pass", "drain_skald", "return_to_dispatch", "set_schedule"]
