"""Process-wide machinery of the Kafka driver: log throttling, the idle-queue drainer, fork hooks.

librdkafka handles bring concerns that belong to the process rather than to one bus: their log
lines and errors repeat several times a second while a broker is down (throttled here), the
event queues of handles that sit idle must still be served (:class:`_Drainer`), and handles must
never be used or freed across ``fork()`` (:func:`_after_fork_in_child`). This module keeps that
apart from the publish/consume logic of :mod:`skalds.backends.bus.kafka.bus` and
:mod:`skalds.backends.bus.kafka.consumer`; it tracks their live objects through weak sets only.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

import confluent_kafka as ck

from skalds.utils.logging import logger, mask_secrets

if TYPE_CHECKING:
    from skalds.backends.bus.kafka.bus import KafkaEventBus
    from skalds.backends.bus.kafka.consumer import KafkaConsumer

#: Every bus and consumer of this process, for :func:`_after_fork_in_child`.
BUSES: weakref.WeakSet[KafkaEventBus] = weakref.WeakSet()
CONSUMERS: weakref.WeakSet[KafkaConsumer] = weakref.WeakSet()


class _Quiet:
    """Lets a repeated log line (same key) through at most once per ``interval`` seconds.

    While a broker is down librdkafka reports every reconnect attempt (several a second).
    """

    def __init__(self, interval: float = 30.0) -> None:
        self.interval = interval
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def reset_lock(self) -> None:
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last < self.interval:
                return False
            if len(self._seen) > 1000:
                self._seen.clear()
            self._seen[key] = now
            return True


_quiet = _Quiet()


def log_error(who: str, err: ck.KafkaError) -> None:
    if _quiet.allow(f"{who}:{err.code()}"):
        logger.debug(f"{who}: {mask_secrets(str(err))} (repeats within {_quiet.interval:.0f} s not logged)")


class RdkafkaLog:
    """Receives librdkafka's log lines (served from poll/consume) and sends them to our logger.

    Connection failures are logged by librdkafka at error level on every retry; callers see
    failures as exceptions, so everything but critical lines goes to debug, throttled.
    """

    def log(self, level: int, fmt: str, *args: object) -> None:
        if not _quiet.allow(f"{level}:{args[:2]!r}"):
            return
        text = mask_secrets(fmt % args if args else fmt)
        if level <= 2:
            logger.warning(f"librdkafka: {text}")
        else:
            logger.debug(f"librdkafka: {text}")


class _Drainer:
    """Serves the event queues of producers and admin clients that sit idle, once a second.

    With a Python logger and an error callback configured, librdkafka queues its log lines and
    errors until the application polls. A producer nobody publishes through during a broker outage
    (and the admin client, used only now and then) would pile up ~5 events a second (measured),
    freed only at the next publish. One daemon thread per process, running while buses exist.
    """

    interval = 1.0

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def reset_lock(self) -> None:
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="skalds-kafka-events", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        pid = os.getpid()
        while True:
            time.sleep(self.interval)
            if not self._serve(pid):
                with self._lock:
                    if not BUSES or os.getpid() != pid:
                        self._thread = None
                        return

    @staticmethod
    def _serve(pid: int) -> bool:
        """Poll every handle of this process once; False if there is no bus left.

        A method of its own so that no bus stays referenced while the thread sleeps.
        """
        buses = list(BUSES)
        for bus in buses:
            bus.serve_events(pid)
        return bool(buses)


drainer = _Drainer()


def leak_handle(handle: object) -> None:
    """Make sure ``handle`` is never freed in this process.

    Freeing a librdkafka handle runs its destructor, which joins the handle's threads — threads
    that only exist in the parent: a forked child that exits normally then crashes (SIGSEGV,
    measured) or hangs. One extra reference keeps the object alive until the process ends.
    """
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(handle))


def _after_fork_in_child() -> None:
    """Leak the parent's librdkafka handles (see :func:`leak_handle`) and renew locks another thread of
    the parent may have held at ``fork()``. Buses create new handles here lazily."""
    _quiet.reset_lock()
    drainer.reset_lock()
    for bus in list(BUSES):
        bus.after_fork_in_child()
    for consumer in list(CONSUMERS):
        consumer.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
