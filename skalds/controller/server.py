"""The controller's HTTP protocol: uvicorn's h11 protocol with a deadline for request headers.

Why: uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but a connection
that has sent part of a request's headers — on a fresh connection, or after a response — has no
deadline at all, so a few hundred clients that trickle or stop mid-header hold their sockets (and
file descriptors) forever. :func:`protocol_with_header_timeout` gives every request
``SKALDS_REQUEST_TIMEOUT`` seconds from its first byte (or from the connection's opening) to
complete its headers; a slow body is bounded by :class:`~skalds.controller.limits.BodySizeLimit`.
And h11 refuses (400) a request head still incomplete after ``h11_max_incomplete_event_size``
bytes (16 KiB), so such a client cannot make the server buffer more meanwhile.

It also holds the filters of uvicorn's own loggers (:func:`install_log_filters`): no query string
in the access log, secrets masked in every line.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from skalds.utils.logging import mask_secrets

#: Bytes of an incomplete request head h11 buffers before it answers 400.
MAX_HEADER_BYTES = 16 * 1024


class HeaderTimeoutH11Protocol(H11Protocol):
    """:class:`H11Protocol` that closes a connection whose request headers do not arrive in time."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that says nothing is a request that never completes its headers

    def data_received(self, data: bytes) -> None:
        if self._header_deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of the next request on a kept-alive connection
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before:  # h11 produced a request: its headers are complete
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _expire(self) -> None:
        self._header_deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: not this timer's business
        if not self.transport.is_closing():
            self.logger.debug("closing a connection whose request headers did not arrive in time")
            self.transport.close()


def protocol_with_header_timeout(seconds: float) -> type[H11Protocol]:
    """The protocol class to pass to uvicorn as ``http=``."""
    return type("HeaderTimeoutH11Protocol", (HeaderTimeoutH11Protocol,), {"header_timeout": seconds})


class _AccessLogWithoutQuery(logging.Filter):
    """uvicorn's access log without query strings: a token or other secret may travel in one
    (``?token=``), and a URL's path is enough to read the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
        return True


class _MaskedLog(logging.Filter):
    """uvicorn's own log lines (and their tracebacks) with secrets masked, like every Skalds line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_secrets(record.getMessage()), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_secrets(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_filters() -> None:
    """Attach the filters above to uvicorn's loggers (before ``uvicorn.run``; its logging setup
    keeps logger filters)."""
    access, error = logging.getLogger("uvicorn.access"), logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _AccessLogWithoutQuery) for f in access.filters):
        access.addFilter(_AccessLogWithoutQuery())
        access.addFilter(_MaskedLog())
    if not any(isinstance(f, _MaskedLog) for f in error.filters):
        error.addFilter(_MaskedLog())
