"""``Monitor``: fails over the tasks of dead skalds and ends Running tasks nobody runs any more.

Node loss: a skald whose heartbeat lease expired is offline; its Passive tasks return to
dispatch and run on another node. Level-triggered (docs/design.md, principle 1): each :meth:`Monitor.pass_`
reads the store and the cache afresh and acts on what it finds, so it is correct however often it
runs, after a controller restart, and with several controllers (every write is a fenced
compare-and-set in the store, so two monitors cannot both fail a task over).

What one pass does, for every task the store says is Assigning / Running on executor X:

* **X offline** (its lease ``skalds:X:heartbeat`` is gone: liveness is a lease) for longer than
  ``monitor_heartbeat_timeout`` — counted from X's last activity in ``skalds:hash`` when there is
  one, else from when this monitor first saw the lease missing — and the task is Passive: back to
  Created with the executor cleared, fenced on executor + epoch + status, so a racing write (the
  skald came back and finished it, an operator paused it) is never overwritten. The dispatcher
  assigns it elsewhere. Active (edge) tasks belong to their edge skald, PassiveProcess ones to
  their single-process runner: they are left alone.
* **X online, task Running, but the task's own lease** ``task:{id}:heartbeat`` **missing** for
  longer than the timeout (a hung worker, a lost exit): Failed with the exception
  "heartbeat lease expired", fenced the same way; X's next reconcile stops any copy and the
  dispatcher's retry budget decides whether it runs again. So no zombie Running survives.

Why the old owner cannot keep running a failed-over task (fencing): its workers fence
themselves once their skald stops acknowledging heartbeats for ``fence_after`` (= the skald's
``REDIS_KEY_TTL``; see :mod:`skalds.worker.link`), which is below the timeout
(:class:`~skalds.controller.config.ControllerConfig` checks it); and a skald that returns compares
its copies with the store before it writes anything for them (``NodePolicy.reconcile``).

**Blind spells.** Offline and missing-lease durations are counted only over time this monitor
could see the cache: from its first pass, and again from the first pass that reads the cache
after passes failed (Redis frozen or unreachable — the skalds could not renew their leases either)
or after none ran for half the timeout (this controller was stalled or not the leader). So a
cache outage as long as the timeout never fails healthy skalds over; the price is that a skald
that died during the blind spell is failed over up to one timeout later.

Housekeeping: ``skalds:hash`` / ``skalds:mode:hash`` fields of skalds offline for more than
:data:`PRUNE_AFTER_S` are deleted (Redis 7.0 has no hash-field TTL, so nothing else would).
Times in ``skalds:hash`` are wall-clock milliseconds written by the skalds: clocks must agree to
well within the timeout (NTP), as with any lease.

Synchronous (blocking driver calls); the app runs it in a worker thread, on the leader only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skalds.backends.cache.state import SKALD_ACTIVITY_TTL, SKALDS_HASH, SKALDS_MODE_HASH, skald_heartbeat_key
from skalds.controller.cordon import return_to_dispatch
from skalds.controller.fleet import int_or_none
from skalds.controller.service import SHARED_SNAPSHOT_AGE, ControllerService
from skalds.errors import LostWrite
from skalds.model.task import LIVE_STATUSES, ModeEnum, Task, TaskLifecycleStatus, now_ms
from skalds.utils.logging import logger

S = TaskLifecycleStatus
HEARTBEAT_LEASE_EXPIRED = "heartbeat lease expired"
#: Seconds after which an offline skald's fields in ``skalds:hash`` / ``skalds:mode:hash`` go
#: (as long as the field's own TTL where the cache has hash-field TTLs).
PRUNE_AFTER_S = SKALD_ACTIVITY_TTL


@dataclass
class MonitorResult:
    """What one pass did (for logs, status and tests)."""

    failed_over: list[tuple[str, str]] = field(default_factory=list)  # (task id, dead executor)
    expired: list[str] = field(default_factory=list)  # Running tasks failed for a missing lease
    pruned: list[str] = field(default_factory=list)  # skald ids removed from the hashes


class Monitor:
    """Skald and task liveness, acted upon."""

    def __init__(
        self,
        service: ControllerService,
        *,
        timeout: float | None = None,
        on_failover: Callable[[list[str]], None] | None = None,
        prune_after: float = PRUNE_AFTER_S,
    ) -> None:
        self.service = service
        self.timeout_ms = int((service.config.monitor_heartbeat_timeout if timeout is None else timeout) * 1000)
        self.prune_after_ms = int(prune_after * 1000)
        #: Called with the ids of the tasks just returned to Created (the app dispatches them).
        self.on_failover = on_failover
        # When this monitor first saw a lease missing (ms): the fallback when the cache keeps no
        # last-activity time (a skald never seen, hash fields expired or lost with a Redis restart).
        self._skald_missing_since: dict[str, int] = {}
        self._task_missing_since: dict[str, int] = {}
        self.failovers_total = 0
        self.expired_total = 0
        self.last_pass_ms: int | None = None
        # Blind spells: while this monitor cannot read the cache (a frozen or unreachable Redis)
        # it cannot tell a dead skald from one that could not write either. No lease is judged
        # for that time: offline and missing-lease durations count from ``_judge_from``, the
        # first pass that could read again.
        self._blind = False
        self._last_read_ms: int | None = None
        self._judge_from = 0

    # ---- the pass ------------------------------------------------------------------------
    def pass_(self) -> MonitorResult:
        try:
            return self._pass()
        except Exception:
            self._blind = True  # whatever failed, this pass judged nothing
            raise

    def _pass(self) -> MonitorResult:
        result = MonitorResult()
        snapshot = self.service.live.snapshot(max_age=SHARED_SNAPSHOT_AGE)
        cache = self.service.state.cache
        seen = cache.hgetall(SKALDS_HASH)
        modes = cache.hgetall(SKALDS_MODE_HASH)
        now = now_ms()
        self._note_read(now)
        live = snapshot.with_status(*LIVE_STATUSES)
        executors = {t.executor for t in live if t.executor}
        offline_for = self._offline_durations(set(seen) | set(modes) | executors, seen, now)
        task_ids = {t.id for t in live}
        self._task_missing_since = {k: v for k, v in self._task_missing_since.items() if k in task_ids}
        for task in live:
            if not task.executor or task.mode != ModeEnum.PASSIVE:
                continue  # edge / single-process tasks are owned by their runner, not dispatched
            down = offline_for.get(task.executor)
            if down is not None:
                if down > self.timeout_ms and self._fail_over(task):
                    result.failed_over.append((task.id, task.executor))
            elif (
                task.lifecycle_status == S.RUNNING
                and self._task_lease_lost(task, snapshot.state(task.id)["heartbeat"] is not None, now)
                and self._expire(task)
            ):
                result.expired.append(task.id)
        result.pruned = self._prune(offline_for, seen, modes)
        self.failovers_total += len(result.failed_over)
        self.expired_total += len(result.expired)
        self.last_pass_ms = now
        if result.failed_over and self.on_failover is not None:
            self.on_failover([t for t, _ in result.failed_over])
        return result

    # ---- steps ---------------------------------------------------------------------------
    def _note_read(self, now: int) -> None:
        """A pass read the cache at ``now``. After a blind spell — passes that failed, or none
        for half the timeout (this controller was stalled, or not the leader), or none at all
        yet — leases are judged from now on only: a skald gets the full timeout to renew its
        lease after this monitor can see it again."""
        gap = None if self._last_read_ms is None else now - self._last_read_ms
        if self._blind or gap is None or gap > self.timeout_ms // 2:
            if self._blind or gap is not None:
                logger.warning(
                    "the monitor judged no lease"
                    + (f" for {gap / 1000:.1f} s" if gap is not None else "")
                    + (" (the cache could not be read)" if self._blind else "")
                    + f"; skalds and tasks get {self.timeout_ms / 1000:g} s from now to renew their leases"
                )
            self._judge_from = now
        self._blind = False
        self._last_read_ms = now

    def _offline_durations(self, ids: set[str], seen: dict[str, str], now: int) -> dict[str, int]:
        """Skald id → ms it has been offline, for every skald whose lease is missing."""
        ordered = sorted(ids)
        leases = self.service.state.cache.get_many([skald_heartbeat_key(i) for i in ordered])
        offline: dict[str, int] = {}
        for skald_id, lease in zip(ordered, leases, strict=True):
            if lease is not None:
                self._skald_missing_since.pop(skald_id, None)
                continue
            first_missing = self._skald_missing_since.setdefault(skald_id, now)
            last = int_or_none(seen.get(skald_id))
            # Its last activity (written with each heartbeat, so it is when the lease was last
            # renewed), capped by our own first observation against a clock running ahead.
            since = first_missing if last is None else min(last, first_missing)
            offline[skald_id] = now - max(since, self._judge_from)
        for gone in set(self._skald_missing_since) - ids:
            del self._skald_missing_since[gone]
        return offline

    def _task_lease_lost(self, task: Task, leased: bool, now: int) -> bool:
        """Whether the task's heartbeat lease has been missing for longer than the timeout."""
        if leased:
            self._task_missing_since.pop(task.id, None)
            return False
        # Counted from our first look, or from the task's last store write when that is later
        # (it just became Running: the skald writes the lease with the status).
        since = self._task_missing_since.setdefault(task.id, now)
        return now - max(since, task.update_date_time, self._judge_from) > self.timeout_ms

    def _fail_over(self, task: Task) -> bool:
        """Back to Created, only if it is still live on the same executor at the same epoch."""
        try:
            return_to_dispatch(self.service.store, task)
        except LostWrite as exc:
            logger.debug(f"task {task.id}: not failed over: {exc}")
            return False
        logger.warning(f"task {task.id}: skald {task.executor} is offline; back to dispatch (was epoch {task.epoch})")
        return True

    def _expire(self, task: Task) -> bool:
        """Running on an online skald without a heartbeat lease: Failed (fenced)."""
        try:
            self.service.store.set_status(
                task.id,
                S.FAILED,
                expect_executor=task.executor,
                expect_epoch=task.epoch,
                expect_statuses=(S.RUNNING,),
                exception=HEARTBEAT_LEASE_EXPIRED,
            )
        except LostWrite as exc:
            logger.debug(f"task {task.id}: not failed: {exc}")
            return False
        self._task_missing_since.pop(task.id, None)
        logger.warning(f"task {task.id}: Running on {task.executor} but its heartbeat lease expired; Failed")
        return True

    def _prune(self, offline_for: dict[str, int], seen: dict[str, str], modes: dict[str, str]) -> list[str]:
        stale = sorted(i for i, down in offline_for.items() if down > self.prune_after_ms and (i in seen or i in modes))
        if stale:
            cache = self.service.state.cache
            cache.hdel(SKALDS_HASH, *stale)
            cache.hdel(SKALDS_MODE_HASH, *stale)
            for skald_id in stale:
                self._skald_missing_since.pop(skald_id, None)
            logger.info(f"forgot skalds offline for more than {self.prune_after_ms // 1000} s: {', '.join(stale)}")
        return stale

    def status(self) -> dict[str, Any]:
        return {
            "heartbeatTimeout": self.timeout_ms / 1000,
            "lastPass": self.last_pass_ms,
            "failoversTotal": self.failovers_total,
            "expiredTotal": self.expired_total,
        }


__all__ = ["HEARTBEAT_LEASE_EXPIRED", "Monitor", "MonitorResult"]
