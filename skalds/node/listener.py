"""The one bus consumer of a skald (DESIGN principle 5), on its own thread.

It consumes the command topics for the skald's consumer group and hands messages to the agent's
loop; it never touches agent state itself. A bus that is down is retried; a broken consumer is
closed and subscribed again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from skalds.backends.bus.base import ALL_TOPICS, Message
from skalds.node.backends import Backends
from skalds.utils.logging import logger


class BusListener(threading.Thread):
    """Consumes the command topics for one consumer group and hands messages to the loop."""

    def __init__(self, backends: Backends, group: str, deliver: Callable[[list[Message]], None]) -> None:
        super().__init__(name="skalds-bus", daemon=True)
        self._backends = backends
        self._group = group
        self._deliver = deliver
        self._halt = threading.Event()
        self._consumer: Any = None

    def run(self) -> None:
        while not self._halt.is_set():
            if self._consumer is None:
                bus = self._backends.bus()
                if bus is None:
                    self._halt.wait(1.0)
                    continue
                try:
                    self._consumer = bus.subscribe(self._group, ALL_TOPICS)
                except Exception as exc:
                    logger.warning(f"event bus subscribe failed ({exc!r}); retrying")
                    self._halt.wait(2.0)
                    continue
                logger.info(f"listening for commands as group {self._group}")
            try:
                messages = self._consumer.poll(1.0)
            except Exception as exc:
                logger.warning(f"event bus poll failed ({exc!r}); reconnecting")
                self._close_consumer()
                self._halt.wait(1.0)
                continue
            if messages:
                self._deliver(messages)
        self._close_consumer()

    def stop(self) -> None:
        self._halt.set()
        consumer = self._consumer
        if consumer is not None:
            try:
                consumer.wakeup()
            except Exception:
                pass

    def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception:
                pass
