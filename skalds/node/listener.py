"""The one bus consumer of a skald (docs/design.md, principle 5), on its own thread.

It consumes the command topics for the skald's consumer group and hands messages to the agent's
loop; it never touches agent state itself. A bus that is down is retried; a broken consumer is
closed and subscribed again.

Where a new group starts. The listener is created as the skald starts, before it runs any node
task (edge tasks from the file start moments earlier), and every subscription asks for the
messages published since then less ``SkaldConfig.bus_lookback`` (60 s; ``since_ms`` of
:meth:`~skalds.backends.bus.base.EventBus.subscribe`). A group with committed offsets resumes after
them as before; a group without (a new id, a generated id, a broker that lost the offsets) starts
there, not at the end. So every command published after the skald started is delivered, even
though joining a Kafka group takes seconds (about half the session timeout) while the skald's
workers already run and heartbeat: a group starting at the end *when it gets its partitions*
would lose every update, assign and cancel published in between.

Why a look-back rather than a group id kept across restarts when no id is given. The default id
is generated at each start, so each start is a new group and the previous life's committed
offsets are not found. A group named after the machine and configuration would find them, but two
processes with the same configuration on one machine (or containers with one host name) would
then share a group and split its partitions, each silently missing the others' share — a loss,
where a look-back only costs replays: a restart with a generated id receives what was published
up to ``bus_lookback`` before it started (the downtime of a restart, and clock skew between
publishers and this machine), and handlers are idempotent (the store is the truth). A skald with a
generated id that stays down longer is covered by the store — its node tasks are failed over and
reconciled, cancels and attachment updates are stored — except direct ``taskworker.update``
messages older than the look-back; a skald that must get those after any downtime needs a fixed
id (its group then resumes where it stopped, however long ago).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from skalds.backends.bus.base import ALL_TOPICS, Message
from skalds.model.task import now_ms
from skalds.node.backends import Backends
from skalds.utils.logging import logger

#: First wait (seconds) before asking again for a bus that is not open yet; doubled up to 1 s. A
#: server bus is opened by a background probe the first call starts: it is usually there at once.
FIRST_RETRY = 0.02


class BusListener(threading.Thread):
    """Consumes the command topics for one consumer group and hands messages to the loop."""

    def __init__(
        self,
        backends: Backends,
        group: str,
        deliver: Callable[[list[Message]], None],
        *,
        since_ms: int | None = None,
    ) -> None:
        super().__init__(name="skalds-bus", daemon=True)
        self._backends = backends
        self._group = group
        self._deliver = deliver
        self._halt = threading.Event()
        self._consumer: Any = None
        #: Where the group starts when it has no committed offsets (see the module docstring):
        #: by default this process's start less the look-back.
        self.since_ms = now_ms() - int(backends.config.bus_lookback * 1000) if since_ms is None else since_ms

    def run(self) -> None:
        retry = FIRST_RETRY
        while not self._halt.is_set():
            if self._consumer is None:
                bus = self._backends.bus()
                if bus is None:
                    self._halt.wait(retry)
                    retry = min(retry * 2, 1.0)
                    continue
                retry = FIRST_RETRY
                try:
                    self._consumer = bus.subscribe(self._group, ALL_TOPICS, since_ms=self.since_ms)
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
