"""Latency and memory benchmarks of a node skald on the embedded SQLite backend (no servers).

Usage::

    python bench/run_embedded.py            # full run (about two minutes)
    python bench/run_embedded.py --quick    # short run
    python bench/run_embedded.py --json out.json

Real processes throughout: a node skald (``bench/bench_workers.py``) runs as a subprocess with
``SKALDS_HOME`` in a fresh temporary directory; this process is the client. Worker hooks report
``time.time()`` to a unix datagram socket this process listens on, so a latency is the worker's
timestamp minus the timestamp taken here just before the client call.

1. create → main: ``create_task(..., executor=...)`` until the worker's @run_main_handler starts.
2. update → handler: ``send_worker_update`` and ``update_attachments`` to one long-running task.
3. cancel → release handler ran, and → worker process gone (``pidfd`` readable).
4. SIGTERM to a skald running 20 workers → the skald exited and all 20 workers are gone.
5. USS / PSS of idle workers (and of the skald and its fork server, for context).

Every wait is on a condition with a timeout. Whatever happens, every process started here is
stopped on exit (SIGTERM, then SIGKILL for anything left).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from skalds.client import SkaldsClient
from skalds.model.task import Task

HERE = Path(__file__).resolve().parent
WORKERS = HERE / "bench_workers.py"
CLASS = "BenchWorker"
MB = 1024 * 1024

# State-cache heartbeat values the skald writes when a task's worker has ended (its last write).
BEAT_FINISHED = 200
BEAT_CANCELLED = -2


class BenchError(RuntimeError):
    pass


# ---- statistics ------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


# ---- the receiving end of the workers' reports -----------------------------------------------
class Receiver(threading.Thread):
    """Collects the workers' datagrams; other threads wait for a given report with a timeout."""

    def __init__(self, path: str) -> None:
        super().__init__(name="bench-receiver", daemon=True)
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MB)
        self._cond = threading.Condition()
        self._seen: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.2)
            if not ready:
                continue
            try:
                data = self.sock.recv(65536)
            except OSError:
                continue
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            key: tuple[Any, ...] = (msg.get("k"), msg.get("task"))
            if msg.get("k") == "update":
                key = (*key, msg.get("via"), msg.get("seq"))
            with self._cond:
                self._seen[key] = msg
                self._cond.notify_all()

    def wait(self, key: tuple[Any, ...], timeout: float, what: str = "") -> dict[str, Any]:
        with self._cond:
            if not self._cond.wait_for(lambda: key in self._seen, timeout):
                raise BenchError(f"timed out after {timeout:.0f} s waiting for {what or key}")
            return self._seen[key]

    def wait_many(self, keys: list[tuple[Any, ...]], timeout: float) -> dict[tuple[Any, ...], dict[str, Any]]:
        """All the reports that arrive within ``timeout`` (missing keys are simply absent)."""
        with self._cond:
            self._cond.wait_for(lambda: all(k in self._seen for k in keys), timeout)
            return {k: self._seen[k] for k in keys if k in self._seen}

    def get(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._cond:
            return self._seen.get(key)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=2.0)
        self.sock.close()


# ---- processes ---------------------------------------------------------------------------------
class Tracker:
    """Every process this benchmark caused to exist, so that none outlives it."""

    def __init__(self) -> None:
        self.skalds: list[SkaldProc] = []
        self.procs: dict[int, psutil.Process] = {}

    def track(self, pid: int) -> None:
        if pid in self.procs:
            return
        with contextlib.suppress(psutil.Error):
            self.procs[pid] = psutil.Process(pid)

    def cleanup(self) -> None:
        for skald in self.skalds:
            skald.stop(timeout=20.0)
        leftovers = [p for p in self.procs.values() if _alive(p)]
        for p in leftovers:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(leftovers, timeout=5.0)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class SkaldProc:
    def __init__(self, tracker: Tracker, skald_id: str, env: dict[str, str], workdir: str, log_level: str) -> None:
        self.skald_id = skald_id
        self.log_path = os.path.join(workdir, f"{skald_id}.log")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        child_env = {**env, "BENCH_PARENT_PID": str(os.getpid()), "LOG_LEVEL": log_level}
        self.popen = subprocess.Popen(
            [sys.executable, str(WORKERS), skald_id],
            cwd=workdir,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our own signals only; a terminal's Ctrl-C reaches this process
        )
        self.pid = self.popen.pid
        tracker.skalds.append(self)
        self._tracker = tracker

    def descendants(self) -> list[psutil.Process]:
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []
        for k in kids:
            self._tracker.track(k.pid)
        return kids

    def forkserver(self) -> psutil.Process | None:
        try:
            for child in psutil.Process(self.pid).children():
                if child.name().startswith("skalds-forksrv"):
                    return child
        except psutil.Error:
            pass
        return None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait; SIGKILL the skald and its descendants if it does not exit in time."""
        if self.popen.poll() is None:
            self.descendants()
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"skald {self.skald_id} ignored SIGTERM for {timeout:.0f} s; SIGKILL", file=sys.stderr)
                kids = self.descendants()
                self.popen.kill()
                self.popen.wait(5.0)
                for k in kids:
                    with contextlib.suppress(psutil.Error):
                        k.kill()
        if not self._log.closed:
            self._log.close()
        return self.popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def pidfd_or_none(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def wait_pidfds(fds: dict[Any, int | None], timeout: float) -> dict[Any, float]:
    """Wait until every pidfd is readable (its process exited); ``time.time()`` at which each was seen."""
    gone: dict[Any, float] = {k: time.time() for k, fd in fds.items() if fd is None}
    waiting = {fd: k for k, fd in fds.items() if fd is not None}
    deadline = time.monotonic() + timeout
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError(f"{len(waiting)} process(es) still alive after {timeout:.0f} s")
        ready, _, _ = select.select(list(waiting), [], [], remaining)
        now = time.time()
        for fd in ready:
            gone[waiting.pop(fd)] = now
    return gone


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(interval)


# ---- the benchmark ---------------------------------------------------------------------------
@dataclass
class Bench:
    args: argparse.Namespace
    tracker: Tracker
    home: str
    recv: Receiver
    client: SkaldsClient
    env: dict[str, str]
    results: dict[str, Any] = field(default_factory=dict)

    def start_skald(self, skald_id: str) -> SkaldProc:
        skald = SkaldProc(self.tracker, skald_id, self.env, self.home, self.args.log_level)
        try:
            wait_until(lambda: self.client.state.skald_alive(skald_id), 30.0, f"skald {skald_id} registered", 0.02)
        except BenchError:
            raise BenchError(f"skald {skald_id} did not come up; log tail:\n{skald.log_tail()}") from None
        return skald

    def task(self, task_id: str, *, hold: bool) -> Task:
        return Task(id=task_id, className=CLASS, attachments={"sock": self.recv.path, "hold": hold})

    def wait_main(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        msg = self.recv.wait(("main", task_id), timeout, f"main of {task_id}")
        self.tracker.track(int(msg["pid"]))
        return msg

    def wait_ended(self, task_id: str, value: int, timeout: float = 15.0) -> None:
        """The skald has written the end of the task (its last write after a worker exit)."""
        wait_until(
            lambda: self.client.task_state(task_id)["heartbeat"] == value,
            timeout,
            f"skald recorded the end of {task_id}",
        )

    def pace(self) -> None:
        """A short random gap between iterations, so they do not lock step with the skald's timers."""
        time.sleep(0.01 + 0.02 * (uuid.uuid4().int % 1000) / 1000)

    # 1 ----------------------------------------------------------------------------------------
    def create_to_main(self, skald: SkaldProc) -> None:
        n, warmup = self.args.creates, 3
        latencies: list[float] = []
        calls: list[float] = []
        first: list[float] = []
        to_init: list[float] = []
        init_to_main: list[float] = []
        for i in range(warmup + n):
            task_id = f"create-{i}"
            task = self.task(task_id, hold=False)
            t0 = time.time()
            self.client.create_task(task, executor=skald.skald_id)
            t_call = time.time()
            msg = self.wait_main(task_id)
            (first if i < warmup else latencies).append(msg["t"] - t0)
            if i >= warmup:
                calls.append(t_call - t0)
                init = self.recv.wait(("init", task_id), 5.0, f"init of {task_id}")
                to_init.append(init["t"] - t0)
                init_to_main.append(msg["t"] - init["t"])
            fd = pidfd_or_none(int(msg["pid"]))
            wait_pidfds({task_id: fd}, 15.0)
            if fd is not None:
                os.close(fd)
            self.wait_ended(task_id, BEAT_FINISHED)
            self.pace()
        self.results["create_to_main"] = {"summary": summary(latencies), "samples": latencies, "warmup": first}
        self.results["create_call"] = {"summary": summary(calls)}
        self.results["create_to_init"] = {"summary": summary(to_init)}
        self.results["init_to_main"] = {"summary": summary(init_to_main)}

    # 2 ----------------------------------------------------------------------------------------
    def update_senders(self, task_id: str) -> dict[str, Callable[[dict[str, Any]], Any]]:
        """The ways an update is sent to ``task_id``, by name (measured in this order)."""
        return {
            "send_worker_update": lambda p: self.client.send_worker_update(task_id, p),
            "update_attachments": lambda p: self.client.update_attachments(task_id, p),
        }

    #: Seconds to wait, after the last update was sent, for all of them to arrive.
    update_settle = 30.0

    def update_offset(self, i: int, spacing: float) -> float:
        """Seconds after the first send slot at which update ``i`` is sent."""
        return i * spacing

    def update_to_handler(self, skald: SkaldProc) -> None:
        n, spacing = self.args.updates, self.args.update_spacing
        task_id = "updates"
        self.client.create_task(self.task(task_id, hold=True), executor=skald.skald_id)
        self.wait_main(task_id)
        for via, send in self.update_senders(task_id).items():
            calls: list[float] = []
            start = time.monotonic() + spacing
            for i in range(n):
                delay = start + self.update_offset(i, spacing) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                t0 = time.time()
                send({"sentAt": t0, "seq": i, "via": via})
                calls.append(time.time() - t0)
            keys = [("update", task_id, via, i) for i in range(n)]
            got = self.recv.wait_many(keys, self.update_settle)
            latencies = [m["t"] - m["sentAt"] for m in got.values()]
            self.results[f"update_{via}"] = {
                "summary": summary(latencies),
                "samples": latencies,
                "lost": sorted(k[3] for k in keys if k not in got),
                "call": summary(calls),
            }
        self.client.cancel(task_id)
        self.recv.wait(("release", task_id), 30.0, f"release of {task_id}")
        self.wait_ended(task_id, BEAT_CANCELLED)

    # 3 ----------------------------------------------------------------------------------------
    def cancel(self, skald: SkaldProc) -> None:
        released: list[float] = []
        gone: list[float] = []
        for i in range(self.args.cancels):
            task_id = f"cancel-{i}"
            self.client.create_task(self.task(task_id, hold=True), executor=skald.skald_id)
            msg = self.wait_main(task_id)
            fd = pidfd_or_none(int(msg["pid"]))
            if fd is None:
                raise BenchError(f"worker of {task_id} (pid {msg['pid']}) exited before it was cancelled")
            self.pace()  # let the skald finish handling the start (running status, heartbeat)
            t0 = time.time()
            self.client.cancel(task_id)
            t_gone = wait_pidfds({task_id: fd}, 30.0)[task_id]
            os.close(fd)
            rel = self.recv.wait(("release", task_id), 10.0, f"release of {task_id}")
            released.append(rel["t"] - t0)
            gone.append(t_gone - t0)
            self.wait_ended(task_id, BEAT_CANCELLED)
        self.results["cancel_release"] = {"summary": summary(released), "samples": released}
        self.results["cancel_gone"] = {"summary": summary(gone), "samples": gone}

    # 5 ----------------------------------------------------------------------------------------
    def memory(self, skald: SkaldProc) -> None:
        n = self.args.idle_workers
        ids = [f"idle-{i}" for i in range(n)]
        for task_id in ids:
            self.client.create_task(self.task(task_id, hold=True), executor=skald.skald_id)
        pids = [int(self.wait_main(t)["pid"]) for t in ids]
        # Workers are idle from here on; sample after more than one heartbeat interval of idling.
        time.sleep(self.args.idle_seconds)
        rows = []
        for task_id, pid in zip(ids, pids, strict=True):
            info = psutil.Process(pid).memory_full_info()
            rows.append({"task": task_id, "pid": pid, "uss": info.uss, "pss": info.pss, "rss": info.rss})
        skald_info = psutil.Process(skald.pid).memory_full_info()
        fs = skald.forkserver()
        fs_info = fs.memory_full_info() if fs is not None else None
        self.results["memory"] = {
            "workers": rows,
            "worker_uss": summary([r["uss"] / MB for r in rows]),
            "worker_pss": summary([r["pss"] / MB for r in rows]),
            "worker_rss": summary([r["rss"] / MB for r in rows]),
            "skald": {"uss": skald_info.uss / MB, "pss": skald_info.pss / MB, "rss": skald_info.rss / MB},
            "forkserver": None
            if fs_info is None
            else {"uss": fs_info.uss / MB, "pss": fs_info.pss / MB, "rss": fs_info.rss / MB},
        }
        fds = {t: pidfd_or_none(p) for t, p in zip(ids, pids, strict=True)}
        for task_id in ids:
            self.client.cancel(task_id)
        wait_pidfds(fds, 30.0)
        for fd in fds.values():
            if fd is not None:
                os.close(fd)

    # 4 ----------------------------------------------------------------------------------------
    def stop_skald(self) -> None:
        n = self.args.stop_workers
        runs = []
        for rep in range(self.args.stop_reps):
            skald = self.start_skald(f"bench-stop-{rep}-{uuid.uuid4().hex[:6]}")
            ids = [f"{skald.skald_id}-w{i}" for i in range(n)]
            for task_id in ids:
                self.client.create_task(self.task(task_id, hold=True), executor=skald.skald_id)
            pids = {t: int(self.wait_main(t, 60.0)["pid"]) for t in ids}
            skald.descendants()  # remember the fork server too
            fds: dict[Any, int | None] = {t: pidfd_or_none(p) for t, p in pids.items()}
            if any(fd is None for fd in fds.values()):
                raise BenchError("a worker exited before the skald was stopped")
            fds["skald"] = os.pidfd_open(skald.pid)
            fs = skald.forkserver()
            if fs is None:
                raise BenchError(f"no fork server found under skald {skald.skald_id}")
            fds["forkserver"] = pidfd_or_none(fs.pid)
            t0 = time.time()
            os.kill(skald.pid, signal.SIGTERM)
            gone = wait_pidfds(fds, 60.0)
            for fd in fds.values():
                if fd is not None:
                    os.close(fd)
            code = skald.popen.wait(5.0)
            released = sum(1 for t in ids if self.recv.get(("release", t)) is not None)
            workers = max(gone[t] for t in ids) - t0
            run = {
                "skald_exit": gone["skald"] - t0,
                "forkserver_exit": gone["forkserver"] - t0,
                "workers_gone": workers,
                "total": max(gone.values()) - t0,
                "released": released,
                "exit_code": code,
            }
            runs.append(run)
            skald.stop()
            statuses = {}
            for t in ids:
                task = self.client.get(t)
                status = task.lifecycle_status.value if task is not None else "missing"
                statuses[status] = statuses.get(status, 0) + 1
            run["statuses_after"] = statuses
        self.results["stop"] = {
            "workers": n,
            "runs": runs,
            "total": summary([r["total"] for r in runs]),
            "skald_exit": summary([r["skald_exit"] for r in runs]),
            "forkserver_exit": summary([r["forkserver_exit"] for r in runs]),
            "workers_gone": summary([r["workers_gone"] for r in runs]),
        }

    def run(self) -> None:
        skald = self.start_skald("bench-node")
        t = time.monotonic()
        self.create_to_main(skald)
        self.update_to_handler(skald)
        self.cancel(skald)
        self.memory(skald)
        skald.stop()
        self.stop_skald()
        self.results["elapsed_s"] = time.monotonic() - t


# ---- report ----------------------------------------------------------------------------------
def _ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def report(results: dict[str, Any]) -> tuple[str, list[tuple[str, bool]]]:
    verdicts: list[tuple[str, bool]] = []
    lines = [
        "| Benchmark | n | p50 | p90 | p99 | max | Target | Result |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]

    def row(name: str, s: dict[str, float], target: str = "", ok: bool | None = None, unit: str = "ms") -> None:
        fmt = _ms if unit == "ms" else (lambda x: f"{x:.2f}")
        verdict = "" if ok is None else ("PASS" if ok else "**FAIL**")
        cells = [fmt(s["p50"]), fmt(s["p90"]), fmt(s["p99"]), fmt(s["max"])]
        lines.append(f"| {name} | {s['n']} | {' | '.join(cells)} | {target} | {verdict} |")
        if ok is not None:
            verdicts.append((name.split(" (")[0], ok))

    c = results["create_to_main"]["summary"]
    row("1. create_task → @run_main_handler (ms)", c, "p50 ≤ 30, p99 ≤ 150", c["p50"] <= 0.030 and c["p99"] <= 0.150)
    row("   (the create_task() call itself, ms)", results["create_call"]["summary"])
    row("   (create_task → worker's initialize() in the new process, ms)", results["create_to_init"]["summary"])
    row("   (initialize() → @run_main_handler, ms)", results["init_to_main"]["summary"])
    for via in ("send_worker_update", "update_attachments"):
        r = results[f"update_{via}"]
        s = r["summary"]
        lost = f", {len(r['lost'])} lost" if r["lost"] else ""
        ok = s["p50"] <= 0.010 and not r["lost"]
        row(f"2. {via} → @update_event_handler (ms{lost})", s, "p50 ≤ 10", ok)
        row(f"   (the {via}() call itself, ms)", r["call"])
    s = results["cancel_release"]["summary"]
    row("3a. cancel → @release_handler ran (ms)", s, "p50 ≤ 50", s["p50"] <= 0.050)
    s = results["cancel_gone"]["summary"]
    row("3b. cancel → worker process gone (ms)", s, "p50 ≤ 50", s["p50"] <= 0.050)
    st = results["stop"]
    n_workers = st["workers"]
    row(
        f"4. SIGTERM skald with {n_workers} workers → skald, fork server, workers gone (s)",
        st["total"],
        "≤ 1 s (every run)",
        st["total"]["max"] <= 1.0,
        unit="s",
    )
    row("   (skald process exited, s)", st["skald_exit"], unit="s")
    row("   (fork server exited, s)", st["forkserver_exit"], unit="s")
    row("   (last worker gone, s)", st["workers_gone"], unit="s")
    m = results["memory"]
    row("5. idle worker USS (MB)", m["worker_uss"], "≤ 5 MB", m["worker_uss"]["p50"] <= 5.0, unit="MB")
    row("   idle worker PSS (MB)", m["worker_pss"], unit="MB")
    row("   idle worker RSS (MB)", m["worker_rss"], unit="MB")
    lines.append("")
    lines.append(
        f"Skald: USS {m['skald']['uss']:.1f} MB, PSS {m['skald']['pss']:.1f} MB, RSS {m['skald']['rss']:.1f} MB. "
        + (
            f"Fork server: USS {m['forkserver']['uss']:.1f} MB, PSS {m['forkserver']['pss']:.1f} MB, "
            f"RSS {m['forkserver']['rss']:.1f} MB."
            if m["forkserver"]
            else "Fork server: not found."
        )
    )
    runs = ", ".join(
        f"{r['total']:.3f} s (skald {r['skald_exit']:.3f}, fork server {r['forkserver_exit']:.3f}, "
        f"workers {r['workers_gone']:.3f}, "
        f"{r['released']} released, exit {r['exit_code']})"
        for r in st["runs"]
    )
    lines.append(f"Stop runs: {runs}.")
    lines.append(f"Stop: task statuses after each stop: {[r['statuses_after'] for r in st['runs']]}.")
    for via in ("send_worker_update", "update_attachments"):
        lost = results[f"update_{via}"]["lost"]
        if lost:
            lines.append(f"{via}: updates never seen by the handler (seq): {lost}.")
    warmup = ", ".join(_ms(x) for x in results["create_to_main"]["warmup"])
    lines.append(f"Warm-up create → main (excluded): {warmup} ms.")
    return "\n".join(lines), verdicts


def source_version() -> str:
    import skalds

    try:
        git = subprocess.run(
            ["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        described = git.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        described = "unknown"
    return f"{skalds.__version__} (git {described})"


def machine() -> dict[str, str]:
    mem = psutil.virtual_memory()
    return {
        "skalds": source_version(),
        "uname": " ".join(platform.uname()),
        "nproc": str(os.cpu_count()),
        "memory": f"{mem.total / 2**30:.1f} GiB total, {mem.available / 2**30:.1f} GiB available",
        "python": sys.version.split()[0],
        "load average now": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ---- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short run (fewer iterations)")
    p.add_argument("--creates", type=int, help="tasks for create → main (default 200, quick 30)")
    p.add_argument("--updates", type=int, help="updates per path (default 200, quick 50)")
    p.add_argument("--update-spacing", type=float, default=0.020, help="seconds between updates (default 0.02)")
    p.add_argument("--cancels", type=int, help="tasks for cancel (default 100, quick 15)")
    p.add_argument("--stop-reps", type=int, help="skald stops (default 5, quick 2)")
    p.add_argument("--stop-workers", type=int, default=20, help="workers per skald stop (default 20)")
    p.add_argument("--idle-workers", type=int, default=10, help="idle workers for memory (default 10)")
    p.add_argument("--idle-seconds", type=float, default=1.5, help="idle time before sampling memory")
    p.add_argument("--log-level", default="INFO", help="the skalds' LOG_LEVEL (default INFO)")
    p.add_argument("--json", help="also write all results and samples to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary SKALDS_HOME (logs, database)")
    args = p.parse_args(argv)
    defaults = {"creates": (200, 30), "updates": (200, 50), "cancels": (100, 15), "stop_reps": (5, 2)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM / SIGHUP end the benchmark like Ctrl-C does: through the cleanup below."""

    def raise_exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, raise_exit) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    home = tempfile.mkdtemp(prefix="skalds-bench-")
    url = f"sqlite:///{home}/skalds.db"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SKALD", "KAFKA_", "REDIS_", "MONGO_", "LOG_", "HEARTBEAT", "RECONCILE", "STOP_"))
    }
    env.update(SKALDS_HOME=home, SKALDS_STORE_URL=url, SKALDS_BUS_URL=url, SKALDS_CACHE_URL=url)
    tracker = Tracker()
    atexit.register(tracker.cleanup)  # also covers an exit from somewhere unexpected
    recv = Receiver(os.path.join(home, "bench.sock"))
    recv.start()
    client = SkaldsClient(skalds_home=home, store_url=url, bus_url=url, cache_url=url, initiator="bench")
    bench = Bench(args, tracker, home, recv, client, env)
    command = " ".join(["python", *sys.argv]) if argv is None else "python bench/run_embedded.py " + " ".join(argv)
    ok = False
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        with terminate_as_exit():
            print(f"SKALDS_HOME={home}", file=sys.stderr)
            bench.run()
        ok = True
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        for skald in tracker.skalds:
            print(f"--- {skald.log_path} (tail)\n{skald.log_tail()}", file=sys.stderr)
        return 2
    finally:
        tracker.cleanup()
        recv.stop()
        client.close()
        if args.keep or not ok:
            print(f"kept {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)
    table, verdicts = report(bench.results)
    print(f"Started: {started} UTC  ")
    print(f"Command: `{command}`  ")
    for key, value in machine().items():
        print(f"{key}: {value}  ")
    print(f"load average at start: {load_start}  ")
    print(f"Elapsed: {bench.results['elapsed_s']:.0f} s\n")
    print(table)
    print()
    for name, ok in verdicts:
        print(f"- {name.strip()}: {'PASS' if ok else 'FAIL'}")
    if args.json:
        out = {"started": started, "command": command, "machine": machine(), "args": vars(args), **bench.results}
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
