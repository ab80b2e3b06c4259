"""Driver errors become :class:`~skalds.errors.BackendUnavailable` at the edge of every backend.

Callers of a task store, state cache or event bus must not need to know which driver is behind
it to tell "the server cannot serve right now" (retry later; HTTP 503) from a bug. So every method
of a driver class is wrapped: an exception listed in the driver's ``unavailable_errors`` (its
connection, timeout and "disk full" errors) leaving the *outermost* driver call is raised again
as ``BackendUnavailable`` naming the backend, with the driver's error as its cause. Calls a driver
makes to its own methods see the driver's errors unchanged, so its own handling (dropping a broken
connection, falling back on an older server) keeps working. Domain errors (:class:`SkaldsError`)
pass through untouched.

The base classes (:class:`~skalds.backends.store.base.TaskStore`,
:class:`~skalds.backends.cache.base.StateCache`, :class:`~skalds.backends.bus.base.EventBus`)
install this for themselves and for every subclass, so a new driver only declares its error types.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from skalds.errors import BackendUnavailable, SkaldsError
from skalds.utils.logging import mask_secrets

F = TypeVar("F", bound=Callable[..., Any])

#: Per thread: ids of the backend objects with a guarded call in progress (only the outermost
#: call of an object translates).
_active = threading.local()


def describe_unavailable(kind: str, exc: BaseException) -> str:
    """The message of a ``BackendUnavailable`` for a driver error: which backend, what failed."""
    detail = str(exc).strip() or "no detail"
    return mask_secrets(f"the {kind} cannot be used right now ({type(exc).__name__}: {detail})")


def _guarded(fn: F) -> F:
    @functools.wraps(fn)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        ids: set[int] | None = getattr(_active, "ids", None)
        if ids is None:
            ids = _active.ids = set()
        me = id(self)
        if me in ids:  # an inner call: the driver's own handlers see its own errors
            return fn(self, *args, **kwargs)
        ids.add(me)
        try:
            return fn(self, *args, **kwargs)
        except SkaldsError:
            raise
        except self.unavailable_errors as exc:
            raise BackendUnavailable(self.unavailable_message(exc), backend=self.backend_kind) from exc
        finally:
            ids.discard(me)

    guarded.__skalds_guarded__ = True  # type: ignore[attr-defined]
    return guarded  # type: ignore[return-value]


def guard_methods(cls: type) -> None:
    """Wrap every plain method defined in ``cls`` itself (not dunders, not generators)."""
    for name, value in list(vars(cls).items()):
        if name.startswith("__") or not inspect.isfunction(value):
            continue
        if getattr(value, "__skalds_guarded__", False) or inspect.isgeneratorfunction(value):
            continue
        setattr(cls, name, _guarded(value))


class Guarded:
    """Base of the backend contracts: a subclass's methods are guarded as it is defined.

    ``backend_kind`` names the backend in messages; ``unavailable_errors`` lists the driver's
    exception types that mean "cannot serve right now" (``OSError`` covers refused connections,
    socket timeouts and a full disk everywhere).
    """

    backend_kind: str = "backend"
    unavailable_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        guard_methods(cls)

    def unavailable_message(self, exc: BaseException) -> str:
        """The message for a driver error (drivers refine it, e.g. to name a full disk)."""
        return describe_unavailable(self.backend_kind, exc)


__all__ = ["Guarded", "describe_unavailable", "guard_methods"]
