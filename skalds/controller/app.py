"""``create_app()``: the System Controller as an asyncio FastAPI application.

The mode decides what runs beside the API (``SYSTEM_CONTROLLER_MODE``): ``CONTROLLER`` serves the API only (tasks
are stored but another controller dispatches them), ``MONITOR`` adds the heartbeat sampler, and
``DISPATCHER`` adds the dispatcher's sweep as well — and dispatches right after create / resume /
retry. Background loops are asyncio tasks started and stopped by the lifespan; their blocking
passes run in worker threads, and a pass in flight finishes before shutdown closes the backends.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from skalds import __version__
from skalds.controller.auth import (
    PUBLIC_PATHS,
    AuthDecision,
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
from skalds.controller.metrics import ControllerMetrics, HttpMetrics
from skalds.controller.metrics import router as metrics_router
from skalds.controller.monitor import Monitor
from skalds.controller.routes import auth as auth_routes
from skalds.controller.routes import bulk, compat, dashboard, events, skald_admin, skalds, system, tasks
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


@dataclass
class _Parts:
    """What one app runs, built and wired to each other once, in :func:`_build`."""

    config: ControllerConfig
    service: ControllerService
    metrics: ControllerMetrics
    hub: EventHub
    dispatcher: Dispatcher | None
    leader: LeaderLease | None
    monitor: Monitor | None


def _build(config: ControllerConfig) -> _Parts:
    """The service, metrics, SSE hub and (by mode) dispatcher, leader lease and monitor, each
    given the hooks it calls at construction: the metrics observe the service's publishes, the
    live view's activity, the dispatcher's assignments and the monitor's failovers; the SSE hub
    hears of the service's deletes."""
    metrics = ControllerMetrics()
    service = ControllerService(config, on_publish=metrics.count_published, on_activity=metrics.count_activity)
    metrics.add_store_gauges(service)
    leader = None
    if config.runs_dispatcher and config.runs_sampler:  # dispatching controllers compete for the lease
        leader = LeaderLease(
            lambda: service.state.cache, ttl=config.leader_lease_ttl, renew_interval=config.leader_renew_interval
        )
    dispatcher = None
    if config.runs_dispatcher:
        lease = leader
        dispatcher = Dispatcher(
            service,
            may_dispatch=(lambda: lease.is_leader) if lease is not None else None,
            on_assigned=functools.partial(metrics.observe_assignments, service),
        )
    monitor = _monitor(config, service, metrics, dispatcher)
    hub = EventHub(service, metrics)
    service.on_deleted = hub.task_deleted  # streamed as task_deleted, whatever the task's status
    return _Parts(config, service, metrics, hub, dispatcher, leader, monitor)


def _monitor(
    config: ControllerConfig, service: ControllerService, metrics: ControllerMetrics, dispatcher: Dispatcher | None
) -> Monitor | None:
    """The monitor (MONITOR and DISPATCHER modes). A MONITOR-mode controller fails tasks over
    without the lease: every failover is a fenced compare-and-set, so it cannot conflict with the
    leader's."""
    if not config.runs_sampler:
        return None

    def failed_over(task_ids: list[str]) -> None:
        metrics.failovers.inc(len(task_ids))
        if dispatcher is not None:
            dispatcher.dispatch_pending()  # at once, not at the next sweep

    return Monitor(service, on_failover=failed_over)


def _loop(app: FastAPI, key: str, interval: float, name: str, fn: Callable[[], object]) -> asyncio.Task[None]:
    """Start ``fn`` every ``interval`` seconds, its state shown under ``key`` in /api/system/status."""
    status = app.state.loops.setdefault(key, {"interval": interval})
    return asyncio.create_task(_every(interval, name, fn, status))


def _failover_loops(app: FastAPI, parts: _Parts) -> list[asyncio.Task[None]]:
    config, leader, monitor = parts.config, parts.leader, parts.monitor
    if monitor is None:
        return []
    loops = []
    if leader is not None:
        loops.append(_loop(app, "leaderLease", config.leader_renew_interval, "leader lease", leader.tick))

    def monitor_pass() -> None:
        if leader is None or leader.is_leader:
            monitor.pass_()

    interval = min(config.monitor_skald_interval, config.monitor_task_interval)
    loops.append(_loop(app, "monitor", interval, "monitor", monitor_pass))
    app.state.leader, app.state.monitor = leader, monitor
    return loops


def _start_loops(app: FastAPI, parts: _Parts) -> list[asyncio.Task[None]]:
    """Every background loop of the app's mode, started."""
    config, service, dispatcher = parts.config, parts.service, parts.dispatcher
    loops: list[asyncio.Task[None]] = [asyncio.create_task(parts.hub.run())]  # SSE poller (idle without clients)
    if config.runs_sampler:
        interval = config.monitor_task_interval
        loops.append(_loop(app, "heartbeatSampler", interval, "heartbeat sampler", service.sample_heartbeats))
    loops.extend(_failover_loops(app, parts))
    if dispatcher is not None:
        loops.append(_loop(app, "dispatcher", config.dispatcher_interval, "dispatcher", dispatcher.sweep))
        # what other controllers created or resumed: assigned within WANTED_POLL, not at the sweep
        loops.append(_loop(app, "dispatchWanted", WANTED_POLL, "dispatch wanted", dispatcher.dispatch_wanted))
    return loops


def _lifespan(parts: _Parts) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loops = _start_loops(app, parts)
        dispatcher = parts.dispatcher
        logger.info(
            f"system controller {__version__} in {parts.config.system_controller_mode.value} mode"
            + (f", dispatching by {dispatcher.strategy.value}" if dispatcher else "")
        )
        try:
            yield
        finally:
            parts.hub.close()
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            if parts.leader is not None:
                await anyio.to_thread.run_sync(parts.leader.release)  # a standby takes over at once
            await anyio.to_thread.run_sync(parts.service.close)
            logger.info("system controller stopped")

    return lifespan


def create_app(config: ControllerConfig | None = None) -> FastAPI:
    """The controller app; backends open lazily, loops start with the lifespan."""
    config = config if config is not None else ControllerConfig()
    parts = _build(config)
    auth = decide_token(config.system_controller_host, config.api_token)  # secure by default (auth.py)
    announce(auth)
    app = FastAPI(
        title="Skalds System Controller",
        version=__version__,
        description="Create, watch, update, pause and cancel long-lived tasks running on skalds.",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
        lifespan=_lifespan(parts),
    )
    app.state.service = parts.service
    app.state.dispatcher = parts.dispatcher
    app.state.config = config
    app.state.started_at = now_ms()
    app.state.loops = {}
    app.state.auth = auth
    app.state.token_throttle = throttle = TokenThrottle()  # shared by the middleware and the login form
    app.state.metrics = parts.metrics
    app.state.events = parts.hub
    install_error_handlers(app)
    _add_middlewares(app, config, auth, throttle, parts.metrics)
    for module in (bulk, tasks, skalds, skald_admin, system, events):
        app.include_router(module.router)
    app.include_router(metrics_router)
    app.include_router(auth_routes.router)
    app.include_router(dashboard.router)
    compat.install(app, config.dashboard_dir)  # 0.3.x names, matched before ours
    _declare_security(app, auth.enforced)
    return app


def _add_middlewares(
    app: FastAPI, config: ControllerConfig, auth: AuthDecision, throttle: TokenThrottle, metrics: ControllerMetrics
) -> None:
    # Outermost last. Requests pass: headers, (open mode) Host check, metrics, token, content type, size.
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes, read_timeout=config.request_timeout)
    app.add_middleware(JsonBodiesOnly)  # 415 before the body is read
    app.add_middleware(TokenAuth, token=auth.token, throttle=throttle)  # before the body is read: 401 costs nothing
    app.add_middleware(HttpMetrics, metrics=metrics)  # counts 401 / 413 / 415 too
    if not auth.enforced:  # with a token any Host is fine: the token is the guard
        app.add_middleware(LoopbackHostOnly, bound_host=config.system_controller_host)
    app.add_middleware(SecurityHeaders)  # on every response, errors of the middlewares above included


def _declare_security(app: FastAPI, enforced: bool) -> None:
    """Add the bearer scheme (and where it is required) to the generated OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_security_to_openapi(generate(), enforced, PUBLIC_PATHS)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
