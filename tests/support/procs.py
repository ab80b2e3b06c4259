"""Real subprocesses for the tests, and waiting on conditions (never bare sleeps)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Return the first truthy value of ``condition()``; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKALD", "REDIS_", "KAFKA_", "MONGO_"))}
    env.update(
        SKALDS_HOME=str(home),
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
        SKALDS_RECONCILE_INTERVAL="0.5",
        SKALDS_STOP_GRACE_PERIOD="3",
        SKALDS_YAML_POLL_INTERVAL="0.1",
        SKALDS_HEARTBEAT_INTERVAL="0.5",
    )
    env.update(extra)
    return env


class Proc:
    """A subprocess whose combined output goes to a log file the test can search."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> None:
        self.log_path = log
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args, env=env, cwd=str(cwd or ROOT), stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.pid = self.popen.pid

    @classmethod
    def python(cls, script: str | Path, *args: str, env: dict[str, str], log: Path, cwd: Path | None = None) -> Proc:
        return cls([sys.executable, str(script), *args], env, log, cwd)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_output(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.output()), timeout, what=f"{pattern!r} in {self.log_path.name}")

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 15.0) -> int:
        return self.popen.wait(timeout)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._fh.close()


def alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def any_pid_alive(pids: list[int]) -> bool:
    return any(alive(p) for p in pids)


__all__: list[Any] = ["Proc", "alive", "any_pid_alive", "base_env", "wait_for"]
