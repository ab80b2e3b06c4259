"""Prometheus metrics of one controller app, served at ``/metrics``.

Why a registry per app (not prometheus_client's global one): tests and ``skalds dev`` may build
several apps in one process, and a global registry would refuse the second set of names and mix
their values.

What is measured, and where it comes from:

======================================  =========  ================================================
metric                                  type       source
======================================  =========  ================================================
``skalds_tasks{status,class_name}``     gauge      the store, counted at scrape time (one GROUP BY)
``skalds_skalds{mode,status}``          gauge      the fleet (state cache), read at scrape time
``skalds_dispatch_latency_seconds``     histogram  create → first assignment, see below
``skalds_failovers_total``              counter    the monitor's ``on_failover`` hook (app.py)
``skalds_events_consumed_total{kind}``  counter    status changes read from the task records (the
                                                   activity log: created, running, failed, …)
``skalds_events_published_total``       counter    bus events this controller published, by topic
                                                   and result (``ok`` / ``failed``)
``skalds_http_requests_total``          counter    :class:`HttpMetrics` middleware, by route template
``skalds_sse_events_total{type}``       counter    events fanned out to SSE subscribers
``skalds_sse_subscribers``              gauge      open SSE streams
``skalds_sse_dropped_total``            counter    SSE clients dropped for reading too slowly
======================================  =========  ================================================

Gauges that reflect the store are computed on scrape (a custom collector) rather than kept up to
date by hand: the store is the truth (docs/design.md, principle 1), other controllers change it too, and a
scrape every 15–60 s costs one count per (status, class). The scrape runs in a worker thread, never on the loop.

Dispatch latency is observed by :meth:`ControllerMetrics.observe_assignments`, the Dispatcher's
``on_assigned`` hook, after every ``dispatch_pending`` pass (the one pass both the sweep and
create-triggered dispatch go through): for each task it assigned, it reads the task back and
observes ``now - createDateTime`` when this was its first assignment (epoch 1). Later assignments
(retries, resumes, failovers) would measure how long the task had lived, not how long dispatch
took, so they are left out.

The app wires every hook once, at construction (``create_app``): the service's ``on_publish``,
its live view's ``on_activity``, the dispatcher's ``on_assigned``, the monitor's ``on_failover``.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any, cast

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skalds.backends.store.base import TaskQuery
from skalds.controller.live import Activity
from skalds.controller.service import SHARED_SNAPSHOT_AGE, ControllerService
from skalds.model.task import TaskLifecycleStatus, now_ms

#: Buckets of the dispatch latency (seconds): milliseconds when dispatch runs on create, up to the
#: sweep interval and beyond for tasks that waited for a node or a dependency.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class StoreCollector(Collector):
    """Task and skald gauges, read from the backends when Prometheus scrapes."""

    def __init__(self, service: ControllerService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily(
            "skalds_tasks", "Tasks in the store by lifecycle status and class", labels=["status", "class_name"]
        )
        for (status, class_name), n in sorted(self.service.store.counts().items()):
            tasks.add_metric([status, class_name], n)
        yield tasks
        skalds = GaugeMetricFamily("skalds_skalds", "Known skalds by mode and liveness", labels=["mode", "status"])
        fleet = Tally((s.type, "online" if s.online else "offline") for s in self.service.fleet.all())
        for mode in ("node", "edge"):
            for status in ("online", "offline"):
                skalds.add_metric([mode, status], fleet.get((mode, status), 0))
        yield skalds
        yield from self._usage()

    def _usage(self) -> Iterator[Metric]:
        """CPU and memory of each running task's worker process (from the shared snapshot)."""
        labels = ["task_id", "class_name", "executor"]
        cpu = GaugeMetricFamily("skalds_task_cpu_percent", "A running task's worker CPU, % of one core", labels=labels)
        memory = GaugeMetricFamily("skalds_task_memory_bytes", "A running task's worker resident memory", labels=labels)
        snapshot = self.service.live.snapshot(max_age=SHARED_SNAPSHOT_AGE)
        for task in snapshot.with_status(TaskLifecycleStatus.RUNNING):
            usage = snapshot.state(task.id).get("usage") or {}
            values = [task.id, task.class_name, task.executor or ""]
            if isinstance(usage.get("cpuPercent"), int | float):
                cpu.add_metric(values, float(usage["cpuPercent"]))
            if isinstance(usage.get("memoryBytes"), int | float):
                memory.add_metric(values, float(usage["memoryBytes"]))
        yield cpu
        yield memory


class ControllerMetrics:
    """Every metric of one controller app, in its own registry.

    The app records into it through the hooks of the parts that observe something (the methods
    below, and ``failovers`` from the monitor's); the EventHub and :class:`HttpMetrics` are given it.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.failovers = Counter(
            "skalds_failovers", "Tasks returned to dispatch because their skald was lost", registry=self.registry
        )
        self.dispatch_latency = Histogram(
            "skalds_dispatch_latency_seconds",
            "Time from a task's creation to its first assignment to a skald",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.http_requests = Counter(
            "skalds_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.events_consumed = Counter(
            "skalds_events_consumed",
            "Task status changes this controller read from the store, by kind (created, running, failed, ...)",
            ["kind"],
            registry=self.registry,
        )
        self.events_published = Counter(
            "skalds_events_published",
            "Bus events this controller published, by topic and result",
            ["topic", "result"],
            registry=self.registry,
        )
        self.sse_events = Counter(
            "skalds_sse_events", "Events fanned out to SSE subscribers, by type", ["type"], registry=self.registry
        )
        self.sse_subscribers = Gauge("skalds_sse_subscribers", "Open SSE streams", registry=self.registry)
        self.sse_dropped = Counter(
            "skalds_sse_dropped", "SSE clients dropped because they read too slowly", registry=self.registry
        )

    def add_store_gauges(self, service: ControllerService) -> None:
        """Serve the task and skald gauges of ``service``'s backends (read at scrape time)."""
        self.registry.register(StoreCollector(service))

    def count_published(self, topic: str, ok: bool) -> None:
        """The service's ``on_publish`` hook: one bus event published, or failed."""
        self.events_published.labels(topic, "ok" if ok else "failed").inc()

    def count_activity(self, entry: Activity) -> None:
        """The live view's ``on_activity`` hook: one status change read from the store."""
        self.events_consumed.labels(entry.kind).inc()

    def observe_assignments(self, service: ControllerService, assigned: list[tuple[str, str]]) -> None:
        """Record the dispatch latency of the first assignments among ``assigned`` (blocking)."""
        if not assigned:
            return
        now = now_ms()
        for task in service.store.list(TaskQuery(ids=tuple(task_id for task_id, _ in assigned))).items:
            if task.epoch == 1:
                self.dispatch_latency.observe(max(now - task.create_date_time, 0) / 1000)


class HttpMetrics:
    """Count responses by method, route template (never the raw path: ids would explode the label
    set) and status. Requests that match no route are counted under ``route="unmatched"``."""

    def __init__(self, app: ASGIApp, metrics: ControllerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                route: Any = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self.metrics.http_requests.labels(scope["method"], template, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


async def _scrape(request: Request) -> Response:
    metrics = cast(ControllerMetrics, request.app.state.metrics)
    body = await anyio.to_thread.run_sync(generate_latest, metrics.registry)  # reads the store: off the loop
    return Response(body, media_type=CONTENT_TYPE_LATEST)


router = APIRouter(tags=["system"])
router.add_api_route(
    "/metrics",
    _scrape,
    methods=["GET"],
    response_class=Response,
    summary="Prometheus metrics (text exposition format)",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "metrics"}},
)
