"""``/api/events``: Server-Sent Events of the fleet and of the tasks, fed by the app's EventHub.

Why sse-starlette rather than a bare ``StreamingResponse``: an open event stream is a request that
never ends, and uvicorn's graceful shutdown waits for every request — a dashboard left open would
keep a stopped controller alive forever. sse-starlette ends its streams when uvicorn is asked to
exit, sends the keep-alive comments (every 15 s, so proxies keep the connection) and cancels the
generator when the client goes away, which is where the subscription is released.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, cast

from fastapi import APIRouter, Query, Request
from sse_starlette import EventSourceResponse

from skalds.controller.errors import unprocessable
from skalds.controller.events import SKALDS, STREAM_TYPES, TASKS, EventHub

#: Seconds between keep-alive comments.
KEEP_ALIVE_S = 15
#: A single write that blocks this long means the client stopped reading: the stream is closed.
SEND_TIMEOUT_S = 30

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": 'A stream of `data: {"type": ..., "data": {...}, "timestamp": ms}` events; the first '
        "is a `snapshot`. Comment lines (`: ping`) keep the connection alive.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}

TYPES_DOC = (
    "only these event types, separated by commas (the snapshot always comes first); e.g. "
    "`task_status,task_deleted` leaves out the heartbeats, which change every second for every running task"
)

router = APIRouter(prefix="/api/events", tags=["events"])


def encode(batch: list[dict[str, Any]]) -> bytes:
    """One pass's events as SSE frames in one chunk (``data: <json>\n\n`` each): one write per
    pass rather than one per event — with thousands of heartbeats a second, the per-write path
    through the ASGI stack cost more than the JSON. Compact JSON never contains a newline."""
    return b"".join(b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in batch)


async def _stream(
    hub: EventHub, stream: str, task_id: str | None, types: frozenset[str] | None
) -> AsyncIterator[bytes]:
    sub = hub.subscribe(stream, task_id, types)  # here, not in the handler: released even if never started
    try:
        while True:
            batch = await sub.queue.get()
            if batch is None:  # dropped (too slow) or shutting down
                return
            yield encode(batch)
    finally:
        hub.unsubscribe(sub)


def _response(
    request: Request, stream: str, task_id: str | None = None, types: str | None = None
) -> EventSourceResponse:
    hub = cast(EventHub, request.app.state.events)
    wanted = frozenset(t.strip() for t in types.split(",") if t.strip()) if types else None
    if wanted is not None:
        unknown = wanted - STREAM_TYPES[stream]
        if unknown:
            raise unprocessable(
                "unknown_event_type",
                f"unknown event type(s) {', '.join(sorted(unknown))}; "
                f"this stream has {', '.join(sorted(STREAM_TYPES[stream]))}",
            )
    body = _stream(hub, stream, task_id, wanted)
    return EventSourceResponse(body, ping=KEEP_ALIVE_S, sep="\n", send_timeout=SEND_TIMEOUT_S)


@router.get(
    "/skalds",
    response_class=EventSourceResponse,
    responses=_STREAM_DOC,
    summary="Live skald changes (skald_status, skald_heartbeat)",
)
async def skald_events(
    request: Request,
    types: str | None = Query(None, description=TYPES_DOC, max_length=500),
) -> EventSourceResponse:
    return _response(request, SKALDS, types=types)


@router.get(
    "/tasks",
    response_class=EventSourceResponse,
    responses=_STREAM_DOC,
    summary="Live task changes (task_status, task_heartbeat, task_error, task_exception, task_deleted)",
)
async def task_events(
    request: Request,
    task_id: str | None = Query(None, alias="taskId", description="only this task's events"),
    types: str | None = Query(None, description=TYPES_DOC, max_length=500),
) -> EventSourceResponse:
    return _response(request, TASKS, task_id or None, types)
