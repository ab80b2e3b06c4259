"""The System Controller end to end: REST create → worker main, a 1,000-task burst vs Celery, failover.

Usage::

    python bench/run_controller.py               # everything (about 1–2 minutes)
    python bench/run_controller.py --quick       # fewer creates, 200-task burst
    python bench/run_controller.py --no-celery --no-failover --json out.json

One run, real processes throughout (this process is the HTTP client and the measurer):

1. ``POST /api/tasks`` (httpx, one keep-alive connection) → the worker's @run_main_handler, (a) on the
   embedded SQLite backend (controller subprocess + one node skald sharing ``SKALDS_HOME``) and (b) on
   Tansu + Redis + PostgreSQL (fresh servers, ``tests/support/servers.py``).
2. A burst of short tasks through two node skalds (embedded backend), submitted through the API by
   ``--burst-clients`` keep-alive clients in parallel: wall time from the first POST to the last
   worker main, and to the last task Finished in the store; then (2b) the same number again through
   ``POST /api/tasks/batch`` (``--burst-batch`` tasks a request). Side by side: Celery 5 on Redis, a worker
   with ``--pool prefork --concurrency 2``, the same number of no-op tasks, first ``.delay()`` → all
   results ready.
3. Failover (distributed backend, ``MONITOR_HEARTBEAT_TIMEOUT=4``, ``REDIS_KEY_TTL=2``): a node holding
   5 running tasks is SIGKILLed; time until all 5 mains run again on the other node.

Workers are ``bench/bench_workers.py``'s ``BenchWorker``; their hooks send ``time.time()`` to a unix
datagram socket (see ``run_embedded.py``). Every process started here — controllers, skalds, Celery,
servers — is stopped on exit, error, Ctrl-C or SIGTERM, and gets a signal from the kernel if this
process is SIGKILLed (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
from run_distributed import Servers, code_state, tree_cpu, versions
from run_embedded import (
    BEAT_FINISHED,
    BenchError,
    Receiver,
    SkaldProc,
    Tracker,
    machine,
    pidfd_or_none,
    summary,
    terminate_as_exit,
    wait_pidfds,
    wait_until,
)

from skalds.backends.store.base import TaskQuery
from skalds.client import SkaldsClient
from skalds.model.task import TaskLifecycleStatus
from skalds.utils.logging import configure as log_configure

CLASS = "BenchWorker"
#: The same worker with ``max_tasks_per_process`` set: processes run task after task.
REUSED_CLASS = "BenchReusedWorker"
FINISHED = TaskLifecycleStatus.FINISHED
RUNNING = TaskLifecycleStatus.RUNNING
_CLEAN_PREFIXES = (
    *("SKALD", "KAFKA_", "REDIS_", "MONGO_", "LOG_", "HEARTBEAT", "RECONCILE", "STOP_"),
    *("SYSTEM_", "MONITOR_", "DISPATCHER_"),
)

# Runs a module as __main__ after asking the kernel for SIGTERM when this process dies.
_LAUNCHER = textwrap.dedent(
    """
    import ctypes, os, runpy, signal, sys
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(os.environ["BENCH_PARENT_PID"]):
        sys.exit(1)
    module, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    """
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ModuleProc(SkaldProc):
    """A ``python -m module`` subprocess, stopped like a skald (SIGTERM, then SIGKILL of its tree)."""

    def __init__(self, tracker: Tracker, name: str, module: str, args: list[str], env: dict[str, str], workdir: str):
        self.skald_id = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, module, *args],
            cwd=workdir,
            env={**env, "BENCH_PARENT_PID": str(os.getpid())},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        tracker.skalds.append(self)
        self._tracker = tracker


def start_node(tracker: Tracker, skald_id: str, env: dict[str, str], home: str, wait_listening: bool) -> SkaldProc:
    node = SkaldProc(tracker, skald_id, env, home, "INFO")

    def listening() -> bool:
        if node.popen.poll() is not None:
            raise BenchError(f"skald {skald_id} exited; log tail:\n{node.log_tail()}")
        return "listening for commands" in Path(node.log_path).read_text(errors="replace")

    if wait_listening:  # Kafka: its consumer group must hold the partitions, or commands wait for a rebalance
        wait_until(listening, 30.0, f"skald {skald_id} consumes the command topics", 0.02)
    return node


class Stack:
    """A controller and node skalds on one backend, plus the client side (httpx, SkaldsClient)."""

    def __init__(
        self, tracker: Tracker, recv: Receiver, home: str, env: dict[str, str], extra: dict[str, str] | None = None
    ):
        self.tracker, self.recv, self.home = tracker, recv, home
        self.env = {**env, **(extra or {})}
        self.port = free_port()
        ctl_env = {
            **self.env,
            "SYSTEM_CONTROLLER_PORT": str(self.port),
            "SYSTEM_CONTROLLER_HOST": "127.0.0.1",
            "SYSTEM_CONTROLLER_MODE": "DISPATCHER",
            "LOG_LEVEL": "INFO",
        }
        self.env.setdefault("DISPATCHER_INTERVAL", "5")
        ctl_env.setdefault("DISPATCHER_INTERVAL", "5")
        self.controller = ModuleProc(tracker, f"controller-{self.port}", "skalds.controller.main", [], ctl_env, home)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30.0, trust_env=False)
        self.client = SkaldsClient(
            skalds_home=home,
            store_url=env["SKALDS_STORE_URL"],
            bus_url=env["SKALDS_BUS_URL"],
            cache_url=env["SKALDS_CACHE_URL"],
            initiator="bench",
        )
        self.nodes: list[SkaldProc] = []

        def healthy() -> bool:
            if self.controller.popen.poll() is not None:
                raise BenchError(f"controller exited; log tail:\n{self.controller.log_tail()}")
            try:
                return self.http.get("/api/system/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 30.0, "controller healthy", 0.05)

    def add_node(self, skald_id: str, wait_listening: bool) -> SkaldProc:
        node_env = {k: v for k, v in self.env.items() if not k.startswith(("SYSTEM_", "MONITOR_", "DISPATCHER_"))}
        node = start_node(self.tracker, skald_id, node_env, self.home, wait_listening)
        wait_until(lambda: self.client.state.skald_alive(skald_id), 30.0, f"skald {skald_id} registered", 0.02)
        self.nodes.append(node)
        return node

    def post(self, task_id: str, hold: bool = False, http: httpx.Client | None = None) -> dict[str, Any]:
        body = {"id": task_id, "className": CLASS, "attachments": {"sock": self.recv.path, "hold": hold}}
        r = (http or self.http).post("/api/tasks", json=body)
        if r.status_code != 201:
            raise BenchError(f"POST /api/tasks {task_id}: {r.status_code} {r.text[:300]}")
        return dict(r.json())

    def wait_main(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        try:
            msg = self.recv.wait(("main", task_id), timeout, f"main of {task_id}")
        except BenchError:
            raise BenchError(f"no main of {task_id}; controller log:\n{self.controller.log_tail()}") from None
        self.tracker.track(int(msg["pid"]))
        return msg

    def count(self, status: TaskLifecycleStatus) -> int:
        return int(self.client.list(TaskQuery(statuses=(status,), limit=0)).total)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        self.controller.stop()
        self.http.close()
        self.client.close()


# ---- 1: POST → main ------------------------------------------------------------------------------
def post_to_main(stack: Stack, n: int, prefix: str) -> dict[str, Any]:
    lat, calls, warm = [], [], []
    for i in range(3 + n):
        task_id = f"{prefix}-{i}"
        t0 = time.time()
        item = stack.post(task_id)
        t_resp = time.time()
        msg = stack.wait_main(task_id)
        if i < 3:
            warm.append(msg["t"] - t0)
        else:
            lat.append(msg["t"] - t0)
            calls.append(t_resp - t0)
            if item.get("executor") in (None, ""):
                raise BenchError(f"{task_id} was not assigned when POST answered: {item}")
        fd = pidfd_or_none(int(msg["pid"]))
        wait_pidfds({task_id: fd}, 15.0)
        if fd is not None:
            os.close(fd)
        wait_until(lambda t=task_id: stack.client.task_state(t)["heartbeat"] == BEAT_FINISHED, 15.0, f"{task_id} ended")
        time.sleep(0.01 + 0.02 * (uuid.uuid4().int % 1000) / 1000)
    retried = [t for t in (f"{prefix}-{i}" for i in range(3 + n)) if (stack.client.get(t) or _NONE).retries]
    return {
        "create_to_main": summary(lat),
        "post_call": summary(calls),
        "samples": lat,
        "warmup": warm,
        "retried": retried,
        "failed_code_0": failed_code_0(stack),
    }


class _NoTask:
    retries = 0


_NONE = _NoTask()


def failed_code_0(stack: Stack) -> int:
    """Worker exits the nodes recorded as Failed although the process exited with code 0 (a skalds bug)."""
    n = 0
    for node in stack.nodes:
        with contextlib.suppress(OSError):
            n += Path(node.log_path).read_text(errors="replace").count("exited (Failed, code 0")
    return n


def own_cpu(pid: int) -> float:
    """CPU seconds of the process itself (all its threads), not of its children."""
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return float("nan")


# ---- 2: burst ------------------------------------------------------------------------------------
def skalds_burst(
    stack: Stack,
    n: int,
    clients: int,
    profile: str | None = None,
    batch: int = 0,
    prefix: str = "burst",
    cls: str = CLASS,
) -> dict[str, Any]:
    """``n`` short tasks through the API; with ``batch``, ``POST /api/tasks/batch`` of that many each."""
    ids = [f"{prefix}-{i}" for i in range(n)]
    chunks = [ids[i::clients] for i in range(clients)]
    https = [httpx.Client(base_url=str(stack.http.base_url), timeout=60.0, trust_env=False) for _ in range(clients)]
    for h in https:
        h.get("/api/system/health")  # open the keep-alive connections before the clock starts
    finished_before = stack.count(FINISHED)
    posted: list[float] = []
    answered: dict[str, float] = {}

    def submit(k: int) -> None:
        if batch:
            mine = chunks[k]
            for i in range(0, len(mine), batch):
                part = mine[i : i + batch]
                body = {
                    "tasks": [
                        {"id": t, "className": cls, "attachments": {"sock": stack.recv.path, "hold": False}}
                        for t in part
                    ]
                }
                r = https[k].post("/api/tasks/batch", json=body)
                if r.status_code != 201:
                    raise BenchError(f"POST /api/tasks/batch: {r.status_code} {r.text[:300]}")
                now = time.time()
                answered.update(dict.fromkeys(part, now))
        else:
            for task_id in chunks[k]:
                stack.post(task_id, http=https[k])
                answered[task_id] = time.time()
        posted.append(time.time())

    procs = {"controller": stack.controller.pid, **{n.skald_id: n.pid for n in stack.nodes}}
    spies = []
    if profile:  # py-spy of the controller and the first node (with its fork server and workers)
        for name, pid in (("controller", stack.controller.pid), ("node", stack.nodes[0].pid)):
            cmd = ["py-spy", "record", "-p", str(pid), "--format", "raw", "-r", "200", "-o", f"{profile}-{name}.txt"]
            cmd.append("--subprocesses")
            spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # let py-spy attach before the clock starts
    cpu0 = {k: tree_cpu(p) for k, p in procs.items()}
    self0 = {k: own_cpu(p) for k, p in procs.items()}
    own0 = time.process_time()
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(submit, k) for k in range(clients)]
        t_finished = None
        deadline = time.monotonic() + 300.0
        while t_finished is None:
            if stack.count(FINISHED) - finished_before >= n:
                t_finished = time.time()
                break
            if time.monotonic() > deadline:
                raise BenchError(f"burst: only {stack.count(FINISHED) - finished_before}/{n} Finished after 300 s")
            time.sleep(0.05)
        for f in futures:
            f.result()
    cpu = {k: tree_cpu(p) - cpu0[k] for k, p in procs.items()}
    own = {k: own_cpu(p) - self0[k] for k, p in procs.items()}
    cpu["runner (HTTP clients + polling)"] = time.process_time() - own0
    for spy in spies:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
    for h in https:
        h.close()
    mains = [stack.recv.get(("main", t)) for t in ids]
    missing = sum(1 for m in mains if m is None)
    worker_pids = len({m["pid"] for m in mains if m is not None})
    # POST answered (task assigned) → its worker's main: a long tail means a node missed the assignment
    lag = [m["t"] - answered[t] for t, m in zip(ids, mains, strict=True) if m is not None]
    t_last_main = max(m["t"] for m in mains if m is not None)
    per_node: dict[str, int] = {}
    retried = 0
    for t in ids:
        task = stack.client.get(t)
        retried += 1 if task is not None and task.retries else 0
        key = task.executor if task is not None and task.executor else "?"
        per_node[key] = per_node.get(key, 0) + 1
    return {
        "n": n,
        "batch": batch,
        "clients": clients,
        "submit_s": max(posted) - t0,
        "last_main_s": t_last_main - t0,
        "all_finished_s": t_finished - t0,
        "mains_missing": missing,
        "worker_pids": worker_pids,
        "per_node": per_node,
        "cpu_s": cpu,
        # the process itself (all its threads), without its fork server and workers
        "own_cpu_s": own,
        "answer_to_main": summary(lag),
        "retried": retried,
        "failed_code_0_all_phases": failed_code_0(stack),
        "answer_to_main_over_1s": sum(1 for x in lag if x > 1.0),
        "slowest": sorted(
            ((round(m["t"] - answered[t], 3), t) for t, m in zip(ids, mains, strict=True) if m is not None),
            reverse=True,
        )[:5],
    }


CELERY_TASKS = """
import os
from celery import Celery

app = Celery("benchtasks", broker=os.environ["BENCH_REDIS"], backend=os.environ["BENCH_REDIS"])


@app.task
def noop():
    return None
"""


def celery_burst(tracker: Tracker, redis_url: str, n: int, workdir: str) -> dict[str, Any]:
    import celery

    d = os.path.join(workdir, "celery")
    os.makedirs(d, exist_ok=True)
    Path(d, "benchtasks.py").write_text(CELERY_TASKS)
    env = {**os.environ, "BENCH_REDIS": redis_url, "PYTHONPATH": d}
    args = ["-A", "benchtasks", "worker", "--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING"]
    worker = ModuleProc(tracker, "celery-worker", "celery", args, env, d)
    sys.path.insert(0, d)
    os.environ["BENCH_REDIS"] = redis_url
    try:
        import benchtasks  # type: ignore[import-not-found]

        try:
            benchtasks.noop.delay().get(timeout=60)  # the worker is up and consuming
        except Exception as exc:
            raise BenchError(f"celery worker did not answer: {exc!r}; log:\n{worker.log_tail()}") from None
        for _ in range(3):
            benchtasks.noop.delay().get(timeout=30)
        cpu0, own0 = tree_cpu(worker.pid), time.process_time()
        t0 = time.time()
        results = [benchtasks.noop.delay() for _ in range(n)]
        t_sent = time.time()
        for r in results:
            r.get(timeout=120)
        t_done = time.time()
        cpu = {"celery worker (tree)": tree_cpu(worker.pid) - cpu0, "runner": time.process_time() - own0}
        benchtasks.app.close()
    finally:
        worker.stop()
        sys.path.remove(d)
    return {"n": n, "submit_s": t_sent - t0, "all_ready_s": t_done - t0, "celery": celery.__version__, "cpu_s": cpu}


# ---- 3: failover ---------------------------------------------------------------------------------
def failover(stack: Stack) -> dict[str, Any]:
    a = stack.add_node("fo-a", wait_listening=True)
    ids = [f"fo-{i}" for i in range(5)]
    for t in ids:
        stack.post(t, hold=True)
    old = {t: int(stack.wait_main(t)["pid"]) for t in ids}
    b = stack.add_node("fo-b", wait_listening=True)
    time.sleep(1.0)
    t_kill = time.time()
    os.kill(a.pid, signal.SIGKILL)
    a.popen.wait(5)
    back: dict[str, float] = {}
    fds = {t: pidfd_or_none(p) for t, p in old.items()}
    gone = wait_pidfds(fds, 30.0)
    for fd in fds.values():
        if fd is not None:
            os.close(fd)
    deadline = time.monotonic() + 60.0
    while len(back) < len(ids):
        if time.monotonic() > deadline:
            raise BenchError(f"failover: only {len(back)}/5 back after 60 s; log:\n{stack.controller.log_tail()}")
        for t in ids:
            m = stack.recv.get(("main", t))
            if t not in back and m is not None and int(m["pid"]) != old[t]:
                stack.tracker.track(int(m["pid"]))
                back[t] = m["t"]
        time.sleep(0.02)
    executors = {t: (stack.client.get(t).executor if stack.client.get(t) else None) for t in ids}  # type: ignore[union-attr]
    return {
        "old_workers_gone_s": max(gone.values()) - t_kill,
        "first_back_s": min(back.values()) - t_kill,
        "all_back_s": max(back.values()) - t_kill,
        "executors": executors,
        "survivor": b.skald_id,
    }


# ---- report / main -------------------------------------------------------------------------------
def _ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def report(res: dict[str, Any]) -> tuple[str, list[tuple[str, bool]]]:
    verdicts: list[tuple[str, bool]] = []
    out = ["| Benchmark | n | p50 | p90 | p99 | max | Target | Result |", "|---|---:|---:|---:|---:|---:|---|---|"]

    def row(name: str, s: dict[str, float], target: str = "", ok: bool | None = None) -> None:
        v = "" if ok is None else ("PASS" if ok else "**FAIL**")
        cells = " | ".join(_ms(s[k]) for k in ("p50", "p90", "p99", "max"))
        out.append(f"| {name} | {s['n']} | {cells} | {target} | {v} |")
        if ok is not None:
            verdicts.append((name, ok))

    for key, label, limit in (("embedded", "embedded (SQLite)", 0.030), ("distributed", "Tansu + Redis + PG", 0.050)):
        if key in res:
            s = res[key]["create_to_main"]
            name = f"1. POST /api/tasks → @run_main_handler, {label} (ms)"
            row(name, s, f"p50 ≤ {limit * 1000:.0f}", s["p50"] <= limit)
            row("   (the POST itself: create + dispatch pass + read, ms)", res[key]["post_call"])
            retried = res[key]["retried"]
            out.append(
                f"|    ({len(retried)} tasks retried after a false Failed: {', '.join(retried) or 'none'}; "
                f"'exited (Failed, code 0)' in node logs: {res[key]['failed_code_0']}) | | | | | | | |"
            )
    out.append("")
    if "burst" in res:
        b = res["burst"]
        out.append(
            f"2. skalds, {b['n']} short tasks via `POST /api/tasks` ({b['clients']} keep-alive clients in parallel), "
            f"2 node skalds, embedded: all POSTs answered {b['submit_s']:.2f} s, "
            f"last worker main {b['last_main_s']:.2f} s, "
            f"all Finished in the store **{b['all_finished_s']:.2f} s** (per node {b['per_node']}, mains missing "
            f"{b['mains_missing']}). POST answered → main: p50 {_ms(b['answer_to_main']['p50'])} ms, "
            f"p99 {_ms(b['answer_to_main']['p99'])} ms, max {_ms(b['answer_to_main']['max'])} ms, "
            f"{b['answer_to_main_over_1s']} tasks over 1 s; {b['retried']} tasks retried by the dispatcher "
            f"(node logs: {b['failed_code_0_all_phases']} 'exited (Failed, code 0)' so far). CPU s during it: "
            + ", ".join(f"{k} {v:.2f}" for k, v in b["cpu_s"].items())
            + "."
        )
    batched = (
        ("burst_batch", "2b. the same through `POST /api/tasks/batch` ({batch} tasks a request, {clients} clients)"),
        ("burst_reused", "2c. the same batches, class with `max_tasks_per_process` (processes reused)"),
    )
    for key, title in batched:
        if key in res:
            b = res[key]
            out.append(
                title.format(**b) + f": all answered {b['submit_s']:.2f} s, last worker main {b['last_main_s']:.2f} s, "
                f"all Finished **{b['all_finished_s']:.2f} s** (per node {b['per_node']}, mains missing "
                f"{b['mains_missing']}, retried {b['retried']}, worker processes {b.get('worker_pids')}). "
                "CPU s during it: " + ", ".join(f"{k} {v:.2f}" for k, v in b["cpu_s"].items()) + "."
            )
    if "celery" in res:
        c = res["celery"]
        out.append(
            f"2. Celery {c['celery']}, {c['n']} no-op tasks, prefork ×2, Redis: "
            f"all `.delay()` sent {c['submit_s']:.2f} s, "
            f"all results ready **{c['all_ready_s']:.2f} s**. CPU s: "
            + ", ".join(f"{k} {v:.2f}" for k, v in c["cpu_s"].items())
            + "."
        )
        if "burst" in res:
            ratio = res["burst"]["all_finished_s"] / c["all_ready_s"]
            ok = res["burst"]["all_finished_s"] < c["all_ready_s"]
            out.append(f"2. ratio skalds / Celery: {ratio:.2f} ({'skalds faster' if ok else 'Celery faster'}).")
            if "burst_batch" in res:
                batched = res["burst_batch"]["all_finished_s"]
                out.append(f"2b. ratio skalds (batch requests) / Celery: {batched / c['all_ready_s']:.2f}.")
            if "burst_reused" in res:
                reused = res["burst_reused"]["all_finished_s"]
                out.append(
                    f"2c. ratio skalds (batch requests, reused processes) / Celery: {reused / c['all_ready_s']:.2f}."
                )
            verdicts.append(("2. burst faster than Celery", ok))
            if "burst_reused" in res:
                faster = res["burst_reused"]["all_finished_s"] < c["all_ready_s"]
                verdicts.append(("2c. burst of a pooled class (batch requests) faster than Celery", faster))
    if "failover" in res:
        f = res["failover"]
        out.append(
            f"3. failover: SIGKILL of a node with 5 running tasks → old workers gone {f['old_workers_gone_s']:.2f} s, "
            f"first main on the survivor {f['first_back_s']:.2f} s, all 5 **{f['all_back_s']:.2f} s** "
            f"(executors after: {sorted(set(f['executors'].values()))})."
        )
    return "\n".join(out), verdicts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="30 creates per backend, 200-task burst")
    p.add_argument("--creates", type=int, help="POST → main samples per backend (default 150, quick 30)")
    p.add_argument("--burst", type=int, help="tasks in the burst, skalds and Celery (default 1000, quick 200)")
    p.add_argument("--burst-clients", type=int, default=4, help="parallel HTTP clients for the burst (default 4)")
    p.add_argument("--no-celery", dest="celery", action="store_false")
    p.add_argument("--no-distributed", dest="distributed", action="store_false")
    p.add_argument("--no-failover", dest="failover", action="store_false")
    p.add_argument("--burst-batch", type=int, default=100, help="also a burst via POST /api/tasks/batch of N (0: no)")
    p.add_argument("--profile-burst", help="py-spy the controller and a node during a burst to PREFIX-*.txt")
    p.add_argument(
        "--profile-phase", choices=("2", "2b", "2c"), default="2", help="the burst --profile-burst records (default 2)"
    )
    p.add_argument("--json", help="also write all results to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories (logs, databases)")
    args = p.parse_args(argv)
    if args.creates is None:
        args.creates = 30 if args.quick else 150
    if args.burst is None:
        args.burst = 200 if args.quick else 1000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_configure(level="WARNING", proc_name="bench")
    root = tempfile.mkdtemp(prefix="skalds-bench-ctl-")
    servers = Servers()
    tracker = Tracker()
    atexit.register(servers.stop)
    atexit.register(tracker.cleanup)
    res: dict[str, Any] = {}
    stacks: list[Stack] = []
    recv: Receiver | None = None
    command = " ".join(["python", *sys.argv]) if argv is None else "python bench/run_controller.py " + " ".join(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEAN_PREFIXES)}
    ok = False
    t_start = time.monotonic()
    try:
        with terminate_as_exit():
            print(f"work dir {root}", file=sys.stderr)
            if args.distributed or args.celery:
                servers.start()  # before any thread exists (their preexec_fn runs after fork)
                res["versions"] = versions()
            else:
                res["versions"] = {"code at start": code_state()}
            recv = Receiver(os.path.join(root, "bench.sock"))
            recv.start()

            # embedded: 1 then 2
            home = os.path.join(root, "embedded")
            os.makedirs(home)
            url = f"sqlite:///{home}/skalds.db"
            env = {**base_env, "SKALDS_HOME": home}
            env.update(SKALDS_STORE_URL=url, SKALDS_BUS_URL=url, SKALDS_CACHE_URL=url)
            stack = Stack(tracker, recv, home, env)
            stacks.append(stack)
            stack.add_node("emb-node-1", wait_listening=False)
            print("1a. embedded POST → main …", file=sys.stderr)
            res["embedded"] = post_to_main(stack, args.creates, "emb")
            stack.add_node("emb-node-2", wait_listening=False)
            wait_until(lambda: stack.client.state.skald_alive("emb-node-2"), 30.0, "emb-node-2 alive", 0.05)
            time.sleep(1.5)  # the controller's fleet view sees the second node
            print(f"2. skalds burst of {args.burst} …", file=sys.stderr)
            spy = {args.profile_phase: args.profile_burst}
            res["burst"] = skalds_burst(stack, args.burst, args.burst_clients, spy.get("2"))
            if args.burst_batch:
                print(f"2b. skalds burst of {args.burst} in batches of {args.burst_batch} …", file=sys.stderr)
                res["burst_batch"] = skalds_burst(
                    stack, args.burst, args.burst_clients, spy.get("2b"), batch=args.burst_batch, prefix="batch"
                )
                print("2c. the same with a class whose processes are reused (max_tasks_per_process) …", file=sys.stderr)
                res["burst_reused"] = skalds_burst(
                    stack,
                    args.burst,
                    args.burst_clients,
                    spy.get("2c"),
                    batch=args.burst_batch,
                    prefix="reused",
                    cls=REUSED_CLASS,
                )
            stack.close()
            stacks.remove(stack)

            if args.celery:
                assert servers.redis is not None
                print(f"2. celery burst of {args.burst} …", file=sys.stderr)
                res["celery"] = celery_burst(tracker, servers.redis.url.rsplit("/", 1)[0] + "/1", args.burst, root)

            if args.distributed:
                assert servers.tansu and servers.redis and servers.postgres
                home = os.path.join(root, "distributed")
                os.makedirs(home)
                env = {
                    **base_env,
                    "SKALDS_HOME": home,
                    "SKALDS_STORE_URL": servers.postgres.url,
                    "SKALDS_BUS_URL": servers.tansu.url + "?session_timeout_ms=2000",
                    "SKALDS_CACHE_URL": servers.redis.url,
                }
                stack = Stack(tracker, recv, home, env)
                stacks.append(stack)
                stack.add_node("dist-node-1", wait_listening=True)
                print("1b. distributed POST → main …", file=sys.stderr)
                res["distributed"] = post_to_main(stack, args.creates, "dist")
                stack.close()
                stacks.remove(stack)
                if args.failover:
                    fast = {
                        "MONITOR_HEARTBEAT_TIMEOUT": "4",
                        "REDIS_KEY_TTL": "2",
                        "REDIS_SYNC_PERIOD": "0.5",
                        "SKALDS_HEARTBEAT_INTERVAL": "0.5",
                        "SKALDS_RECONCILE_INTERVAL": "1",
                        "MONITOR_SKALD_INTERVAL": "0.5",
                        "MONITOR_TASK_INTERVAL": "0.5",
                        "DISPATCHER_INTERVAL": "1",
                    }
                    res["failover_settings"] = fast
                    stack = Stack(tracker, recv, home, env, fast)
                    stacks.append(stack)
                    print("3. failover …", file=sys.stderr)
                    res["failover"] = failover(stack)
                    stack.close()
                    stacks.remove(stack)
            res["elapsed_s"] = time.monotonic() - t_start
        ok = True
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        for p in tracker.skalds:
            print(f"--- {p.log_path} (tail)\n{p.log_tail()}", file=sys.stderr)
    finally:
        for s in stacks:
            with contextlib.suppress(Exception):
                s.close()
        tracker.cleanup()
        if recv is not None:
            recv.stop()
        servers.stop()
        if args.keep or not ok:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if not ok:
        return 2
    table, verdicts = report(res)
    print(f"Started: {started} UTC  ")
    print(f"Command: `{command}`  ")
    for key, value in {**machine(), **res["versions"]}.items():
        print(f"{key}: {value}  ")
    print(f"load average at start: {load_start}  ")
    print(f"Elapsed: {res['elapsed_s']:.0f} s\n")
    print(table)
    print()
    for name, passed in verdicts:
        print(f"- {name.strip()}: {'PASS' if passed else 'FAIL'}")
    if args.json:
        out = {"started": started, "command": command, "machine": machine(), "args": vars(args), **res}
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0 if all(passed for _, passed in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
