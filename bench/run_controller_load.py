"""The System Controller at scale: CPU and RSS at steady state with 10,000 tasks and 100 skalds.

Usage::

    python bench/run_controller_load.py                 # embedded backend (one SQLite file)
    python bench/run_controller_load.py --redis         # also: SQLite store + bus, Redis cache
    python bench/run_controller_load.py --window 10 --settle 5 --tasks 2000   # shorter

Per backend: a fresh ``SKALDS_HOME`` holds one SQLite database (store, bus and — without Redis —
cache). ``--tasks`` tasks are written straight into the store (``TaskStore.create``): 80 % Running
with their executor spread over the ``--skalds`` simulated skalds, 10 % Finished, 5 % Failed with the
retry budget spent, 5 % Created that can never be dispatched (half of a class no skald advertises,
half waiting on a dependency that is not Finished), so every dispatcher sweep scans them again.

One helper process (this file with ``--helper``) plays the skalds as ``NodePolicy`` does: every second,
for each skald, ``StateView.skald_alive`` (re-register when the lease is gone) and
``StateView.skald_heartbeat`` with its task ids, then one ``StateView.task_heartbeats`` with a
beat counter (0–199, +1 per second) for every Running task, lease 3 s (``heartbeat_interval × 3``).

Then a controller (``python -m skalds.controller.main``, ``DISPATCHER`` mode, default intervals) starts
as a subprocess; after ``--settle`` s its CPU is measured (``psutil`` user + system of its process
tree) over ``--window`` s three times: with no client; with one SSE client on the stream the
dashboard keeps open (``/api/events/tasks?types=…``: every change but heartbeats); and with one SSE
client on every event (the SSE poller runs only while a client is connected). Target: ≤ 10 % of one
core at steady state (no client); the two client phases are reported — the first is what an open
dashboard costs, the second the 8,000 heartbeat events a second it asks for. Every process started
here is stopped on exit, error, Ctrl-C or SIGTERM, and gets SIGTERM from the kernel if this process
is SIGKILLed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from run_controller import _CLEAN_PREFIXES, ModuleProc, free_port
from run_distributed import tree_cpu
from run_embedded import BenchError, Tracker, machine, terminate_as_exit, wait_until

TARGET_CPU = 10.0  # percent of one core
CLASS = "LoadWorker"  # advertised by every simulated skald
NOBODY = "NobodyRunsThis"  # advertised by none


# ---- the simulated skalds (helper process) -----------------------------------------------------
def helper_main(args: argparse.Namespace) -> int:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != int(os.environ["BENCH_PARENT_PID"]):
        return 1
    from skalds.backends.cache.state import StateView
    from skalds.backends.factory import cache_for
    from skalds.config.skald_config import SkaldConfig

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    plan = json.loads(Path(args.plan).read_text())
    owned: dict[str, list[str]] = plan["owned"]  # skald id → its Running task ids
    config = SkaldConfig(skalds_home=args.home, cache_url=args.cache_url)
    view = StateView(cache_for(config), config.redis_key_ttl)
    schemas = {CLASS: {"type": "object", "properties": {"n": {"type": "integer"}}}}
    lease = config.heartbeat_interval * 3
    for sid in owned:
        view.register_skald(sid, "node", [CLASS], schemas)
    beat = 0
    loops: list[float] = []
    status = Path(args.plan).with_suffix(".status")
    while not stop.is_set():
        t0 = time.monotonic()
        for sid, tasks in owned.items():
            if not view.skald_alive(sid):
                view.register_skald(sid, "node", [CLASS], schemas)
            view.skald_heartbeat(sid, beat, tasks, [CLASS])
        view.task_heartbeats({t: beat for tasks in owned.values() for t in tasks}, lease)
        beat = (beat + 1) % 200
        took = time.monotonic() - t0
        loops.append(took)
        status.write_text(json.dumps({"beats": len(loops), "last_s": took, "max_s": max(loops)}))
        stop.wait(max(0.0, 1.0 - took))
    view.cache.close()
    return 0


class Helper:
    def __init__(self, tracker: Tracker, home: str, cache_url: str, plan: str, env: dict[str, str]) -> None:
        self.plan = plan
        self.log_path = os.path.join(home, "helper.log")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, __file__, "--helper", "--home", home, "--cache-url", cache_url, "--plan", plan],
            env={**env, "BENCH_PARENT_PID": str(os.getpid())},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        tracker.track(self.popen.pid)

    def status(self) -> dict[str, Any]:
        if self.popen.poll() is not None:
            raise BenchError(f"helper exited; log:\n{Path(self.log_path).read_text(errors='replace')[-3000:]}")
        try:
            return dict(json.loads(Path(self.plan).with_suffix(".status").read_text()))
        except (OSError, ValueError):
            return {"beats": 0}

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


# ---- the load ---------------------------------------------------------------------------------
def prefill(env: dict[str, str], n_tasks: int, n_skalds: int, plan_path: str) -> dict[str, Any]:
    from skalds.client import SkaldsClient
    from skalds.model.task import Task, TaskLifecycleStatus

    S = TaskLifecycleStatus
    skalds = [f"sim-{i:03d}" for i in range(n_skalds)]
    owned: dict[str, list[str]] = {s: [] for s in skalds}
    counts: dict[str, int] = {}
    n_running = n_tasks * 80 // 100
    n_finished = n_tasks * 10 // 100
    n_failed = n_tasks * 5 // 100
    t0 = time.monotonic()
    with SkaldsClient(
        skalds_home=env["SKALDS_HOME"],
        store_url=env["SKALDS_STORE_URL"],
        bus_url=env["SKALDS_BUS_URL"],
        cache_url=env["SKALDS_CACHE_URL"],
        initiator="bench",
    ) as client:
        for i in range(n_tasks):
            tid = f"load-{i:05d}"
            fields: dict[str, Any] = {"id": tid, "className": CLASS, "attachments": {"n": i}}
            if i < n_running:
                sid = skalds[i % n_skalds]
                owned[sid].append(tid)
                fields.update(lifecycleStatus=S.RUNNING, executor=sid, epoch=1)
                kind = "Running"
            elif i < n_running + n_finished:
                fields.update(lifecycleStatus=S.FINISHED, executor=skalds[i % n_skalds], epoch=1)
                kind = "Finished"
            elif i < n_running + n_finished + n_failed:
                fields.update(lifecycleStatus=S.FAILED, executor=skalds[i % n_skalds], epoch=1, retries=99)
                fields["exception"] = "boom"
                kind = "Failed (retry budget spent)"
            elif i % 2:
                fields["className"] = NOBODY
                kind = f"Created, class {NOBODY}"
            else:
                fields["dependencies"] = ["load-00000"]  # Running, never Finished
                kind = "Created, dependency not finished"
            client.store.create(Task.model_validate(fields))
            counts[kind] = counts.get(kind, 0) + 1
    Path(plan_path).write_text(json.dumps({"owned": owned}))
    return {"counts": counts, "prefill_s": time.monotonic() - t0}


def tree_rss(pid: int) -> float:
    """RSS (MiB) of a process and its live descendants."""
    p = psutil.Process(pid)
    total = p.memory_info().rss
    for c in p.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += c.memory_info().rss
    return total / 2**20


class SseReader:
    """One client of ``/api/events/tasks``, counting events, in a thread."""

    def __init__(self, base_url: str, path: str = "/api/events/tasks") -> None:
        self.path = path
        self.events = 0
        self.connects = 0
        self.types: dict[str, int] = {}
        self.bytes = 0
        self.error: str | None = None
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(5.0, read=30.0), trust_env=False)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._client.stream("GET", self.path) as r:
                    r.raise_for_status()
                    self.connected.set()
                    self.connects += 1
                    for line in r.iter_lines():
                        self.bytes += len(line) + 1
                        if line.startswith("data:"):
                            self.events += 1
                            with contextlib.suppress(ValueError):
                                kind = str(json.loads(line[5:]).get("type"))
                                self.types[kind] = self.types.get(kind, 0) + 1
                        if self._stop.is_set():
                            return
            except httpx.ReadTimeout:
                continue  # no byte for 30 s: reconnect
            except httpx.HTTPError as exc:
                if not self._stop.is_set():
                    self.error = repr(exc)
                    time.sleep(0.5)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._client.close()


#: The stream the dashboard keeps open: every task change but the heartbeats.
DASHBOARD_STREAM = "/api/events/tasks?types=task_status,task_error,task_exception,task_deleted"
PHASES = (
    ("idle", "no client"),
    ("dashboard", "1 SSE client on the dashboard's stream (no heartbeats)"),
    ("sse", "1 SSE client on every event (8,000 heartbeats/s)"),
)


def measure(pid: int, window: float, helper: Helper) -> dict[str, Any]:
    beats0 = helper.status()["beats"]
    c0, t0 = tree_cpu(pid), time.monotonic()
    rss: list[float] = []
    while time.monotonic() - t0 < window:
        time.sleep(min(1.0, window - (time.monotonic() - t0)))
        rss.append(tree_rss(pid))
    c1, t1 = tree_cpu(pid), time.monotonic()
    st = helper.status()
    return {
        "window_s": t1 - t0,
        "cpu_s": c1 - c0,
        "cpu_pct": 100.0 * (c1 - c0) / (t1 - t0),
        "rss_mib_max": max(rss),
        "rss_mib_end": rss[-1],
        "helper_beats": st["beats"] - beats0,
        "helper_loop_max_s": st.get("max_s"),
        "helper_loop_last_s": st.get("last_s"),
    }


def run_backend(
    tracker: Tracker, root: str, name: str, base_env: dict[str, str], cache_url: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    home = os.path.join(root, name)
    os.makedirs(home)
    url = f"sqlite:///{home}/skalds.db"
    env = {**base_env, "SKALDS_HOME": home, "SKALDS_STORE_URL": url, "SKALDS_BUS_URL": url}
    env["SKALDS_CACHE_URL"] = cache_url or url
    plan = os.path.join(home, "plan.json")
    print(f"[{name}] prefill {args.tasks} tasks …", file=sys.stderr)
    res: dict[str, Any] = prefill(env, args.tasks, args.skalds, plan)
    helper = Helper(tracker, home, env["SKALDS_CACHE_URL"], plan, env)
    wait_until(lambda: helper.status()["beats"] >= 2, 60.0, "helper beats twice", 0.1)
    port = free_port()
    ctl_env = {
        **env,
        "SYSTEM_CONTROLLER_PORT": str(port),
        "SYSTEM_CONTROLLER_HOST": "127.0.0.1",
        "SYSTEM_CONTROLLER_MODE": "DISPATCHER",
        "LOG_LEVEL": "INFO",
    }
    ctl = ModuleProc(tracker, f"controller-{name}", "skalds.controller.main", [], ctl_env, home)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0, trust_env=False)
    sse: SseReader | None = None
    try:

        def healthy() -> bool:
            if ctl.popen.poll() is not None:
                raise BenchError(f"controller exited; log tail:\n{ctl.log_tail()}")
            try:
                return http.get("/api/system/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 60.0, "controller healthy", 0.1)
        online = [s for s in http.get("/api/skalds").json().get("items", []) if s.get("status") == "online"]
        res["skalds_online_at_start"] = len(online)
        print(f"[{name}] settle {args.settle:g} s, then {args.window:g} s without a client …", file=sys.stderr)
        time.sleep(args.settle)
        res["idle"] = measure(ctl.pid, args.window, helper)
        print(f"[{name}] … {res['idle']['cpu_pct']:.1f} % ; now with the dashboard's task stream …", file=sys.stderr)
        for phase, path in (("dashboard", DASHBOARD_STREAM), ("sse", "/api/events/tasks")):
            sse = SseReader(f"http://127.0.0.1:{port}", path)
            if not sse.connected.wait(30.0):
                raise BenchError(f"SSE client did not connect: {sse.error}")
            time.sleep(args.settle)
            ev0, b0, n0 = sse.events, sse.bytes, sse.connects
            res[phase] = m = measure(ctl.pid, args.window, helper)
            m["events"] = sse.events - ev0
            m["events_per_s"] = (sse.events - ev0) / m["window_s"]
            m["kib_per_s"] = (sse.bytes - b0) / 1024 / m["window_s"]
            m["types_total"] = dict(sse.types)
            m["reconnects"] = sse.connects - n0
            log = Path(ctl.log_path).read_text(errors="replace")
            m["dropped_total"] = log.count("dropped: it read too slowly")
            m["client_error"] = sse.error
            print(f"[{name}] … {phase}: {m['cpu_pct']:.1f} %", file=sys.stderr)
            if args.pyspy and phase == args.pyspy_phase:  # with this client still connected
                res["pyspy"] = pyspy(ctl.pid, home, args.pyspy, phase)
            sse.close()
            sse = None
        status = http.get("/api/tasks", params={"pageSize": 1, "status": "Running"})
        res["running_after"] = status.json().get("total") if status.status_code == 200 else status.status_code
        log = Path(ctl.log_path).read_text(errors="replace")
        res["controller_log_warnings"] = sum(1 for ln in log.splitlines() if "WARNING" in ln or "ERROR" in ln)
        res["controller_log_tail"] = log.splitlines()[-8:]
    finally:
        if sse is not None:
            sse.close()
        ctl.stop()
        helper.stop()
        http.close()
    return res


def pyspy(pid: int, home: str, seconds: int, phase: str) -> str | None:
    """A py-spy profile of the controller (``--format raw``) while an SSE client is connected."""
    exe = shutil.which("py-spy")
    if exe is None:
        return None
    out = os.path.join(home, "pyspy.txt")
    subprocess.run(
        [exe, "record", "-p", str(pid), "-d", str(seconds), "-o", out, "--format", "raw", "--nonblocking"],
        capture_output=True,
        check=False,
    )
    dest = f"/tmp/controller-load-{Path(home).name}-{phase}-pyspy.txt"
    if os.path.exists(out):
        shutil.copy(out, dest)
        return dest
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--skalds", type=int, default=100)
    p.add_argument("--settle", type=float, default=10.0, help="seconds before each measurement (default 10)")
    p.add_argument("--window", type=float, default=30.0, help="seconds of each measurement (default 30)")
    p.add_argument("--redis", action="store_true", help="also measure with a Redis cache (redis-server)")
    p.add_argument("--pyspy", type=int, default=0, help="py-spy record this many seconds with an SSE client")
    p.add_argument("--pyspy-phase", default="sse", choices=("dashboard", "sse"), help="with which client (default sse)")
    p.add_argument("--json", help="also write all results to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--helper", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--home", help=argparse.SUPPRESS)
    p.add_argument("--cache-url", help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.helper:
        return helper_main(args)
    root = tempfile.mkdtemp(prefix="skalds-bench-load-")
    tracker = Tracker()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEAN_PREFIXES)}
    shown = sys.argv[1:] if argv is None else argv
    command = " ".join(["python", "bench/run_controller_load.py", *shown])
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    res: dict[str, Any] = {}
    redis = None
    ok = False
    try:
        with terminate_as_exit():
            print(f"work dir {root}", file=sys.stderr)
            if args.redis:
                sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
                from tests.support.servers import RedisServer

                binary = shutil.which("redis-server")
                if binary is None:
                    raise BenchError("redis-server not found")
                redis = RedisServer(binary)
                redis.start()
            res["embedded"] = run_backend(tracker, root, "embedded", base_env, None, args)
            if redis is not None:
                res["redis"] = run_backend(tracker, root, "redis-cache", base_env, redis.url, args)
                res["redis"]["redis_server_cpu_s"] = tree_cpu(redis.proc.pid) if redis.proc else None
        ok = True
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
    finally:
        tracker.cleanup()
        if redis is not None:
            redis.stop()
        if args.keep or not ok:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if not ok:
        return 2
    verdicts = []
    print(f"Started: {started} UTC  ")
    print(f"Command: `{command}`  ")
    for key, value in machine().items():
        print(f"{key}: {value}  ")
    print(f"load average at start: {load_start}  \n")
    print("| Backend | Phase | controller CPU (% of a core) | RSS max (MiB) | helper beats | SSE events/s | Result |")
    print("|---|---|---:|---:|---:|---:|---|")
    for key, label in (("embedded", "embedded (SQLite)"), ("redis", "SQLite store/bus + Redis cache")):
        if key not in res:
            continue
        for phase, plabel in PHASES:
            m = res[key][phase]
            passed = m["cpu_pct"] <= TARGET_CPU
            if phase != "idle":  # the target is the steady state; clients add what they ask for
                verdict = "(reported)"
            else:
                verdicts.append(passed)
                verdict = "PASS" if passed else "**FAIL**"
            ev = f"{m['events_per_s']:.0f}" if "events_per_s" in m else ""
            print(
                f"| {label} | {plabel} | {m['cpu_pct']:.1f} | {m['rss_mib_max']:.0f} | {m['helper_beats']} | {ev} | "
                f"{verdict} |"
            )
    print()
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "controller_log_tail"} for k, v in res.items()}))
    if args.json:
        out = {"started": started, "command": command, "machine": machine(), "args": vars(args), **res}
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
