"""Decorators that mark a worker's lifecycle hooks.

A decorated function gets a ``__skalds_hook__`` attribute; ``BaseTaskWorker.__init_subclass__``
collects them per class (subclasses inherit and may override by name).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

HookKind = Literal["before", "main", "after", "release", "update"]
HOOK_KINDS: tuple[HookKind, ...] = ("before", "main", "after", "release", "update")
HOOK_ATTR = "__skalds_hook__"

F = TypeVar("F", bound=Callable[..., Any])


def _mark(kind: HookKind) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        setattr(func, HOOK_ATTR, kind)
        return func

    decorate.__name__ = f"run_{kind}_handler"
    return decorate


def run_before_handler(func: F) -> F:
    """Run ``func(self)`` before the main handler."""
    return _mark("before")(func)


def run_main_handler(func: F) -> F:
    """``func(self)`` is the task's main logic (required, exactly one per class)."""
    return _mark("main")(func)


def run_after_handler(func: F) -> F:
    """Run ``func(self)`` after the main handler returned normally."""
    return _mark("after")(func)


def release_handler(func: F) -> F:
    """Run ``func(self)`` exactly once when the worker ends, however it ends."""
    return _mark("release")(func)


def update_event_handler(func: F) -> F:
    """``func(self, data: T)`` receives each valid hot update as the worker's model."""
    return _mark("update")(func)
