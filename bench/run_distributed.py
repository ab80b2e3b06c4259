"""Latency benchmarks of a node skald on real servers: Kafka protocol (Tansu) + Redis + PostgreSQL.

Usage::

    python bench/run_distributed.py            # full run (about a minute of measuring)
    python bench/run_distributed.py --quick    # short run
    python bench/run_distributed.py --json out.json

Each run starts its own servers on free loopback ports — a Tansu broker (memory storage, so every
topic starts empty), ``redis-server`` and a throwaway PostgreSQL cluster — then a node skald
(``bench/bench_workers.py``) against them; this process is the client. Servers and skald are stopped
on exit, on an error, on Ctrl-C and on SIGTERM; if this process is killed outright, the kernel sends
the servers and the skald a signal (``PR_SET_PDEATHSIG``) so no process outlives it.

0. for reference, the bare Kafka hop: ``publish`` → a consumer's ``poll`` returns it (skalds' driver).
1. create → main: ``create_task(..., executor=...)`` (store insert, assign, ``task.assign``) until
   the worker's @run_main_handler starts.
2. update → handler: ``update_attachments`` (store + ``task.update.attachment``) and an outside
   producer, ``KafkaProxy.produce`` straight on ``taskworker.update``.
3. cancel → release handler ran, and → worker process gone (``pidfd`` readable).
4. updates sent in the first second of a worker's life (from the moment ``create_task`` returns):
   how many reach the @update_event_handler, per path.
5. how many messages each topic held before and after each phase (and a full read at the end), and
   the CPU time of the servers and the skald per phase.

Measuring works as in ``run_embedded.py`` (whose code this reuses): worker hooks send ``time.time()``
to a unix datagram socket; a latency is that minus ``time.time()`` taken here just before the call.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import hashlib
import json
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import psutil
from run_embedded import (
    BEAT_CANCELLED,
    Bench,
    BenchError,
    Receiver,
    SkaldProc,
    Tracker,
    machine,
    summary,
    terminate_as_exit,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.support.servers (the servers the test suite uses)

from skalds.backends.bus.kafka import KafkaEventBus  # noqa: E402
from skalds.client import SkaldsClient  # noqa: E402
from skalds.model.event import TaskEvent, UpdateTaskWorkerEvent  # noqa: E402
from skalds.proxy.kafka import KafkaConfig, KafkaProxy, KafkaTopic  # noqa: E402
from skalds.utils.logging import configure as log_configure  # noqa: E402
from tests.support.servers import (  # noqa: E402
    PostgresServer,
    RedisServer,
    TansuServer,
    pg_bindir,
    redis_binary,
    tansu_binary,
    wait_port,
)

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: preexec functions run between fork and exec
HOP_TOPIC = "bench.hop"
COMMAND_TOPICS = ("task.assign", "task.cancel", "task.update.attachment", "taskworker.update")
# Update paths, by the name each sample carries in its "via" field.
VIA_STORE = "update_attachments"
VIA_PROXY = "kafka_proxy"


# ---- servers ---------------------------------------------------------------------------------
def _die_with_us(sig: int, parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when this process dies, even by SIGKILL."""

    def preexec() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)  # after any setuid (which would clear it)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _spawn(server: Any, args: list[str], sig: int, **kw: Any) -> subprocess.Popen[bytes]:
    with open(server.dir / "server.log", "ab") as log:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=server.dir,
            start_new_session=True,  # a terminal's Ctrl-C reaches only this process; we stop them in order
            preexec_fn=_die_with_us(sig, os.getpid()),
            **kw,
        )


class BenchTansu(TansuServer):
    def start(self) -> None:
        self.proc = _spawn(self, self.args(), signal.SIGKILL)
        wait_port(self.port)


class BenchRedis(RedisServer):
    def start(self) -> None:
        self.proc = _spawn(self, self.args(), signal.SIGKILL)
        wait_port(self.port)


class BenchPostgres(PostgresServer):
    """The test suite's cluster (``initdb`` as user postgres), but the postmaster runs in the
    foreground as our child (not daemonised by ``pg_ctl``) so that it can die with us."""

    def start(self) -> None:
        args = [
            f"{self.bindir}/postgres",
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.dir),
            *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off"),
            *("-c", "full_page_writes=off", "-c", "max_connections=200"),
        ]
        kw: dict[str, Any] = {}
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self.proc = _spawn(self, args, signal.SIGQUIT, **kw)  # SIGQUIT: immediate shutdown
        wait_port(self.port, 30.0)
        import psycopg

        deadline = time.monotonic() + 30.0
        while True:  # the port opens a little before the server accepts sessions
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class Servers:
    """Tansu, Redis and PostgreSQL for one run; :meth:`stop` is idempotent and stops whatever started."""

    def __init__(self) -> None:
        self.tansu: BenchTansu | None = None
        self.redis: BenchRedis | None = None
        self.postgres: BenchPostgres | None = None

    def start(self) -> None:
        tansu, redis, pg = tansu_binary(), redis_binary(), pg_bindir()
        missing = [
            n for n, b in (("tansu (SKALDS_TANSU_BIN)", tansu), ("redis-server", redis), ("PostgreSQL", pg)) if not b
        ]
        if missing:
            raise BenchError(f"not found: {', '.join(missing)} (scripts/test installs them)")
        assert tansu and redis and pg
        self.tansu = BenchTansu(tansu)
        self.tansu.start()
        self.redis = BenchRedis(redis)
        self.redis.start()
        self.postgres = BenchPostgres(pg)
        self.postgres.start()

    def stop(self) -> None:
        for name in ("postgres", "redis", "tansu"):
            server = getattr(self, name)
            setattr(self, name, None)
            if server is not None:
                try:
                    server.stop()
                except Exception as exc:  # keep stopping the others
                    print(f"stopping {name} failed: {exc!r}", file=sys.stderr)

    def pids(self) -> dict[str, int]:
        out = {}
        for name in ("tansu", "redis", "postgres"):
            server = getattr(self, name)
            if server is not None and server.proc is not None:
                out[name] = server.proc.pid
        return out


def versions() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "unknown"

    pg = pg_bindir()
    return {
        "code at start": code_state(),
        "tansu": first_line([tansu_binary() or "tansu", "--version"]),
        "redis": first_line([redis_binary() or "redis-server", "--version"]),
        "postgres": first_line([f"{pg}/postgres", "--version"]) if pg else "unknown",
        "confluent-kafka": f"{_first(ck.version())} (librdkafka {_first(ck.libversion())})",
    }


def _first(version: object) -> str:
    """confluent-kafka's ``version()`` is a string in some releases, a (string, int) tuple in others."""
    return str(version[0] if isinstance(version, tuple) else version)


def code_state() -> str:
    """The commit, and a digest of every ``skalds/**/*.py`` as it is on disk now (the tree may be dirty)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = "unknown"
    digest = hashlib.sha256()
    for path in sorted((ROOT / "skalds").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return f"git {head or 'unknown'}, skalds/**/*.py sha256 {digest.hexdigest()[:12]}"


# ---- what the servers hold and spend ---------------------------------------------------------
def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live descendants."""
    try:
        p = psutil.Process(pid)
        t = p.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in p.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system + c.children_user + c.children_system
        return total
    except psutil.Error:
        return float("nan")


class Meter:
    """Topic fill levels (high minus low watermark) and CPU time, sampled around each phase."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumer = ck.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-meter-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )

    def topics(self) -> dict[str, int]:
        """Messages per topic as the broker reports them (sum over partitions of high - low)."""
        out: dict[str, int] = {}
        md = self._consumer.list_topics(timeout=10.0)
        for name, topic in sorted(md.topics.items()):
            total = 0
            for p in topic.partitions:
                low, high = self._consumer.get_watermark_offsets(ck.TopicPartition(name, p), timeout=10.0, cached=False)
                total += max(int(high) - max(int(low), 0), 0)
            out[name] = total
        return out

    def read_all(self, quiet: float = 1.0, limit: float = 60.0) -> dict[str, int]:
        """Messages per topic counted by reading every partition from its beginning."""
        md = self._consumer.list_topics(timeout=10.0)
        parts = [ck.TopicPartition(name, p, ck.OFFSET_BEGINNING) for name, t in md.topics.items() for p in t.partitions]
        reader = ck.Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"bench-count-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        counts = dict.fromkeys(sorted(md.topics), 0)
        try:
            reader.assign(parts)
            last = time.monotonic()
            deadline = last + limit
            while time.monotonic() - last < quiet and time.monotonic() < deadline:
                for m in reader.consume(500, 0.2):
                    if m.error() is None:
                        counts[m.topic() or ""] = counts.get(m.topic() or "", 0) + 1
                        last = time.monotonic()
        finally:
            reader.close()
        return counts

    def close(self) -> None:
        self._consumer.close()


def prefill(url: str, bootstrap: str, per_topic: int) -> None:
    """Put ``per_topic`` messages on each command topic (commands for tasks that do not exist).

    The topics are created first as the skald would (``KafkaEventBus.ensure_topics``: its partition
    count, not the broker's auto-creation default). A new consumer group starts at the end of each
    partition, so the skald never reads these: they only make the topics fuller.
    """
    bus = KafkaEventBus(url)
    try:
        bus.ensure_topics(list(COMMAND_TOPICS), wait=10.0)
    finally:
        bus.close()
    # One message per produce request, as skalds publishes: the broker's high watermark is then
    # exact (Tansu reports the first offset of the last batch + 1, see bench/README.md).
    producer = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    for topic in COMMAND_TOPICS:
        for i in range(per_topic):
            key = f"prefill-{i}"
            if topic == "taskworker.update":
                value = UpdateTaskWorkerEvent(attachments={"seq": i}).to_json()
            else:
                value = TaskEvent(title=topic, initiator="bench-prefill", recipient="nobody", taskIds=[key]).to_json()
            producer.produce(topic, key=key, value=value)
            if producer.flush(10.0):
                raise BenchError(f"prefill: the broker did not take message {i} of {topic} within 10 s")


# ---- the benchmark ---------------------------------------------------------------------------
@dataclass
class DistBench(Bench):
    servers: Servers | None = None
    proxy: KafkaProxy | None = None
    meter: Meter | None = None
    phases: list[dict[str, Any]] = field(default_factory=list)
    #: every update sent: (task, via, seq, sentAt, time the call returned)
    sends: list[tuple[str, str, int, float, float]] = field(default_factory=list)

    def start_skald(self, skald_id: str) -> SkaldProc:
        skald = super().start_skald(skald_id)

        def listening() -> bool:
            if skald.popen.poll() is not None:
                raise BenchError(f"skald {skald_id} exited; log tail:\n{skald.log_tail()}")
            try:
                return "listening for commands" in Path(skald.log_path).read_text(errors="replace")
            except OSError:
                return False

        # Registered in the cache is not enough: its consumer group must hold the partitions, or
        # the first commands would wait for the next reconciliation.
        wait_until(listening, 30.0, f"skald {skald_id} consumes the command topics", 0.02)
        return skald

    def update_senders(self, task_id: str) -> dict[str, Callable[[dict[str, Any]], Any]]:
        assert self.proxy is not None
        proxy = self.proxy
        senders: dict[str, Callable[[dict[str, Any]], Any]] = {
            VIA_STORE: lambda p: self.client.update_attachments(task_id, p),
            VIA_PROXY: lambda p: proxy.produce(
                KafkaTopic.TASKWORKER_UPDATE, key=task_id, value=UpdateTaskWorkerEvent(attachments=p)
            ),
        }

        def logged(via: str, send: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
            def call(p: dict[str, Any]) -> Any:
                result = send(p)
                self.sends.append((task_id, via, p["seq"], p["sentAt"], time.time()))
                return result

            return call

        return {via: logged(via, send) for via, send in senders.items()}

    def update_offset(self, i: int, spacing: float) -> float:
        """Slot ``i`` plus a random part of it: the gaps vary between 0 and 2 × ``spacing``.

        Evenly spaced sends phase-lock with the consumer's fetch cycle on Tansu (a fetch waits
        ``fetch.wait.max.ms``): at exactly 20 ms apart a produce → consume round trip measured
        1.7 ms p50, at random gaps 3.2 ms — the latter is what a real producer sees.
        """
        return (i + random.random() * 0.95) * spacing

    @contextlib.contextmanager
    def phase(self, name: str, skald: SkaldProc) -> Iterator[None]:
        assert self.meter is not None and self.servers is not None
        pids = {**self.servers.pids(), "skald (+ workers)": skald.pid, "benchmark": os.getpid()}
        before = {"topics": self.meter.topics(), "cpu": {k: tree_cpu(p) for k, p in pids.items()}}
        t0 = time.monotonic()
        yield
        wall = time.monotonic() - t0
        after = {"topics": self.meter.topics(), "cpu": {k: tree_cpu(p) for k, p in pids.items()}}
        cpu = {k: after["cpu"][k] - before["cpu"][k] for k in pids}
        self.phases.append(
            {"name": name, "wall_s": wall, "before": before["topics"], "after": after["topics"], "cpu_s": cpu}
        )

    def superseded(self, task_id: str, via: str, missing: list[int], delivered: set[int], window: float) -> list[int]:
        """The missing store-path updates a newer one overtook (not lost).

        ``update_attachments`` is level-triggered: the event only says "read the store". When
        update k+1 is stored before the skald reads the store for k's event (k+1 sent less than
        ``window`` — the slowest delivery seen — after k's call returned), the worker gets k+1's
        value straight away and the event of k+1 finds nothing new. Last value wins, by design.
        """
        if via != VIA_STORE:
            return []
        sends = {seq: (sent, returned) for t, v, seq, sent, returned in self.sends if t == task_id and v == via}
        out = []
        for k in missing:
            nxt = sends.get(k + 1)
            if k in sends and nxt is not None and nxt[0] - sends[k][1] < window and any(d > k for d in delivered):
                out.append(k)
        return out

    update_settle = 5.0  # a superseded update never arrives: do not wait 30 s for it

    def update_to_handler(self, skald: SkaldProc) -> None:
        super().update_to_handler(skald)
        for via in (VIA_STORE, VIA_PROXY):
            r = self.results[f"update_{via}"]
            delivered = set(range(self.args.updates)) - set(r["lost"])
            over = self.superseded("updates", via, r["lost"], delivered, r["summary"]["max"])
            r["missing"] = r["lost"]
            r["superseded"] = over
            r["lost"] = [k for k in r["lost"] if k not in over]
            r["superseded_gaps_ms"] = [self.gap_ms("updates", via, k) for k in over]
            r["last_arrived"] = self.args.updates - 1 in delivered

    def gap_ms(self, task_id: str, via: str, k: int) -> float:
        """Milliseconds from update k's call returning to update k+1 being sent."""
        sends = {seq: (sent, returned) for t, v, seq, sent, returned in self.sends if t == task_id and v == via}
        return (sends[k + 1][0] - sends[k][1]) * 1000

    # 0 ----------------------------------------------------------------------------------------
    def kafka_hop(self) -> None:
        """Reference: publish → a consumer's poll() returns it, with skalds' own Kafka driver and
        settings, one message at a time at random gaps, on a topic of its own."""
        assert self.servers is not None and self.servers.tansu is not None
        producer, reader = KafkaEventBus(self.servers.tansu.url), KafkaEventBus(self.servers.tansu.url)
        consumer = reader.subscribe(f"bench-hop-{uuid.uuid4().hex[:8]}", (HOP_TOPIC,))
        try:

            def wait_for(value: bytes) -> float:
                deadline = time.monotonic() + 10.0
                while time.monotonic() < deadline:
                    for m in consumer.poll(1.0):
                        if m.value == value:
                            return time.time()
                raise BenchError(f"{HOP_TOPIC}: message {value!r} not consumed within 10 s")

            producer.publish(HOP_TOPIC, "warmup", b"warmup")
            wait_for(b"warmup")
            latencies, calls = [], []
            for i in range(self.args.hops):
                time.sleep(random.uniform(0.010, 0.060))
                t0 = time.time()
                producer.publish(HOP_TOPIC, "hop", str(i).encode())
                calls.append(time.time() - t0)
                latencies.append(wait_for(str(i).encode()) - t0)
        finally:
            consumer.close()
            producer.close()
            reader.close()
        self.results["kafka_hop"] = {"summary": summary(latencies), "samples": latencies, "call": summary(calls)}

    # 4 ----------------------------------------------------------------------------------------
    def early_updates(self, skald: SkaldProc) -> None:
        n, window = self.args.early_updates, self.args.early_window
        for via in (VIA_STORE, VIA_PROXY):
            rows: list[dict[str, Any]] = []
            latencies: list[float] = []
            by_seq: list[tuple[int, float]] = []
            for r in range(self.args.early_tasks):
                task_id = f"early-{via}-{r}"
                send = self.update_senders(task_id)[via]
                self.client.create_task(self.task(task_id, hold=True), executor=skald.skald_id)
                start, t_created = time.monotonic(), time.time()
                for i in range(n):
                    # the first goes at once; the others at random points of their slots
                    delay = start + (self.update_offset(i, window / n) if i else 0.0) - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    send({"sentAt": time.time(), "seq": i, "via": via})
                sent_s = time.monotonic() - start
                main = self.wait_main(task_id)
                init = self.recv.wait(("init", task_id), 10.0, f"init of {task_id}")
                in_init = int(init["seq"]) if init.get("via") == via and int(init.get("seq", -1)) >= 0 else None
                # an update already in the attachments the worker started with does not reach the
                # handler again (the skald forwards only what differs from what the worker has)
                keys = [("update", task_id, via, i) for i in range(n) if i != in_init]
                got = self.recv.wait_many(keys, self.args.early_settle)
                handled = sorted(k[3] for k in got)
                by_seq.extend((k[3], m["t"] - m["sentAt"]) for k, m in got.items())
                delivered = set(handled) | ({in_init} if in_init is not None else set())
                lat = [m["t"] - m["sentAt"] for m in got.values()]
                latencies.extend(lat)
                missing = [i for i in range(n) if i not in delivered]
                over = self.superseded(task_id, via, missing, delivered, max(lat, default=0.0))
                rows.append(
                    {
                        "task": task_id,
                        "sent": n,
                        "sending_s": sent_s,
                        "handled": len(handled),
                        "in_initialize": in_init,
                        "missing": [i for i in missing if i not in over],
                        "superseded": over,
                        "last_arrived": (n - 1) in delivered,
                        "create_return_to_init_ms": (init["t"] - t_created) * 1000,
                        "create_return_to_main_ms": (main["t"] - t_created) * 1000,
                        "handled_before_main": sum(1 for m in got.values() if m["t"] < main["t"]),
                        "max_latency_ms": max(lat) * 1000 if lat else float("nan"),
                    }
                )
                self.client.cancel(task_id)
                self.recv.wait(("release", task_id), 30.0, f"release of {task_id}")
                self.wait_ended(task_id, BEAT_CANCELLED)
                self.pace()
            self.results[f"early_{via}"] = {
                "tasks": rows,
                "latency": summary(latencies),
                "samples": latencies,
                "by_seq": by_seq,
                "first_5": summary([x for i, x in by_seq if i < 5]),
                "rest": summary([x for i, x in by_seq if i >= 5]),
            }

    def run(self) -> None:
        assert self.proxy is not None and self.meter is not None
        if self.args.prefill:
            assert self.servers is not None and self.servers.tansu is not None
            t0 = time.monotonic()
            prefill(self.servers.tansu.url, self.servers.tansu.bootstrap, self.args.prefill)
            self.results["prefill_s"] = time.monotonic() - t0
        self.results["topics_at_start"] = self.meter.topics()
        skald = self.start_skald("bench-node")
        self.results["topics_after_skald_start"] = self.meter.topics()
        # connect the outside producer before it is timed (producer, metadata, topic check)
        self.proxy.produce(
            KafkaTopic.TASKWORKER_UPDATE, key="bench-warmup", value=UpdateTaskWorkerEvent(attachments={})
        )
        t = time.monotonic()
        with self.phase("0. Kafka hop (reference)", skald):
            self.kafka_hop()
        with self.phase("1. create → main", skald):
            self.create_to_main(skald)
        with self.phase("2. update → handler", skald):
            self.update_to_handler(skald)
        with self.phase("3. cancel", skald):
            self.cancel(skald)
        with self.phase("4. updates in a worker's first second", skald):
            self.early_updates(skald)
        self.results["elapsed_s"] = time.monotonic() - t
        self.results["phases"] = self.phases
        self.results["sends"] = self.sends
        skald.stop()
        self.results["topics_at_end"] = self.meter.topics()
        self.results["topics_read_at_end"] = self.meter.read_all()


# ---- report ----------------------------------------------------------------------------------
def _ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def halves(samples: list[float]) -> str:
    h = len(samples) // 2
    if h < 2:
        return ""
    a, b = summary(samples[:h]), summary(samples[h:])
    return f"p50 first half {_ms(a['p50'])} ms, second half {_ms(b['p50'])} ms"


def report(results: dict[str, Any], args: argparse.Namespace) -> tuple[str, list[tuple[str, bool]]]:
    verdicts: list[tuple[str, bool]] = []
    lines = [
        "| Benchmark | n | p50 | p90 | p99 | max | Target | Result |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]

    def row(name: str, s: dict[str, float], target: str = "", ok: bool | None = None) -> None:
        verdict = "" if ok is None else ("PASS" if ok else "**FAIL**")
        cells = " | ".join(_ms(s[k]) for k in ("p50", "p90", "p99", "max"))
        lines.append(f"| {name} | {s['n']} | {cells} | {target} | {verdict} |")
        if ok is not None:
            verdicts.append((name.split(" (")[0], ok))

    h = results["kafka_hop"]
    row(f"0. reference: KafkaEventBus.publish → poll() on `{HOP_TOPIC}` (ms)", h["summary"])
    row("   (the publish() call itself: produce + broker ack, ms)", h["call"])
    c = results["create_to_main"]["summary"]
    row("1. create_task → @run_main_handler (ms)", c, "p50 ≤ 30", c["p50"] <= 0.030)
    row("   (the create_task() call itself, ms)", results["create_call"]["summary"])
    row("   (create_task → worker's initialize() in the new process, ms)", results["create_to_init"]["summary"])
    row("   (initialize() → @run_main_handler, ms)", results["init_to_main"]["summary"])
    for via, label in ((VIA_STORE, "update_attachments"), (VIA_PROXY, "KafkaProxy.produce(taskworker.update)")):
        r = results[f"update_{via}"]
        s = r["summary"]
        lost = f", {len(r['lost'])} lost" if r["lost"] else ""
        lost += f", {len(r['superseded'])} superseded" if r["superseded"] else ""
        row(
            f"2. {label} → @update_event_handler (ms{lost})",
            s,
            "p50 ≤ 15, none lost",
            s["p50"] <= 0.015 and not r["lost"],
        )
        row(f"   (the {label.split('(')[0]}() call itself, ms)", r["call"])
    s = results["cancel_release"]["summary"]
    row("3a. cancel → @release_handler ran (ms)", s)
    s = results["cancel_gone"]["summary"]
    row("3b. cancel → worker process gone (ms)", s, "p50 ≤ 50", s["p50"] <= 0.050)
    for via in (VIA_STORE, VIA_PROXY):
        r = results[f"early_{via}"]
        row(f"4. {via}: update in the worker's first second → handler (ms)", r["latency"])
        row("   (of which updates 0–4, sent in the first 0.25 s, ms)", r["first_5"])
    lines.append("")

    lines.append("Updates sent in the first second after `create_task` returned (target: every one delivered):")
    lines.append("")
    lines.append(
        "| Path | tasks | sent | handled | in initialize() data | superseded | missing | last value arrived | Result |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for via in (VIA_STORE, VIA_PROXY):
        rows = results[f"early_{via}"]["tasks"]
        sent = sum(r["sent"] for r in rows)
        handled = sum(r["handled"] for r in rows)
        in_init = sum(1 for r in rows if r["in_initialize"] is not None)
        missing = sum(len(r["missing"]) for r in rows)
        over = sum(len(r["superseded"]) for r in rows)
        last = sum(1 for r in rows if r["last_arrived"])
        ok = missing == 0
        verdicts.append((f"4. {via}: every early update delivered", ok))
        lines.append(
            f"| {via} | {len(rows)} | {sent} | {handled} | {in_init} | {over} | {missing} | {last}/{len(rows)} | "
            f"{'PASS' if ok else '**FAIL**'} |"
        )
    lines.append("")
    for via in (VIA_STORE, VIA_PROXY):
        rows = results[f"early_{via}"]["tasks"]
        to_main = summary([r["create_return_to_main_ms"] / 1000 for r in rows])
        before = sum(r["handled_before_main"] for r in rows)
        miss = {r["task"]: r["missing"] for r in rows if r["missing"]}
        lines.append(
            f"- {via}: create_task returned → main p50 {_ms(to_main['p50'])} ms (max {_ms(to_main['max'])}); "
            f"updates sent over {statistics_mean([r['sending_s'] for r in rows]):.2f} s per task; "
            f"{before} handled before main started" + (f"; missing (seq) {miss}" if miss else "") + "."
        )
    lines.append("")

    notes = len(lines)
    for via in (VIA_STORE, VIA_PROXY):
        r = results[f"update_{via}"]
        if r["superseded"]:
            gaps = ", ".join(f"{g:.1f}" for g in r["superseded_gaps_ms"])
            lines.append(
                f"2. {via}: {len(r['superseded'])} update(s) superseded, not lost (seq {r['superseded']}): the next "
                f"one was stored {gaps} ms after, before the skald read the store for the earlier event, so the "
                "worker got the newer value directly (level-triggered, last value wins)."
            )
        if r["lost"]:
            lines.append(f"2. {via}: update(s) never seen by the handler (seq): {r['lost']}.")
    if len(lines) > notes:
        lines.append("")
    create_trend = halves(results["create_to_main"]["samples"])
    cancel_trend = halves(results["cancel_gone"]["samples"])
    lines.append(f"Trend over the run (Tansu slows as topics fill): create → main {create_trend}; ")
    lines.append(f"cancel → gone {cancel_trend}.")
    lines.append("")

    topics = sorted(
        {t for ph in results["phases"] for t in (*ph["before"], *ph["after"])} | set(results["topics_at_end"])
    )
    lines.append("Messages per topic (broker watermarks, high − low, summed over partitions):")
    lines.append("")
    lines.append(
        "| Topic | at start | skald up | "
        + " | ".join(f"after {ph['name'].split('.')[0]}" for ph in results["phases"])
        + " | end (read back) |"
    )
    lines.append("|---|" + "---:|" * (3 + len(results["phases"])))
    read = results["topics_read_at_end"]
    for t in topics:
        cells = [
            str(results["topics_at_start"].get(t, "—")),
            str(results["topics_after_skald_start"].get(t, "—")),
            *(str(ph["after"].get(t, "—")) for ph in results["phases"]),
        ]
        cells.append(str(read[t]) if t in read else "—")
        lines.append(f"| `{t}` | {' | '.join(cells)} |")
    lines.append("")
    if not results["topics_at_start"]:
        lines.append("At start the broker held no topic at all (fresh Tansu, memory storage); the skald creates them.")
    elif "prefill_s" in results:
        lines.append(
            f"Prefilled (`--prefill {args.prefill}`): each command topic got {args.prefill} messages before the skald "
            f"started (in {results['prefill_s']:.1f} s); the skald's new consumer group starts after them "
            f"(`SKALDS_BUS_LOOKBACK=0`)."
        )
    same = all(results["topics_at_end"].get(t) == n for t, n in read.items())
    lines.append(
        "End: the watermarks agree with the messages read back from the beginning."
        if same
        else f"End: watermarks {results['topics_at_end']} differ from the read-back counts {read} "
        "(Tansu's watermark quirk, see bench/README.md)."
    )
    lines.append("")

    procs = list(results["phases"][0]["cpu_s"]) if results["phases"] else []
    lines.append("CPU used per phase (% of one core = CPU seconds / wall seconds):")
    lines.append("")
    lines.append("| Phase | wall s | " + " | ".join(procs) + " |")
    lines.append("|---|---:|" + "---:|" * len(procs))
    for ph in results["phases"]:
        cells = [f"{100 * ph['cpu_s'][p] / ph['wall_s']:.0f} %" for p in procs]
        lines.append(f"| {ph['name']} | {ph['wall_s']:.1f} | {' | '.join(cells)} |")
    lines.append("")
    warmup = ", ".join(_ms(x) for x in results["create_to_main"]["warmup"])
    lines.append(f"Warm-up create → main (excluded): {warmup} ms.")
    return "\n".join(lines), verdicts


def statistics_mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


# ---- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short run (fewer iterations)")
    p.add_argument("--creates", type=int, help="tasks for create → main (default 200, quick 30)")
    p.add_argument("--updates", type=int, help="updates per path (default 200, quick 50)")
    p.add_argument("--hops", type=int, help="reference Kafka round trips (default 150, quick 50)")
    p.add_argument(
        "--update-spacing", type=float, default=0.020, help="mean seconds between updates (random gaps, default 0.02)"
    )
    p.add_argument("--cancels", type=int, help="tasks for cancel (default 100, quick 15)")
    p.add_argument("--early-tasks", type=int, help="tasks per path for early updates (default 10, quick 3)")
    p.add_argument("--early-updates", type=int, default=20, help="updates per task in its first window (default 20)")
    p.add_argument("--early-window", type=float, default=1.0, help="seconds the early updates are spread over")
    p.add_argument("--early-settle", type=float, default=3.0, help="seconds to wait for early updates to arrive")
    p.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="messages to put on each command topic before the skald starts (default 0: fresh, empty topics)",
    )
    p.add_argument("--log-level", default="INFO", help="the skald's LOG_LEVEL (default INFO)")
    p.add_argument("--json", help="also write all results and samples to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary SKALDS_HOME (skald log)")
    args = p.parse_args(argv)
    defaults = {
        "hops": (150, 50),
        "creates": (200, 30),
        "updates": (200, 50),
        "cancels": (100, 15),
        "early_tasks": (10, 3),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_configure(level="WARNING", proc_name="bench")  # the drivers' debug lines: noise here
    home = tempfile.mkdtemp(prefix="skalds-bench-dist-")
    servers = Servers()
    tracker = Tracker()
    atexit.register(servers.stop)  # atexit runs last-registered first: the skald stops before the servers
    atexit.register(tracker.cleanup)
    recv: Receiver | None = None
    client: SkaldsClient | None = None
    proxy: KafkaProxy | None = None
    meter: Meter | None = None
    bench: DistBench | None = None
    command = " ".join(["python", *sys.argv]) if argv is None else "python bench/run_distributed.py " + " ".join(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    ok = False
    try:
        with terminate_as_exit():
            print(f"SKALDS_HOME={home}", file=sys.stderr)
            servers.start()  # before any thread exists (the servers' preexec_fn runs after fork)
            assert servers.tansu and servers.redis and servers.postgres
            urls = {
                "SKALDS_STORE_URL": servers.postgres.url,
                "SKALDS_BUS_URL": servers.tansu.url,
                "SKALDS_CACHE_URL": servers.redis.url,
            }
            print(" ".join(f"{k}={v}" for k, v in urls.items()), file=sys.stderr)
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("SKALD", "KAFKA_", "REDIS_", "MONGO_", "LOG_", "HEARTBEAT", "RECONCILE", "STOP_"))
            }
            env.update(SKALDS_HOME=home, **urls)
            if args.prefill:
                # The prefill measures full topics, not a replay of them: the skald's new group
                # starts at its own start, not a look-back earlier.
                env["SKALDS_BUS_LOOKBACK"] = "0"
            recv = Receiver(os.path.join(home, "bench.sock"))
            recv.start()
            client = SkaldsClient(
                skalds_home=home,
                store_url=urls["SKALDS_STORE_URL"],
                bus_url=urls["SKALDS_BUS_URL"],
                cache_url=urls["SKALDS_CACHE_URL"],
                initiator="bench",
            )
            proxy = KafkaProxy(KafkaConfig("127.0.0.1", servers.tansu.port))
            meter = Meter(servers.tansu.bootstrap)
            bench = DistBench(args, tracker, home, recv, client, env, servers=servers, proxy=proxy, meter=meter)
            bench.results["versions"] = versions()
            bench.run()
        ok = True
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        for skald in tracker.skalds:
            print(f"--- {skald.log_path} (tail)\n{skald.log_tail()}", file=sys.stderr)
        return 2
    finally:
        tracker.cleanup()
        if recv is not None:
            recv.stop()
        for closer in (client, proxy, meter):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer.close()
        servers.stop()
        if args.keep or not ok:
            print(f"kept {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)
    assert bench is not None
    table, verdicts = report(bench.results, args)
    print(f"Started: {started} UTC  ")
    print(f"Command: `{command}`  ")
    for key, value in {**machine(), **bench.results["versions"]}.items():
        print(f"{key}: {value}  ")
    print(f"load average at start: {load_start}  ")
    print(f"Elapsed: {bench.results['elapsed_s']:.0f} s\n")
    print(table)
    print()
    for name, passed in verdicts:
        print(f"- {name.strip()}: {'PASS' if passed else 'FAIL'}")
    if args.json:
        out = {"started": started, "command": command, "machine": machine(), "args": vars(args), **bench.results}
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0 if all(passed for _, passed in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
