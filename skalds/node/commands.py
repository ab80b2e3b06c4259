"""Turn bus messages into commands for the agent; malformed messages are reported, never fatal."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from skalds.backends.bus.base import Message, Topic
from skalds.model.event import TaskEvent


@dataclass(frozen=True)
class Command:
    kind: str  # "assign" | "cancel" | "update"
    task_ids: tuple[str, ...]
    recipient: str | None = None
    #: For updates: the new attachments when the message carries them, else None (read the store).
    attachments: dict[str, Any] | None = None
    #: When the message was published (ms; 0 when the bus does not say).
    published_ms: int = 0


class MalformedEvent(ValueError):
    """A bus message that cannot be understood."""


#: Deepest nesting of objects and arrays accepted in an event (attachments included): deeper
#: payloads are refused as malformed long before Python's recursion limit is near.
MAX_EVENT_DEPTH = 64


def parse_message(message: Message) -> Command:
    """The command a bus message carries; :class:`MalformedEvent` for anything else (never
    another exception: a message is outside input, and one bad message must not stop a skald)."""
    try:
        return dataclasses.replace(_parse(message), published_ms=int(message.timestamp_ms or 0))
    except MalformedEvent:
        raise
    except RecursionError:
        raise MalformedEvent(f"nested deeper than {MAX_EVENT_DEPTH} levels") from None
    except Exception as exc:
        raise MalformedEvent(f"{type(exc).__name__}: {exc}") from None


def _parse(message: Message) -> Command:
    value = message.value
    if isinstance(value, str):
        value = value.encode("utf-8", "replace")
    try:
        payload = json.loads(value) if value else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEvent(f"not JSON: {exc}") from None
    if _depth(payload) > MAX_EVENT_DEPTH:
        raise MalformedEvent(f"nested deeper than {MAX_EVENT_DEPTH} levels")
    topic = message.topic
    if topic == Topic.TASKWORKER_UPDATE.value:
        return _update_for_key(message.key, payload)
    if topic == Topic.TASK_UPDATE_ATTACHMENT.value and isinstance(payload, dict) and "taskIds" not in payload:
        return _update_for_key(message.key, payload)
    kinds = {
        Topic.TASK_ASSIGN.value: "assign",
        Topic.TASK_CANCEL.value: "cancel",
        Topic.TASK_UPDATE_ATTACHMENT.value: "update",
    }
    if topic not in kinds:
        raise MalformedEvent(f"unexpected topic {topic!r}")
    if not isinstance(payload, dict):
        raise MalformedEvent("a TaskEvent must be a JSON object")
    try:
        event = TaskEvent.model_validate(payload)
    except ValueError as exc:
        raise MalformedEvent(f"invalid TaskEvent: {exc}") from None
    ids = tuple(i for i in event.task_ids if isinstance(i, str) and i)
    if not ids and message.key:
        ids = (message.key,)
    if not ids:
        raise MalformedEvent("TaskEvent names no task (taskIds is empty and the message has no key)")
    return Command(kinds[topic], ids, recipient=event.recipient)


def _update_for_key(key: str | None, payload: Any) -> Command:
    if not key:
        raise MalformedEvent("an update needs the task id as the message key")
    if not isinstance(payload, dict) or not isinstance(payload.get("attachments"), dict):
        raise MalformedEvent('an update must be {"attachments": {...}}')
    return Command("update", (key,), attachments=payload["attachments"])


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value (iterative: safe on any input)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_EVENT_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest
