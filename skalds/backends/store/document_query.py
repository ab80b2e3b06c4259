"""What a task listing means, independent of any database.

The document stores (PostgreSQL, MongoDB) translate a :class:`~skalds.backends.store.base.TaskQuery`
into their own query language. The meaning of a query — which fields it compares, that an empty
``statuses``/``ids`` tuple matches nothing, that ``search`` is a case-sensitive substring of the id
or the name, the sort orders and their tie-breaks — is decided here once, mirroring the SQLite
driver, so the drivers only spell it. That keeps the part of the MongoDB driver that cannot be run
against a real server here as small as possible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skalds.backends.store.base import TaskQuery

#: Document fields (by alias) that listings filter or sort on; the PostgreSQL driver keeps a real
#: column for each, the MongoDB driver indexes some of them.
INDEXED_FIELDS: tuple[str, ...] = (
    "className",
    "lifecycleStatus",
    "executor",
    "mode",
    "priority",
    "createDateTime",
    "version",
    "name",
)

#: Fields ``TaskQuery.search`` looks into (substring match, case-sensitive).
SEARCH_FIELDS: tuple[str, ...] = ("id", "name")

ASCENDING = 1
DESCENDING = -1

#: ``TaskQuery.order`` -> sort keys (field alias, direction), ending with ``id`` so that the order
#: is total and pages never overlap.
ORDERS: dict[str, tuple[tuple[str, int], ...]] = {
    "createDateTime": (("createDateTime", ASCENDING), ("id", ASCENDING)),
    "-createDateTime": (("createDateTime", DESCENDING), ("id", DESCENDING)),
    "-priority": (("priority", DESCENDING), ("createDateTime", ASCENDING), ("id", ASCENDING)),
    "priority": (("priority", ASCENDING), ("createDateTime", ASCENDING), ("id", ASCENDING)),
    # Not an indexed field: these two sort every matching task (fine for listings, not for queues).
    "updateDateTime": (("updateDateTime", ASCENDING), ("id", ASCENDING)),
    "-updateDateTime": (("updateDateTime", DESCENDING), ("id", DESCENDING)),
    # Status names byte-wise (Assigning, Cancelled, Created, Failed, Finished, Paused, Running).
    "lifecycleStatus": (("lifecycleStatus", ASCENDING), ("createDateTime", ASCENDING), ("id", ASCENDING)),
    "-lifecycleStatus": (("lifecycleStatus", DESCENDING), ("createDateTime", DESCENDING), ("id", DESCENDING)),
}


@dataclass(frozen=True)
class Conditions:
    """The filters of a listing, all of which must hold.

    ``equal``: field == value. ``one_of``: field is one of the values (an empty tuple matches
    nothing). ``substring``: contained in at least one of :data:`SEARCH_FIELDS`, or None.
    """

    equal: dict[str, Any] = field(default_factory=dict)
    one_of: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    substring: str | None = None


def conditions(query: TaskQuery) -> Conditions:
    """The filters of ``query`` by field alias, with enum members replaced by their values."""
    one_of: dict[str, tuple[Any, ...]] = {}
    if query.statuses is not None:
        one_of["lifecycleStatus"] = tuple(_plain(s) for s in query.statuses)
    if query.ids is not None:
        one_of["id"] = tuple(query.ids)
    equal: dict[str, Any] = {}
    for alias, value in (("className", query.class_name), ("executor", query.executor), ("mode", query.mode)):
        if value is not None:
            equal[alias] = _plain(value)
    return Conditions(equal=equal, one_of=one_of, substring=query.search or None)


def sort_keys(query: TaskQuery) -> tuple[tuple[str, int], ...]:
    """The sort keys of ``query.order``; ValueError (as the SQLite driver) for an unknown order."""
    keys = ORDERS.get(query.order)
    if keys is None:
        raise ValueError(f"unknown task order {query.order!r} (use one of {', '.join(ORDERS)})")
    return keys


def page(query: TaskQuery) -> tuple[int, int | None]:
    """``(offset, limit)`` clamped at zero; limit None means no limit, 0 means no items."""
    return max(query.offset, 0), None if query.limit is None else max(query.limit, 0)


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)
