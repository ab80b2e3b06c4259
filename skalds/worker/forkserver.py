"""A single-threaded fork server for worker processes: children are forked before any thread exists.

``Skalds.run()`` starts it first, before any client or thread exists, so every worker is a
``fork()`` of a clean, single-threaded process that already imported the user's code (classes
defined in ``__main__`` included). A start costs a fork (~2 ms), not an interpreter start.

The skald and the server talk over one ``SOCK_SEQPACKET`` socket pair: ``spawn`` requests one way;
``spawned`` (with a pidfd), ``error`` and, unasked, ``exit`` for every reaped child the other — see
:mod:`skalds.worker.protocol`, which describes every message.

No orphans: the server ends when its socket closes (the skald exited or was killed): it sends
SIGTERM to every child, waits up to the grace period, then SIGKILLs. Each child also has
``PR_SET_PDEATHSIG=SIGKILL`` in case the server itself is killed, and runs in its own process group
so a terminal's Ctrl-C reaches only the skald, which then stops its workers once.
"""

from __future__ import annotations

import ctypes
import gc
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from skalds.errors import ForkServerError
from skalds.worker import packets
from skalds.worker.protocol import (
    FROM_FORKSERVER,
    TO_FORKSERVER,
    Channel,
    M,
    Message,
    ProtocolError,
    Reaped,
    Spawn,
    Spawned,
    SpawnFailed,
    decode,
    encode,
)

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15

#: Runs in the forked child: (spec, channel socket) -> exit code. Never returns into the server.
ChildMain = Callable[[dict[str, Any], socket.socket], int]


def set_parent_death_signal(sig: int) -> None:
    """Have the kernel send ``sig`` to this process when the thread that started it ends (Linux)."""
    _prctl(PR_SET_PDEATHSIG, sig)


_LIBC: list[Any] = []


def _prctl(option: int, arg: int | bytes) -> None:
    try:
        if not _LIBC:  # loaded once (a reused worker names itself for every task)
            _LIBC.append(ctypes.CDLL(None, use_errno=True))
        _LIBC[0].prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: best effort
        pass


def set_process_name(name: str) -> None:
    """Set the kernel's short name of this process (``ps -o comm``), max 15 bytes."""
    _prctl(PR_SET_NAME, name.encode()[:15])


def _send(sock: socket.socket, message: Message, fds: list[int] | None = None) -> None:
    packets.send(sock, encode(message), fds or ())


def _recv(sock: socket.socket, channel: Channel[M]) -> tuple[M | None, list[int], bool]:
    """One message (None when malformed: ignored), the descriptors sent with it, and False when the
    peer closed its end."""
    data, fds = packets.recv(sock)
    if not data:
        _close(fds)
        return None, [], False
    try:
        return decode(data, channel), fds, True
    except ProtocolError:
        return None, fds, True


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


class ForkServer:
    """The skald's handle on its fork server process. Used from one thread."""

    def __init__(self, child_main: ChildMain, *, grace_period: float = 10.0) -> None:
        self._child_main = child_main
        self._grace = grace_period
        self._sock: socket.socket | None = None
        self.pid: int | None = None
        self._req = 0
        self._exits: deque[tuple[int, int]] = deque()

    # ---- skald side ----------------------------------------------------------------------
    def start(self) -> None:
        if self._sock is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the fork server
            code = 0
            try:
                ours.close()
                _Server(theirs, self._child_main, self._grace).serve()
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        self._sock = ours
        self.pid = pid

    @property
    def running(self) -> bool:
        return self._sock is not None

    @property
    def exits_waiting(self) -> bool:
        """Exits read while :meth:`spawn` waited for its answer and not yet returned by
        :meth:`read_exits`: the socket no longer shows them, so do not wait for it to be readable."""
        return bool(self._exits)

    def fileno(self) -> int:
        if self._sock is None:
            raise ForkServerError("the fork server is not running")
        return self._sock.fileno()

    def spawn(self, spec: dict[str, Any], channel: socket.socket, timeout: float = 10.0) -> tuple[int, int]:
        """Fork a worker; returns ``(pid, pidfd)``. The caller owns the pidfd."""
        if self._sock is None:
            raise ForkServerError("the fork server is not running")
        self._req += 1
        req = self._req
        try:
            _send(self._sock, Spawn(req, spec), [channel.fileno()])
        except OSError as exc:  # the server is gone, or no memory / descriptor for a large spec
            raise ForkServerError(f"could not send the spawn request to the fork server: {exc}") from exc
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ForkServerError(f"the fork server did not answer within {timeout:.0f} s")
            ready, _, _ = select.select([self._sock], [], [], remaining)
            if not ready:
                continue
            message, fds, open_ = _recv(self._sock, FROM_FORKSERVER)
            if not open_:
                raise ForkServerError("the fork server exited")
            match message:
                case Spawned(req=answered, pid=pid) if answered == req:
                    if not fds:
                        raise ForkServerError("the fork server sent no pidfd")
                    _close(fds[1:])
                    return pid, fds[0]
                case SpawnFailed(req=answered, error=error) if answered == req:
                    _close(fds)
                    raise ForkServerError(error)
                case Reaped(pid=pid, code=code):
                    self._exits.append((pid, code))
            _close(fds)

    def read_exits(self) -> list[tuple[int, int]]:
        """Reaped children ``(pid, code)`` reported since the last call (non-blocking)."""
        if self._sock is not None:
            while True:
                ready, _, _ = select.select([self._sock], [], [], 0)
                if not ready:
                    break
                message, fds, open_ = _recv(self._sock, FROM_FORKSERVER)
                _close(fds)
                if not open_:
                    self._sock.close()
                    self._sock = None
                    break
                if isinstance(message, Reaped):
                    self._exits.append((message.pid, message.code))
        out = list(self._exits)
        self._exits.clear()
        return out

    def stop(self, timeout: float = 5.0) -> None:
        """Close the server (it terminates any child left) and reap it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.pid is None:
            return
        deadline = time.monotonic() + timeout + self._grace
        while time.monotonic() < deadline:
            pid, _status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = None
                return
            time.sleep(0.005)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.pid = None


class _Server:  # pragma: no cover - runs in the fork server process
    def __init__(self, sock: socket.socket, child_main: ChildMain, grace: float) -> None:
        self.sock = sock
        self.child_main = child_main
        self.grace = grace
        self.children: set[int] = set()
        self.stopping = False

    def serve(self) -> None:
        set_process_name("skalds-forksrv")
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_term)
        self.wake_fds = (wake_r, wake_w)
        gc.freeze()  # children then never dirty the inherited heap through GC bookkeeping
        while not self.stopping:
            try:
                ready, _, _ = select.select([self.sock.fileno(), wake_r], [], [])
            except InterruptedError:
                continue
            if wake_r in ready:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
            self._reap()
            if self.sock.fileno() in ready and not self.stopping:
                try:
                    message, fds, open_ = _recv(self.sock, TO_FORKSERVER)
                except OSError:
                    break
                if not open_:
                    break
                self._handle(message, fds)
        self._shutdown()

    def _on_term(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _handle(self, message: Spawn | None, fds: list[int]) -> None:
        if message is None or not fds:
            _close(fds)
            return
        req = message.req
        channel = socket.socket(fileno=fds[0])
        _close(fds[1:])
        try:
            pid = os.fork()
        except OSError as exc:
            channel.close()
            _send(self.sock, SpawnFailed(req, f"fork failed: {exc}"))
            return
        if pid == 0:
            self._child(message.spec, channel)
        channel.close()
        self.children.add(pid)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            _send(self.sock, SpawnFailed(req, f"pidfd_open failed: {exc}"))
            return
        try:
            _send(self.sock, Spawned(req, pid), [pidfd])
        finally:
            os.close(pidfd)

    def _child(self, spec: dict[str, Any], channel: socket.socket) -> None:
        code = 1
        try:
            parent = os.getppid()
            os.setpgid(0, 0)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:
                os._exit(1)
            signal.set_wakeup_fd(-1)
            for fd in self.wake_fds:
                os.close(fd)
            self.sock.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = self.child_main(spec, channel)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            try:
                _send(self.sock, Reaped(pid, code))
            except OSError:
                pass

    def _shutdown(self) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.grace
        while self.children and time.monotonic() < deadline:
            self._reap()
            if self.children:
                time.sleep(0.01)
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while self.children:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self.children.discard(pid)
