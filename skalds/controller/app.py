"""``create_app()``: the System Controller as an asyncio FastAPI application.

The mode decides what runs beside the API (SPEC §1): ``CONTROLLER`` serves the API only (tasks
are stored but another controller dispatches them), ``MONITOR`` adds the heartbeat sampler, and
``DISPATCHER`` adds the dispatcher's sweep as well — and dispatches right after create / resume /
retry. Background loops are asyncio tasks started and stopped by the lifespan; their blocking
passes run in worker threads, and a pass in flight finishes before shutdown closes the backends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from skalds import __version__
from skalds.controller.config import ControllerConfig
from skalds.controller.dispatcher import Dispatcher
from skalds.controller.errors import install_error_handlers
from skalds.controller.limits import BodySizeLimit
from skalds.controller.routes import skalds, system, tasks
from skalds.controller.service import ControllerService
from skalds.model.task import now_ms
from skalds.utils.logging import logger


async def _every(interval: float, name: str, fn: Callable[[], object], status: dict[str, Any]) -> None:
    """Run ``fn`` in a worker thread now and then every ``interval`` seconds until cancelled."""
    last_error: str | None = None
    while True:
        try:
            await anyio.to_thread.run_sync(fn)  # not abandoned on cancel: shutdown waits for it
            status.update(lastRun=now_ms(), lastError=None)
            if last_error is not None:
                logger.info(f"{name} works again")
            last_error = None
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            status.update(lastRun=now_ms(), lastError=error)
            if error != last_error:  # say it once per distinct failure, not every interval
                logger.opt(exception=exc).warning(f"{name} failed: {error}")
            last_error = error
        await asyncio.sleep(interval)


def create_app(config: ControllerConfig | None = None) -> FastAPI:
    """The controller app; backends open lazily, loops start with the lifespan."""
    config = config if config is not None else ControllerConfig()
    service = ControllerService(config)
    dispatcher = Dispatcher(service) if config.runs_dispatcher else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loops: list[asyncio.Task[None]] = []
        if config.runs_sampler:
            status = app.state.loops.setdefault("heartbeatSampler", {"interval": config.monitor_task_interval})
            loops.append(
                asyncio.create_task(
                    _every(config.monitor_task_interval, "heartbeat sampler", service.sample_heartbeats, status)
                )
            )
        if dispatcher is not None:
            status = app.state.loops.setdefault("dispatcher", {"interval": config.dispatcher_interval})
            sweep = _every(config.dispatcher_interval, "dispatcher", dispatcher.sweep, status)
            loops.append(asyncio.create_task(sweep))
        logger.info(
            f"system controller {__version__} in {config.system_controller_mode.value} mode"
            + (f", dispatching by {dispatcher.strategy.value}" if dispatcher else "")
        )
        try:
            yield
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await anyio.to_thread.run_sync(service.close)
            logger.info("system controller stopped")

    app = FastAPI(
        title="Skalds System Controller",
        version=__version__,
        description="Create, watch, update, pause and cancel long-lived tasks running on skalds.",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.dispatcher = dispatcher
    app.state.config = config
    app.state.started_at = now_ms()
    app.state.loops = {}
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    for module in (tasks, skalds, system):
        app.include_router(module.router)
    return app
