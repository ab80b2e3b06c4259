"""A real ``skalds dev`` and Debian's chromium driven by Playwright (``scripts/test`` installs chromium).

The browser and each ``skalds dev`` are started once per module (starting them is most of the
cost); every test gets a fresh browser context, so cookies and storage never leak between tests.
Screenshots go to ``test-output/dashboard/`` at the repository root (gitignored).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.procs import ROOT, Proc, base_env, wait_for
from tests.support.servers import free_port

SHOTS = ROOT / "test-output" / "dashboard"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class Dev:
    """A running ``skalds dev`` and an HTTP client for setting up data behind the browser's back."""

    proc: Proc
    url: str
    http: httpx.Client
    token: str | None = None

    def create(self, **body: Any) -> dict[str, Any]:
        response = self.http.post("/api/tasks", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def status(self, task_id: str) -> str:
        status: str = self.http.get(f"/api/tasks/{task_id}").json()["status"]
        return status


def start_dev(tmp: Path, **env: str) -> Dev:
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {"DISPATCHER_INTERVAL": "1", "MONITOR_TASK_INTERVAL": "0.5"}
    settings.update(env)
    proc = Proc(
        [sys.executable, "-m", "skalds", "dev", "--port", str(port)],
        base_env(home, **settings),
        tmp / "dev.log",
        cwd=tmp,
    )
    token = env.get("SKALDS_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://127.0.0.1:{port}"
    dev = Dev(proc, url, httpx.Client(base_url=url, timeout=10.0, headers=headers), token)

    def classes() -> bool:
        try:
            response = dev.http.get("/api/tasks/classes", timeout=2)
        except httpx.HTTPError:
            return False
        return response.is_success and "Counter" in {c["className"] for c in response.json()["items"]}

    try:
        wait_for(classes, timeout=40, interval=0.1, what="skalds dev with the Counter class online")
    except AssertionError:
        stop_dev(dev)
        raise AssertionError(f"skalds dev did not come up:\n{proc.output()[-3000:]}") from None
    return dev


def stop_dev(dev: Dev) -> None:
    """Stop ``skalds dev`` and make sure its node skald and workers went with it."""
    family = dev.proc.descendants()
    dev.http.close()
    dev.proc.stop()
    for child in family:
        try:
            child.wait(10)
        except psutil.TimeoutExpired:
            child.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """``skalds dev`` on a free loopback port, auth off (loopback), in a fresh working directory."""
    server = start_dev(tmp_path_factory.mktemp("dev"))
    try:
        yield server
    finally:
        stop_dev(server)


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-output/dashboard/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
