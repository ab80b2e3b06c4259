"""The channel message transport: any size in one message, descriptors kept in order."""

from __future__ import annotations

import os
import socket

import pytest

from skalds.worker import packets


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("size", [10, packets.INLINE_MAX, packets.INLINE_MAX + 1, 3 << 20])
def test_a_message_of_any_size_arrives_whole_with_its_descriptors(pair, size):
    a, b = pair
    data = os.urandom(size)
    r, w = os.pipe()
    try:
        packets.send(a, data, [w])
        got, fds = packets.recv(b)
        assert got == data and len(fds) == 1
        os.write(fds[0], b"x")  # the descriptor sent, not the body file
        assert os.read(r, 1) == b"x"
        os.close(fds[0])
    finally:
        os.close(r)
        os.close(w)


def test_a_small_socket_buffer_sends_through_a_body_file(pair):
    # Given a sender whose buffer is smaller than a message that would go inline
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = os.urandom(packets.INLINE_MAX // 2)
    with pytest.raises(OSError):
        a.send(data)  # one datagram cannot hold it
    # Then it still arrives whole
    packets.send(a, data)
    assert packets.recv(b) == (data, [])


def test_the_peer_closing_reads_as_empty(pair):
    a, b = pair
    a.close()
    assert packets.recv(b) == (b"", [])
