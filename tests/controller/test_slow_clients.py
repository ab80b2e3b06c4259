"""Half-sent requests do not hold a connection forever: raw sockets against the real server."""

from __future__ import annotations

import socket
import time

import pytest

from tests.controller.conftest import Controller

#: SKALDS_REQUEST_TIMEOUT of the controller under test, and how long a close may take beyond it.
TIMEOUT = 1.0
SLACK = 3.0


@pytest.fixture
def api(start_controller) -> Controller:
    return start_controller(SKALDS_REQUEST_TIMEOUT=str(TIMEOUT))


def _connect(api: Controller) -> socket.socket:
    host, port = api.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT + SLACK)
    return sock


def _closed_within(sock: socket.socket, bound: float) -> tuple[float, bytes]:
    """Read until the server closes the connection; how long it took and what it sent."""
    started = time.monotonic()
    received = b""
    try:
        while chunk := sock.recv(65536):  # blocks at most the socket's timeout per call
            received += chunk
    except TimeoutError:
        pytest.fail(f"the server kept a half-sent request open for over {bound} s (got {received[:200]!r})")
    finally:
        sock.close()
    return time.monotonic() - started, received


def _response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_a_connection_that_stops_mid_headers_is_closed(api):
    # When a client sends half a request line and headers, and then nothing
    sock = _connect(api)
    sock.sendall(b"GET /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
    # Then the server closes the connection within the request timeout
    took, _ = _closed_within(sock, TIMEOUT + SLACK)
    assert took < TIMEOUT + SLACK


def test_a_connection_that_sends_nothing_is_closed(api):
    took, received = _closed_within(_connect(api), TIMEOUT + SLACK)
    assert took < TIMEOUT + SLACK and received == b""


def test_half_headers_after_a_kept_alive_response_are_closed(api):
    # Given a connection that got a whole answer and is kept alive
    sock = _connect(api)
    sock.sendall(b"GET /api/system/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert _response(sock).startswith(b"HTTP/1.1 200")
    # When the next request stops mid-headers, trickling a byte now and then
    sock.sendall(b"GET /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    sock.sendall(b"X")
    # Then it is closed all the same
    took, _ = _closed_within(sock, TIMEOUT + SLACK)
    assert took < TIMEOUT + SLACK


def test_a_body_that_stalls_gets_408_and_a_close(api):
    # When a client announces a body and sends only part of it
    sock = _connect(api)
    sock.sendall(
        b"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"className":'
    )
    # Then it is answered 408 and the connection is closed
    took, received = _closed_within(sock, TIMEOUT + SLACK)
    assert took < TIMEOUT + SLACK
    assert received.startswith(b"HTTP/1.1 408") and b"request_timeout" in received, received[:300]
    # And nothing was created; whole requests work as before
    assert api.http.get("/api/tasks").json()["total"] == 0


def test_whole_requests_are_unaffected(api):
    sock = _connect(api)
    for _ in range(3):  # kept alive across requests slower than nothing, faster than the timeout
        sock.sendall(b"GET /api/system/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200")
    sock.close()
