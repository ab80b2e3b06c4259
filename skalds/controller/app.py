"""``create_app()``: the System Controller as an asyncio FastAPI application.

The mode decides what runs beside the API (``SYSTEM_CONTROLLER_MODE``): ``CONTROLLER`` serves the API only (tasks
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
from skalds.controller.auth import (
    PUBLIC_PATHS,
    TokenAuth,
    TokenThrottle,
    add_security_to_openapi,
    announce,
    decide_token,
)
from skalds.controller.config import ControllerConfig
from skalds.controller.dispatcher import WANTED_POLL, Dispatcher
from skalds.controller.errors import install_error_handlers
from skalds.controller.events import EventHub
from skalds.controller.hardening import JsonBodiesOnly, LoopbackHostOnly, SecurityHeaders
from skalds.controller.leader import LeaderLease
from skalds.controller.limits import BodySizeLimit
from skalds.controller.metrics import ControllerMetrics, HttpMetrics, instrument_dispatcher
from skalds.controller.metrics import router as metrics_router
from skalds.controller.monitor import Monitor
from skalds.controller.routes import auth as auth_routes
from skalds.controller.routes import compat, dashboard, events, skalds, system, tasks
from skalds.controller.service import ControllerService
from skalds.model.task import now_ms
from skalds.utils.logging import logger, mask_secrets


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
            error = mask_secrets(f"{type(exc).__name__}: {exc}")  # shown by /api/system/status
            status.update(lastRun=now_ms(), lastError=error)
            if error != last_error:  # say it once per distinct failure, not every interval
                logger.opt(exception=exc).warning(f"{name} failed: {error}")
            last_error = error
        await asyncio.sleep(interval)


def _failover_parts(
    config: ControllerConfig, service: ControllerService, dispatcher: Dispatcher | None
) -> tuple[LeaderLease | None, Monitor | None]:
    """The leader lease (dispatching controllers compete for it) and the monitor (MONITOR and
    DISPATCHER modes). A MONITOR-mode controller fails tasks over without the lease: every
    failover is a fenced compare-and-set, so it cannot conflict with the leader's."""
    if not config.runs_sampler:
        return None, None
    leader = None
    if dispatcher is not None:
        leader = LeaderLease(
            lambda: service.state.cache, ttl=config.leader_lease_ttl, renew_interval=config.leader_renew_interval
        )
        lease = leader
        dispatcher.may_dispatch = lambda: lease.is_leader
    return leader, Monitor(service)


def _failover_loops(
    app: FastAPI, config: ControllerConfig, leader: LeaderLease | None, monitor: Monitor | None
) -> list[asyncio.Task[None]]:
    if monitor is None:
        return []
    loops = []
    if leader is not None:
        status = app.state.loops.setdefault("leaderLease", {"interval": config.leader_renew_interval})
        loops.append(asyncio.create_task(_every(config.leader_renew_interval, "leader lease", leader.tick, status)))

    def failed_over(task_ids: list[str]) -> None:
        counter = getattr(getattr(app.state, "metrics", None), "failovers", None)
        if counter is not None:
            counter.inc(len(task_ids))
        dispatcher = getattr(app.state, "dispatcher", None)
        if dispatcher is not None:
            dispatcher.dispatch_pending()  # at once, not at the next sweep

    monitor.on_failover = failed_over

    def monitor_pass() -> None:
        if leader is None or leader.is_leader:
            monitor.pass_()

    interval = min(config.monitor_skald_interval, config.monitor_task_interval)
    status = app.state.loops.setdefault("monitor", {"interval": interval})
    loops.append(asyncio.create_task(_every(interval, "monitor", monitor_pass, status)))
    app.state.leader, app.state.monitor = leader, monitor
    return loops


def create_app(config: ControllerConfig | None = None) -> FastAPI:
    """The controller app; backends open lazily, loops start with the lifespan."""
    config = config if config is not None else ControllerConfig()
    service = ControllerService(config)
    dispatcher = Dispatcher(service) if config.runs_dispatcher else None
    auth = decide_token(config.system_controller_host, config.api_token)  # secure by default (auth.py)
    announce(auth)
    metrics = ControllerMetrics(service)
    if dispatcher is not None:
        instrument_dispatcher(dispatcher, metrics)
    hub = EventHub(service, metrics)
    leader, monitor = _failover_parts(config, service, dispatcher)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loops: list[asyncio.Task[None]] = [asyncio.create_task(hub.run())]  # SSE poller (idle without clients)
        if config.runs_sampler:
            status = app.state.loops.setdefault("heartbeatSampler", {"interval": config.monitor_task_interval})
            loops.append(
                asyncio.create_task(
                    _every(config.monitor_task_interval, "heartbeat sampler", service.sample_heartbeats, status)
                )
            )
        loops.extend(_failover_loops(app, config, leader, monitor))
        if dispatcher is not None:
            status = app.state.loops.setdefault("dispatcher", {"interval": config.dispatcher_interval})
            sweep = _every(config.dispatcher_interval, "dispatcher", dispatcher.sweep, status)
            loops.append(asyncio.create_task(sweep))
            # what other controllers created or resumed: assigned within WANTED_POLL, not at the sweep
            status = app.state.loops.setdefault("dispatchWanted", {"interval": WANTED_POLL})
            wanted = _every(WANTED_POLL, "dispatch wanted", dispatcher.dispatch_wanted, status)
            loops.append(asyncio.create_task(wanted))
        logger.info(
            f"system controller {__version__} in {config.system_controller_mode.value} mode"
            + (f", dispatching by {dispatcher.strategy.value}" if dispatcher else "")
        )
        try:
            yield
        finally:
            hub.close()
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            if leader is not None:
                await anyio.to_thread.run_sync(leader.release)  # a standby takes over at once
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
    app.state.auth = auth
    app.state.token_throttle = throttle = TokenThrottle()  # shared by the middleware and the login form
    app.state.metrics = metrics
    app.state.events = hub
    install_error_handlers(app)
    # Outermost last. Requests pass: headers, (open mode) Host check, metrics, token, content type, size.
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes, read_timeout=config.request_timeout)
    app.add_middleware(JsonBodiesOnly)  # 415 before the body is read
    app.add_middleware(TokenAuth, token=auth.token, throttle=throttle)  # before the body is read: 401 costs nothing
    app.add_middleware(HttpMetrics, metrics=metrics)  # counts 401 / 413 / 415 too
    if not auth.enforced:  # with a token any Host is fine: the token is the guard
        app.add_middleware(LoopbackHostOnly, bound_host=config.system_controller_host)
    app.add_middleware(SecurityHeaders)  # on every response, errors of the middlewares above included
    for module in (tasks, skalds, system, events):
        app.include_router(module.router)
    app.include_router(metrics_router)
    app.include_router(auth_routes.router)
    app.include_router(dashboard.router)
    compat.install(app, config.dashboard_dir)  # 0.3.x names, matched before ours
    _declare_security(app, auth.enforced)
    return app


def _declare_security(app: FastAPI, enforced: bool) -> None:
    """Add the bearer scheme (and where it is required) to the generated OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_security_to_openapi(generate(), enforced, PUBLIC_PATHS)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
