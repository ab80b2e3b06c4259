"""What the controller knows about skalds, read from the state cache on every call.

Liveness is a lease (docs/design.md, principle 3): a skald is online exactly while its
``skalds:{id}:heartbeat`` key exists; ``skalds:hash`` only says when it was last active. Nothing is
cached in the controller, so any number of controllers see the same fleet and a skald that stops
heartbeating drops out of dispatch within one lease.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from skalds.backends.cache.state import (
    SKALDS_HASH,
    SKALDS_MODE_HASH,
    StateView,
    parse_cordon,
    skald_classes_key,
    skald_cordon_key,
    skald_heartbeat_key,
    skald_placement_key,
    skald_schemas_key,
    skald_tasks_key,
)
from skalds.controller.placement import NodeView, node_view, parse_placement


@dataclass
class SkaldInfo:
    """One skald as the cache describes it."""

    id: str
    type: str  # "node" | "edge"
    online: bool
    last_heartbeat: int | None
    heartbeat: int | None
    supported_tasks: list[str] = field(default_factory=list)
    current_tasks: list[str] = field(default_factory=list)
    schemas: dict[str, Any] = field(default_factory=dict)
    #: ``{"drain": bool, "since": ms}`` while cordoned (``skalds:{id}:cordoned``), else None.
    cordon: dict[str, Any] | None = None
    #: ``{"labels", "resources", "classes"}`` it advertises (``skalds:{id}:placement``), else {}.
    placement: dict[str, Any] = field(default_factory=dict)

    @property
    def cordoned(self) -> bool:
        """No new tasks are dispatched to it."""
        return self.cordon is not None

    @property
    def draining(self) -> bool:
        """Cordoned, and its Passive tasks are moved to other nodes."""
        return self.cordon is not None and bool(self.cordon.get("drain"))

    def item(self) -> dict[str, Any]:
        """The API's skald item (docs/wire-formats.md)."""
        return {
            "id": self.id,
            "type": self.type,
            "status": "online" if self.online else "offline",
            "lastHeartbeat": self.last_heartbeat,
            "supportedTasks": self.supported_tasks,
            "currentTasks": self.current_tasks,
            "heartbeat": self.heartbeat,
            "taskCount": len(self.current_tasks),
            "cordoned": self.cordoned,
            "draining": self.draining,
            "cordonedSince": self.cordon.get("since") if self.cordon else None,
            "labels": self.node_view().labels,
            "resources": self.node_view().resources,
        }

    def supports(self, class_name: str) -> bool:
        return class_name in self.supported_tasks or class_name in self.schemas

    def node_view(self) -> NodeView:
        """This skald as placement sees it (nothing used yet)."""
        return node_view(self.id, {*self.supported_tasks, *self.schemas}, self.placement)


def int_or_none(value: str | None) -> int | None:
    """A cache value as an int; None when missing or not a number."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class Fleet:
    """Reads of the skald keys of the state cache (docs/wire-formats.md)."""

    def __init__(self, state: StateView, parsed: dict[str, dict[str, Any]] | None = None) -> None:
        self.state = state
        #: Schemas documents already parsed, by their text (shared by the caller across calls; read only).
        self._parsed = parsed if parsed is not None else {}

    def ids(self) -> list[str]:
        cache = self.state.cache
        return sorted(set(cache.hgetall(SKALDS_MODE_HASH)) | set(cache.hgetall(SKALDS_HASH)))

    def get(
        self, skald_id: str, *, modes: dict[str, str] | None = None, seen: dict[str, str] | None = None
    ) -> SkaldInfo | None:
        cache = self.state.cache
        modes = cache.hgetall(SKALDS_MODE_HASH) if modes is None else modes
        seen = cache.hgetall(SKALDS_HASH) if seen is None else seen
        beat = cache.get(skald_heartbeat_key(skald_id))
        if skald_id not in modes and skald_id not in seen and beat is None:
            return None
        raw_schemas = cache.get(skald_schemas_key(skald_id))
        try:
            schemas = json.loads(raw_schemas) if raw_schemas else {}
        except ValueError:
            schemas = {}
        return SkaldInfo(
            id=skald_id,
            type="edge" if modes.get(skald_id) == "edge" else "node",
            online=beat is not None,
            last_heartbeat=int_or_none(seen.get(skald_id)),
            heartbeat=int_or_none(beat),
            supported_tasks=cache.lrange(skald_classes_key(skald_id)),
            current_tasks=cache.lrange(skald_tasks_key(skald_id)),
            schemas=schemas if isinstance(schemas, dict) else {},
            cordon=parse_cordon(cache.get(skald_cordon_key(skald_id))),
            placement=parse_placement(cache.get(skald_placement_key(skald_id))),
        )

    def all(self) -> list[SkaldInfo]:
        """Every known skald, read in four batched cache calls whatever the fleet's size."""
        cache = self.state.cache
        modes = cache.hgetall(SKALDS_MODE_HASH)
        seen = cache.hgetall(SKALDS_HASH)
        ids = sorted(set(modes) | set(seen))
        if not ids:
            return []
        per_skald = (skald_heartbeat_key, skald_schemas_key, skald_cordon_key, skald_placement_key)
        strings = cache.get_many([key(i) for i in ids for key in per_skald])
        lists = cache.lrange_many([k for i in ids for k in (skald_classes_key(i), skald_tasks_key(i))])
        return [
            SkaldInfo(
                id=skald_id,
                type="edge" if modes.get(skald_id) == "edge" else "node",
                online=strings[4 * n] is not None,
                last_heartbeat=int_or_none(seen.get(skald_id)),
                heartbeat=int_or_none(strings[4 * n]),
                supported_tasks=lists[2 * n],
                current_tasks=lists[2 * n + 1],
                schemas=self._schemas(strings[4 * n + 1]),
                cordon=parse_cordon(strings[4 * n + 2]),
                placement=parse_placement(strings[4 * n + 3]),
            )
            for n, skald_id in enumerate(ids)
        ]

    def _schemas(self, raw: str | None) -> dict[str, Any]:
        """The parsed schemas document (memoised by its text: it changes only when a skald restarts)."""
        if not raw:
            return {}
        parsed = self._parsed.get(raw)
        if parsed is None:
            try:
                value = json.loads(raw)
            except ValueError:
                value = {}
            parsed = value if isinstance(value, dict) else {}
            if len(self._parsed) > 1000:
                self._parsed.clear()
            self._parsed[raw] = parsed
        return parsed

    def online(self) -> list[SkaldInfo]:
        return [s for s in self.all() if s.online]

    def class_schemas(self) -> dict[str, tuple[dict[str, Any], list[str]]]:
        """Class name → (attachments JSON schema, ids of the online skalds advertising it).

        When skalds disagree about a class's schema, the first skald by id wins; validation is a
        guard against typos, the worker validates again against its own model.
        """
        found: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for skald in self.online():
            for name in sorted(set(skald.schemas) | set(skald.supported_tasks)):
                schema = skald.schemas.get(name)
                if name not in found:
                    found[name] = (schema if isinstance(schema, dict) else {}, [skald.id])
                else:
                    found[name][1].append(skald.id)
        return found
