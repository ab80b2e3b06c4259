"""One message per datagram on the ``SOCK_SEQPACKET`` sockets of the skald, its fork server and its
workers — whatever the message's size.

A unix datagram cannot be larger than the sender's socket buffer (``net.core.wmem_default``,
≈ 208 KB on most Linux systems; a bigger send fails with ``EMSGSIZE``), and task specs, ``run``
messages and updates carry attachments of any size (1 MiB through the controller by default, more
through :class:`~skalds.client.SkaldsClient` or a task file). So a message longer than
:data:`INLINE_MAX` — or one the kernel refuses as too long — is written to an anonymous in-memory
file (``memfd``), and the datagram carries only ``{"t": "big", "n": <bytes>}`` with that file
attached (``SCM_RIGHTS``, after any other descriptor of the message); :func:`recv` reads it back and
returns the message itself. Everything small (heartbeats, acks, log batches, most specs) still goes
in one datagram, as fast as before.
"""

from __future__ import annotations

import array
import errno
import os
import socket
import tempfile
from collections.abc import Sequence

#: Messages up to this many bytes go in the datagram itself; larger ones through a memfd.
INLINE_MAX = 64 * 1024
#: Descriptors one message may carry (the spawn request: the worker's channel plus a body).
MAX_FDS = 4
_BIG = b'{"t": "big", "n": '
_FD_SIZE = array.array("i").itemsize


def send(sock: socket.socket, data: bytes, fds: Sequence[int] = (), flags: int = 0) -> None:
    """Send one encoded message (and ``fds``); raises what ``sendmsg`` raises (``BlockingIOError``
    when a non-blocking socket has no room: nothing was sent, try again later)."""
    if len(data) <= INLINE_MAX:
        try:
            _sendmsg(sock, data, fds, flags)
            return
        except OSError as exc:
            if exc.errno != errno.EMSGSIZE:  # a socket buffer smaller than INLINE_MAX: use a body file
                raise
    body = _anonymous_file()
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(body, view) :]
        _sendmsg(sock, _BIG + b"%d}" % len(data), [*fds, body], flags)
    finally:
        os.close(body)  # the datagram in flight holds its own reference


def recv(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One message and the descriptors sent with it (the caller owns them); ``b""`` when the peer
    closed its end. Raises what ``recvmsg`` raises."""
    data, ancdata, _flags, _addr = sock.recvmsg(INLINE_MAX, socket.CMSG_SPACE(MAX_FDS * _FD_SIZE))
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % _FD_SIZE)])
    received = list(fds)
    if data.startswith(_BIG) and received:
        body = _read_body(received.pop(), data)
        if body is not None:
            return body, received
    return data, received


def _sendmsg(sock: socket.socket, data: bytes, fds: Sequence[int], flags: int) -> None:
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))], flags)
    else:
        sock.send(data, flags)


def _anonymous_file() -> int:
    try:
        return os.memfd_create("skalds-message", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # no memfd (old kernel, sandbox): an unlinked temporary file
        fd, name = tempfile.mkstemp(prefix="skalds-message-")
        os.unlink(name)
        return fd


def _read_body(fd: int, header: bytes) -> bytes | None:
    """The message in a body file, or None when it is not what the header announced (the header is
    then returned as the message: a ``big`` message that every reader ignores)."""
    try:
        size = int(header[len(_BIG) : -1])
        chunks: list[bytes] = []
        offset = 0
        while offset < size:
            chunk = os.pread(fd, size - offset, offset)
            if not chunk:
                return None
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
