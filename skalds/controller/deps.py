"""How route handlers reach the service, and the one way they run blocking work.

Every store / bus / cache call is blocking, so handlers pass it to :func:`blocking`, which runs it
in anyio's worker threads; the event loop only ever awaits (docs/design.md, principle 9).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import anyio.to_thread
from fastapi import Request

from skalds.controller.dispatcher import Dispatcher, want_dispatch
from skalds.controller.service import ControllerService
from skalds.utils.logging import logger

T = TypeVar("T")


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in a worker thread and await its result."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def get_service(request: Request) -> ControllerService:
    return cast(ControllerService, request.app.state.service)


def get_dispatcher(request: Request) -> Dispatcher | None:
    return cast("Dispatcher | None", request.app.state.dispatcher)


def dispatch_now(service: ControllerService, dispatcher: Dispatcher | None, task_ids: Sequence[str]) -> None:
    """Assign ``task_ids`` (and the head of the queue) at once (blocking) — or, on a controller
    that may not dispatch (a standby, CONTROLLER mode), ask the leader to. A failure here never
    fails the request: the periodic sweep assigns whatever this pass missed."""
    try:
        if dispatcher is not None and dispatcher.may_dispatch():
            dispatcher.dispatch_pending(task_ids)
        else:
            want_dispatch(service, task_ids)
    except Exception as exc:
        if dispatcher is not None:
            dispatcher.last_error = f"{type(exc).__name__}: {exc}"
        logger.warning(f"dispatch after a task change failed ({exc}); the sweep will retry")
