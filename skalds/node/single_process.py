"""``single_process`` mode: the first YAML task runs in this very process, in the foreground.

Exit codes follow the worker: 0 finished, 1 failed, 143 after SIGTERM (130 after SIGINT), 2 when
the YAML file gives nothing to run — so Kubernetes Jobs and Deployments behave. With
``isPersistent: true`` the worker's whole lifecycle runs again after it ends, with exponential
backoff (1 s doubling to 60 s, reset after a run that lasted a minute).

No skald is registered. When backends were configured explicitly (URLs or hosts), the task's
heartbeat is written to the cache, its recent log lines too (``task:{id}:logs``, everything this
process logs: it is the task's process; written by the heartbeat thread, see
:mod:`skalds.worker.logtail`), and updates / cancels for its id are taken from the bus.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType
from typing import Any

from skalds.backends.bus.base import Message
from skalds.backends.cache.state import HEARTBEAT_CANCELLED, HEARTBEAT_FAILED, HEARTBEAT_FINISHED
from skalds.config.skald_config import SkaldConfig
from skalds.errors import SkaldsError
from skalds.model.task import ModeEnum, now_ms
from skalds.node.backends import Backends
from skalds.node.commands import MalformedEvent, parse_message
from skalds.node.listener import BusListener
from skalds.node.restarts import RestartBackoff
from skalds.taskfile import load_task_file
from skalds.utils.logging import logger
from skalds.worker.baseclass import BaseTaskWorker
from skalds.worker.link import NullLink
from skalds.worker.logtail import LogTail
from skalds.worker.protocol import FromWorker, UpdateError
from skalds.worker.registry import WorkerRegistry

EXIT_NOTHING_TO_RUN = 2
#: Seconds to wait for a background thread to leave its driver call before the backends close.
THREAD_JOIN_TIMEOUT = 5.0


class _LogShipper:
    """This process's log tail and where its lines go: ``task:{id}:logs``, seq continuing across
    persistent restarts (one tail, one base per process)."""

    def __init__(self, backends: Backends, task_id: str) -> None:
        self._backends = backends
        self._task_id = task_id
        self.tail = LogTail().install()
        self._base: int | None = None
        self._lock = threading.Lock()  # heartbeat thread and the final flush: one writer at a time

    def flush(self) -> None:
        if not self.tail:
            return
        with self._lock:
            lines = self.tail.take(now_ms())
            if not lines:
                return
            base = self._backends.with_state(
                "task logs", lambda v: v.append_task_logs(self._task_id, lines, self._base)
            )
            if base is not None:
                self._base = base  # else the lines are dropped (the cache is down)

    def close(self) -> None:
        self.flush()
        self.tail.uninstall()


class _InProcessLink(NullLink):
    """Heartbeats (and log lines) from a thread of this process straight to the cache."""

    def __init__(self, backends: Backends, task_id: str, interval: float, logs: _LogShipper | None = None) -> None:
        self._backends = backends
        self._task_id = task_id
        self._interval = interval
        self._logs = logs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: BaseTaskWorker[Any]) -> None:
        self._thread = threading.Thread(target=self._beat, name="skalds-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        beat = 0
        while not self._stop.is_set():
            try:
                self._send_beat(beat)
                if self._logs is not None:
                    self._logs.flush()
            except Exception as exc:  # a bug must not end the heartbeats (an outage never raises here)
                logger.opt(exception=exc).error(f"task {self._task_id}: heartbeat failed: {exc!r}")
            beat = (beat + 1) % 200
            self._stop.wait(self._interval)

    def _send_beat(self, beat: int) -> None:
        lease = self._interval * 3
        self._backends.with_state("heartbeat", lambda v: v.task_heartbeats({self._task_id: beat}, lease))

    def report(self, message: FromWorker) -> None:
        if isinstance(message, UpdateError):
            error = message.error
            self._backends.with_state("error", lambda v: v.task_error(self._task_id, error))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # Wait for a beat in flight: the backends may be closed right after this returns, and a
            # thread still inside a driver call on a closed connection can crash the process.
            self._thread.join(THREAD_JOIN_TIMEOUT)
        if self._logs is not None:
            self._logs.flush()  # the last lines (release) now, not at the next run's first beat


def _explicit_backends(config: SkaldConfig) -> bool:
    return any((config.store_url, config.bus_url, config.cache_url, config.redis_host, config.kafka_host))


def run_single_process(config: SkaldConfig, registry: WorkerRegistry) -> int:
    if not config.yaml_file:
        logger.error("single_process mode needs a YAML task file: set yaml_file (YAML_FILE)")
        return EXIT_NOTHING_TO_RUN
    entries, errors = load_task_file(config.yaml_file, registry.models())
    for err in errors:
        logger.error(str(err))
    if not entries:
        logger.error(f"{config.yaml_file}: no valid task to run")
        return EXIT_NOTHING_TO_RUN
    entry = next(iter(entries.values()))
    if len(entries) > 1:
        logger.info(f"single_process runs only the first task ({entry.task_id}); {len(entries) - 1} ignored")
    task = entry.to_task(f"[SP]{config.skald_id}", ModeEnum.PASSIVE_PROCESS)
    cls = registry.get(task.class_name)
    backends = Backends(config) if _explicit_backends(config) else None
    logs = _LogShipper(backends, task.id) if backends is not None else None

    stop = threading.Event()
    current: dict[str, BaseTaskWorker[Any]] = {}
    listener = _start_listener(backends, config, task.id, current) if backends else None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        stop.signum = signum  # type: ignore[attr-defined]

    backoff = RestartBackoff()
    code = 0
    try:
        while True:
            worker = cls()
            worker.task_id = task.id
            worker.dependencies = task.dependencies
            if backends is not None:
                worker._skalds_link = _InProcessLink(backends, task.id, config.heartbeat_interval, logs)
            try:
                worker._skalds_setup(task.attachments)
            except SkaldsError as exc:
                logger.error(f"task {task.id} cannot start: {exc}")
                return 1
            current["worker"] = worker
            started = time.monotonic()
            code = worker.start()
            current.pop("worker", None)
            _record_end(backends, task.id, code)
            if code >= 128 or not task.is_persistent:
                return code
            delay = backoff.next(time.monotonic() - started)
            logger.info(f"task {task.id} ended with code {code}; persistent, restarting in {delay:.0f} s")
            previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
            try:
                if stop.wait(delay):
                    return 128 + int(getattr(stop, "signum", signal.SIGTERM))
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)
    finally:
        if listener is not None:
            listener.stop()
            listener.join(THREAD_JOIN_TIMEOUT)  # out of its driver calls before the backends close
        if logs is not None:
            logs.close()
        if backends is not None:
            backends.close()


def _record_end(backends: Backends | None, task_id: str, code: int) -> None:
    if backends is None:
        return
    value = HEARTBEAT_FINISHED if code == 0 else HEARTBEAT_CANCELLED if code >= 128 else HEARTBEAT_FAILED
    backends.with_state("ended", lambda v: v.task_ended(task_id, value))


def _start_listener(
    backends: Backends, config: SkaldConfig, task_id: str, current: dict[str, BaseTaskWorker[Any]]
) -> BusListener:
    """Consume the bus for commands about this task id (cancel → SIGTERM to self; update → handler).

    From this process's start: a command sent while it starts is not lost, and no cancel of a
    previous run (a restarted pod) is replayed."""

    def deliver(messages: list[Message]) -> None:
        for message in messages:
            try:
                command = parse_message(message)
            except MalformedEvent as exc:
                logger.warning(f"skipped a malformed event on {message.topic}: {exc}")
                continue
            if task_id not in command.task_ids:
                continue
            if command.kind == "cancel":
                os.kill(os.getpid(), signal.SIGTERM)
            elif command.kind == "update" and command.attachments is not None:
                worker = current.get("worker")
                if worker is not None:
                    worker.handle_update_message({"attachments": command.attachments})

    listener = BusListener(backends, f"sp-{config.skald_id}", deliver, since_ms=now_ms())
    listener.start()
    return listener
