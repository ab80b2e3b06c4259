"""Placement by labels and resources: which nodes may take a task, and why none may.

A node skald declares labels (``SKALD_LABELS``, e.g. ``zone=eu-1``) and resources
(``SKALD_RESOURCES``, e.g. ``gpu=2,slots=8``) and advertises them, with the requirements of each
of its classes, in ``skalds:{id}:placement`` (docs/wire-formats.md). A task needs what its own
``requires`` / ``nodeSelector`` say or, where it has none, what its class declares
(``BaseTaskWorker.requires`` / ``node_selector``, as the node advertises them).

A node qualifies for a task when it has the task's class, has every selector label with the same
value, and its free resources cover the task's requirements. Free = declared − used, where used
is the sum of the requirements of the tasks the store says it owns in a live status (Assigning or
Running; a Paused task's worker is stopped, so it holds nothing) plus those assigned to it earlier
in the same dispatch pass. A resource a node does not declare is 0 there; a task that requires
nothing fits on every node that has its class.

Everything here is a pure function of its arguments (no store, no cache).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skalds.model.task import LIVE_STATUSES, Task


@dataclass(frozen=True)
class Needs:
    """What one task asks of a node."""

    requires: Mapping[str, float] = field(default_factory=dict)
    selector: Mapping[str, str] = field(default_factory=dict)


@dataclass
class NodeView:
    """One node as placement sees it."""

    id: str
    classes: frozenset[str]
    labels: dict[str, str] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    #: Class name → what the node advertises that class needs.
    class_needs: dict[str, Needs] = field(default_factory=dict)
    #: Resources in use (live tasks it owns, plus those given to it earlier in the pass).
    used: dict[str, float] = field(default_factory=dict)

    def needs(self, task: Task) -> Needs:
        """The task's own requirements and selector, each falling back to its class's on this node."""
        declared = self.class_needs.get(task.class_name, Needs())
        return Needs(
            requires=task.requires if task.requires is not None else declared.requires,
            selector=task.node_selector if task.node_selector is not None else declared.selector,
        )

    def free(self) -> dict[str, float]:
        kinds = set(self.resources) | set(self.used)
        return {k: self.resources.get(k, 0.0) - self.used.get(k, 0.0) for k in sorted(kinds)}

    def take(self, task: Task) -> None:
        """Count ``task`` as running here."""
        for kind, amount in self.needs(task).requires.items():
            self.used[kind] = self.used.get(kind, 0.0) + amount


def parse_placement(raw: str | None) -> dict[str, Any]:
    """The ``skalds:{id}:placement`` document; ``{}`` when missing or malformed."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _num_map(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {str(k): float(v) for k, v in value.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def node_view(skald_id: str, classes: Iterable[str], placement: Mapping[str, Any]) -> NodeView:
    """A :class:`NodeView` of a skald's advertised classes and placement document."""
    per_class = placement.get("classes")
    needs = {
        str(name): Needs(requires=_num_map(doc.get("requires")), selector=_str_map(doc.get("nodeSelector")))
        for name, doc in (per_class.items() if isinstance(per_class, dict) else ())
        if isinstance(doc, dict)
    }
    return NodeView(
        id=skald_id,
        classes=frozenset(classes),
        labels=_str_map(placement.get("labels")),
        resources=_num_map(placement.get("resources")),
        class_needs=needs,
    )


def count_used(node: NodeView, live_tasks: Iterable[Task]) -> None:
    """Add the requirements of the live tasks ``node`` owns to its ``used``."""
    for task in live_tasks:
        node.take(task)


def resource_item(node: NodeView, tasks: Iterable[Task]) -> dict[str, dict[str, float]]:
    """``{"resourcesUsed", "resourcesFree"}`` of ``node`` for the API's skald item: the
    requirements of those of ``tasks`` it owns in a live status, and what is left of its declared
    resources (below 0 only when a task's requirements grew after it was placed)."""
    count_used(node, (t for t in tasks if t.executor == node.id and t.lifecycle_status in LIVE_STATUSES))
    return {"resourcesUsed": dict(sorted(node.used.items())), "resourcesFree": node.free()}


def _number(value: float) -> str:
    return f"{value:g}"


def _mismatch(needs: Needs, node: NodeView) -> str | None:
    """The first selector label the node lacks (``zone=eu-1``), or None."""
    for key, value in sorted(needs.selector.items()):
        if node.labels.get(key) != value:
            return f"{key}={value}"
    return None


def _short(needs: Needs, node: NodeView) -> str | None:
    """The first resource the node has too little of free, or None."""
    free = node.free()
    for kind, amount in sorted(needs.requires.items()):
        if amount > 0 and free.get(kind, 0.0) + 1e-9 < amount:
            return kind
    return None


def candidates(task: Task, nodes: Sequence[NodeView]) -> tuple[list[NodeView], str | None]:
    """The nodes that may take ``task`` now, and — when there are none among nodes that have its
    class — why (e.g. ``no online node has gpu ≥ 1 free``). No reason when no node has the class."""
    with_class = [n for n in nodes if task.class_name in n.classes]
    fit = [n for n in with_class if _mismatch(n.needs(task), n) is None and _short(n.needs(task), n) is None]
    if fit or not with_class:
        return fit, None
    labelled = [n for n in with_class if _mismatch(n.needs(task), n) is None]
    if not labelled:
        missing = sorted({m for n in with_class if (m := _mismatch(n.needs(task), n)) is not None})
        return [], f"no online node has label {' / '.join(missing)}"
    wants = []
    for kind in sorted({k for n in labelled if (k := _short(n.needs(task), n)) is not None}):
        amount = max(n.needs(task).requires.get(kind, 0.0) for n in labelled)
        wants.append(f"{kind} ≥ {_number(amount)}")
    return [], f"no online node has {' and '.join(wants)} free"


__all__ = ["Needs", "NodeView", "candidates", "count_used", "node_view", "parse_placement", "resource_item"]
