"""The ``logger`` of Skalds (loguru), with secrets masked in every message.

Library code only logs. :func:`configure` (called by ``Skalds.run()`` and the CLI) sets the sinks:
console plus rotating files under ``LOG_PATH``; with ``split_by_worker`` every worker process writes
its own ``<task id>.log``.
"""

from __future__ import annotations

import functools
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger as _loguru_logger

if TYPE_CHECKING:
    from loguru import Message, Record

# The password runs to the last "@" before the host: passwords may hold "@" unencoded
# (``redis://:p@ss@host``), host names never do.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^/\s]+)@")
_KV_SECRET = re.compile(
    r"(?P<key>\b[\w.-]*(?:password|passwd|secret|token|api_key)[\w.-]*\b\s*[=:]\s*['\"]?)(?P<val>[^'\"\s,}]+)",
    re.IGNORECASE,
)
_extra_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask this exact value wherever it appears in a log message (passwords from config)."""
    if value and len(value) >= 3:
        _extra_secrets.add(value)
        _mask_cached.cache_clear()


def mask_secrets(text: str) -> str:
    """``text`` with URL passwords, ``password=...`` pairs and registered secrets replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _KV_SECRET.sub(lambda m: f"{m['key']}***", text)
    for secret in _extra_secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


@functools.lru_cache(maxsize=1024)
def _mask_cached(text: str) -> str:
    return mask_secrets(text)


def masked(text: str | None) -> str | None:
    """:func:`mask_secrets` for texts shown again and again (a task's exception on every pass of
    the API and the SSE poller): remembered, so a repeat costs a lookup. None stays None."""
    return None if text is None else _mask_cached(text)


def _patch(record: Record) -> None:
    record["message"] = mask_secrets(record["message"])


def _masked_exception(record: Record) -> str:
    """The record's traceback as text, secrets masked (an exception's message can quote a DSN)."""
    extra = record["extra"]
    if "_masked_exception" not in extra:
        exc = record["exception"]
        text = "" if exc is None else "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
        extra["_masked_exception"] = mask_secrets(text.rstrip("\n"))
    return str(extra["_masked_exception"])


def _with_masked_exception(template: str) -> Callable[[Record], str]:
    """A loguru format function: ``template``, then the masked traceback when there is one.
    (A format string would make loguru render the exception itself, unmasked.)"""
    with_exception = template + "\n{extra[_masked_exception]}\n"
    plain = template + "\n"

    def format_record(record: Record) -> str:
        if record["exception"] is None:
            return plain
        _masked_exception(record)
        return with_exception

    return format_record


logger = _loguru_logger.patch(_patch)

_CONSOLE_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
    "<cyan>{extra[proc]}</cyan> | {message}"
)
_FILE_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {process} | {extra[proc]} | {message}"
_state: dict[str, Any] = {"configured": False}


def configure(
    *,
    level: str = "INFO",
    log_path: str | None = None,
    rotation_mb: int = 10,
    retention: str | int | None = "7 days",
    split_by_worker: bool = False,
    proc_name: str = "skald",
) -> None:
    """(Re)configure the sinks of this process. Safe to call again in a forked worker."""
    _loguru_logger.remove()
    _loguru_logger.configure(extra={"proc": proc_name})
    _loguru_logger.add(
        sys.stderr, level=level.upper(), format=_with_masked_exception(_CONSOLE_FORMAT), backtrace=False, diagnose=False
    )
    if log_path:
        folder = Path(log_path)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{proc_name}.log" if split_by_worker or proc_name == "skald" else "skald.log"
        _loguru_logger.add(
            str(folder / _safe_filename(name)),
            level=level.upper(),
            format=_with_masked_exception(_FILE_FORMAT),
            rotation=rotation_mb * 1024 * 1024,
            retention=_retention(retention),
            backtrace=False,
            diagnose=False,
            enqueue=False,
        )
    # The capture handler (see capture_into): idle (filtered out before formatting) until a worker
    # process routes its log tail into it; added here, once, so forked workers inherit it.
    capture_handler = _loguru_logger.add(
        _capture_dispatch,
        level=level.upper(),
        format=_bare_format,
        filter=_capture_wanted,
        colorize=False,
        backtrace=False,
        diagnose=False,
    )
    _state.update(
        capture_handler=capture_handler,
        configured=True,
        level=level,
        log_path=log_path,
        rotation_mb=rotation_mb,
        retention=retention,
        split_by_worker=split_by_worker,
    )


def configure_worker(task_id: str) -> None:
    """Re-point the sinks of a forked worker process (its own file when split by worker)."""
    if not _state.get("configured") or not _state.get("split_by_worker"):
        # Same sinks as the skald (inherited through fork); only the process label changes.
        _loguru_logger.configure(extra={"proc": task_id})
        return
    configure(
        level=_state["level"],
        log_path=_state["log_path"],
        rotation_mb=_state["rotation_mb"],
        retention=_state["retention"],
        split_by_worker=_state["split_by_worker"],
        proc_name=task_id,
    )


def add_capture_sink(sink: Callable[[Message], None], level: str | None = None) -> int:
    """Also send every record of this process at ``level`` to ``sink`` (called with loguru's
    message; its ``.record`` holds the masked message). Returns the handler id.

    Adding a loguru handler costs milliseconds and a megabyte of dirtied memory (loguru builds an
    exception formatter each time), too much for every forked worker: see :func:`capture_into`."""
    handler_id: int = _loguru_logger.add(
        sink,
        level=(level or str(_state.get("level", "INFO"))).upper(),
        # A callable format: loguru then formats no traceback for this sink (the tail takes only
        # the exception's last line from the record).
        format=_bare_format,
        colorize=False,
        backtrace=False,
        diagnose=False,
    )
    return handler_id


def capture_into(sink: Callable[[Message], None] | None) -> bool:
    """Route this process's records at the configured level to ``sink`` (None: stop) through the
    capture handler :func:`configure` added — already there in a forked worker, so this costs
    nothing. False when there is no such handler (logging not configured, or reconfigured
    differently): then use :func:`add_capture_sink`."""
    if _state.get("capture_handler") is None:
        return False
    _capture[0] = sink
    return True


_capture: list[Callable[[Message], None] | None] = [None]


def _capture_dispatch(message: Message) -> None:
    sink = _capture[0]
    if sink is not None:
        sink(message)


def _capture_wanted(record: Record) -> bool:
    return _capture[0] is not None


def remove_sink(handler_id: int) -> None:
    try:
        _loguru_logger.remove(handler_id)
    except ValueError:
        pass


def _bare_format(record: Record) -> str:
    return "{message}"


def _retention(value: str | int | None) -> str | int | None:
    if isinstance(value, str) and value.strip().isdigit():
        return f"{int(value)} days"
    if isinstance(value, int):
        return f"{value} days"
    return value


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


_loguru_logger.configure(extra={"proc": "main"})

__all__ = [
    "add_capture_sink",
    "capture_into",
    "configure",
    "configure_worker",
    "logger",
    "mask_secrets",
    "masked",
    "register_secret",
    "remove_sink",
]
