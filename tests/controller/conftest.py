"""A real controller (uvicorn subprocess) and real skalds on one embedded SQLite file."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.procs import ROOT, Proc, base_env, wait_for
from tests.support.workers import read_events

RUNNER = ROOT / "tests" / "support" / "run_skald.py"


def failover_settings(port: int, *, timeout: float, lease_ttl: float, renew: float) -> dict[str, str]:
    """A controller's environment for failover tests: fast monitor and dispatcher passes."""
    return {
        "SYSTEM_CONTROLLER_PORT": str(port),
        "MONITOR_HEARTBEAT_TIMEOUT": str(timeout),
        "MONITOR_SKALD_INTERVAL": "0.5",
        "MONITOR_TASK_INTERVAL": "0.5",
        "DISPATCHER_INTERVAL": "0.5",
        "SKALDS_LEADER_LEASE_TTL": str(lease_ttl),
        "SKALDS_LEADER_RENEW_INTERVAL": str(renew),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Controller:
    """A controller process and an HTTP client pointed at it."""

    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=10.0)

    def ready(self) -> bool:
        try:
            return self.http.get("/api/system/health").status_code == 200
        except httpx.TransportError:
            return False

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/tasks/{task_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def create(self, **body: Any) -> dict[str, Any]:
        body.setdefault("attachments", {})
        response = self.http.post("/api/tasks", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def set_status(self, task_id: str, status: str) -> httpx.Response:
        return self.http.put(f"/api/tasks/{task_id}/status", json={"status": status})

    def status_is(self, task_id: str, status: str) -> bool:
        return self.task(task_id)["status"] == status

    def bulk(self, action: str, dry_run: bool = False, **filter_: object) -> dict[str, Any]:
        """``POST /api/tasks/bulk``: ``action`` on every task ``filter_`` matches; its 200 answer."""
        response = self.http.post("/api/tasks/bulk", json={"action": action, "filter": filter_, "dryRun": dry_run})
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def start_controller(procs: list[Proc], home: Path, tmp_path: Path) -> Iterator[Callable[..., Controller]]:
    """Start ``python -m skalds.controller.main``; extra keyword arguments become env variables."""
    made: list[Controller] = []

    def start(**env: str) -> Controller:
        port = free_port()
        settings = {"SYSTEM_CONTROLLER_PORT": str(port), "DISPATCHER_INTERVAL": "1", "MONITOR_TASK_INTERVAL": "0.5"}
        settings.update(env)
        proc = Proc(
            [sys.executable, "-m", "skalds.controller.main"],
            base_env(home, EVENTS_FILE=str(tmp_path / "events.jsonl"), **settings),
            tmp_path / f"controller-{port}.log",
        )
        procs.append(proc)
        controller = Controller(proc, port)
        made.append(controller)
        wait_for(controller.ready, timeout=20, interval=0.05, what="controller health")
        return controller

    yield start
    for c in made:
        c.http.close()


@pytest.fixture
def start_skald(procs: list[Proc], home: Path, tmp_path: Path) -> Callable[..., Proc]:
    """Start a skald with the test workers: ``start_skald("node-a")`` or ``("edge-1", "edge", yaml)``."""

    def start(skald_id: str, mode: str = "node", yaml_file: Path | None = None, **env: str) -> Proc:
        args = [mode, skald_id] + ([str(yaml_file)] if yaml_file else [])
        proc = Proc.python(
            RUNNER,
            *args,
            env=base_env(home, EVENTS_FILE=str(tmp_path / "events.jsonl"), **env),
            log=tmp_path / f"{skald_id}.log",
        )
        procs.append(proc)
        proc.wait_output(rf"listening for commands as group skald-{skald_id}", timeout=20)
        return proc

    return start


@pytest.fixture
def events(tmp_path: Path) -> Callable[..., list[dict[str, Any]]]:
    """``events(task_id, kind=None)``: what the test workers recorded, in order."""

    def read(task_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in read_events(str(tmp_path / "events.jsonl"))
            if e["task"] == task_id and (kind is None or e["event"] == kind)
        ]

    return read


@pytest.fixture
def api(start_controller: Callable[..., Controller], start_skald: Callable[..., Proc]) -> Controller:
    """A controller and one node skald ("node-a") it sees online (modules may define their own)."""
    controller = start_controller()
    start_skald("node-a")
    wait_for(lambda: online(controller, "node-a"), what="node-a online")
    return controller


def online(controller: Controller, skald_id: str) -> bool:
    response = controller.http.get(f"/api/skalds/{skald_id}")
    return response.status_code == 200 and response.json()["status"] == "online"
