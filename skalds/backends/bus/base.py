"""The event bus contract.

Topics carry small JSON payloads keyed by task id. Every consumer group sees every message once
(at-least-once: after a crash a message may come again, so handlers are idempotent). A known group
resumes after its last committed message, so commands published while its skald was down are
delivered when it returns. A new group starts at the end, or — given ``since_ms`` — at the first
message published at or after that time: a skald passes the time it started (less a look-back), so
nothing published while its group is still joining, or shortly before it started, is lost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from skalds.backends.guard import Guarded


class Topic(str, Enum):
    """The shared topics (one per kind of command, never one per task)."""

    TASK_ASSIGN = "task.assign"
    TASK_CANCEL = "task.cancel"
    TASK_UPDATE_ATTACHMENT = "task.update.attachment"
    TASKWORKER_UPDATE = "taskworker.update"


ALL_TOPICS: tuple[str, ...] = tuple(t.value for t in Topic)


@dataclass(frozen=True)
class Message:
    topic: str
    key: str | None
    value: bytes
    offset: int = 0
    timestamp_ms: int = 0


class Consumer(ABC):
    """One consumer group's subscription. Used by one thread."""

    @abstractmethod
    def poll(self, timeout: float) -> list[Message]:
        """Messages available now, waiting up to ``timeout`` seconds for the first one.

        Returns as soon as any message is there; an empty list on timeout. Delivered messages are
        committed for the group before the next call returns new ones.
        """

    @abstractmethod
    def wakeup(self) -> None:
        """Make a blocked :meth:`poll` return early (from another thread)."""

    @abstractmethod
    def close(self) -> None:
        """Stop consuming and release resources."""


class EventBus(Guarded, ABC):
    """Publish to topics; subscribe a consumer group."""

    backend_kind = "event bus"
    url: str = ""

    @abstractmethod
    def publish(self, topic: str, key: str | None, value: bytes | str) -> None:
        """Publish one message; returns once the bus has durably accepted it (or raises)."""

    def publish_many(self, topic: str, messages: Sequence[tuple[str | None, bytes | str]]) -> None:
        """Publish ``(key, value)`` messages to one topic, in order; returns once the bus has
        durably accepted all of them (or raises: some may have been published). Drivers that can
        accept them together do; this fallback publishes one at a time."""
        for key, value in messages:
            self.publish(topic, key, value)

    @abstractmethod
    def subscribe(self, group: str, topics: tuple[str, ...] | list[str], *, since_ms: int | None = None) -> Consumer:
        """A consumer for ``group``. A known group resumes after its last committed message. A new
        group — or one whose offsets the bus lost — starts at the end of each topic (every message
        published after ``subscribe`` returns is delivered) or, with ``since_ms`` (ms since the
        epoch, compared with the publishers' clocks), at the first message published at or after
        that time. Where it starts is committed at once: a group that received nothing still
        resumes there."""

    def close(self) -> None:  # optional hook
        """Release connections."""
