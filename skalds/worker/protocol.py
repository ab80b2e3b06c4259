"""The messages between a skald, its fork server and its workers: every kind, its fields, who sends it.

Both sockets are unix ``SOCK_SEQPACKET`` pairs; each datagram holds one message, a JSON object whose
``t`` names its :class:`Kind` (a message over 64 KB travels in a memfd, see
:mod:`skalds.worker.packets`, which also reserves the kind ``big`` for that). Here every message is a
small frozen dataclass; :func:`encode` turns one into the bytes to send and :func:`decode` turns
received bytes back into one, for the :class:`Channel` it came on. A message that is not JSON, not an
object, of a kind the channel does not carry or with a field of the wrong type raises
:class:`ProtocolError`; every receiver ignores such a message.

**Skald → fork server** (:data:`TO_FORKSERVER`)

- :class:`Spawn` ``spawn`` (``req``: the request's number, ``spec``: the task spec the child builds its
  worker from) — to start a worker; the worker's end of its channel is attached (``SCM_RIGHTS``).

**Fork server → skald** (:data:`FROM_FORKSERVER`)

- :class:`Spawned` ``spawned`` (``req``, ``pid``) — the child runs; its pidfd is attached, so the
  skald signals the right process even after pid reuse.
- :class:`SpawnFailed` ``error`` (``req``, ``error``: why) — fork or pidfd_open failed.
- :class:`Reaped` ``exit`` (``pid``, ``code``: exit code, negative = killed by signal ``-code``) — a
  child was reaped; sent whenever one is, unasked.

**Skald → worker** (:data:`TO_WORKER`)

- :class:`Ack` ``ack`` — one per heartbeat, when the skald fences (node mode): "your skald is alive".
- :class:`Update` ``update`` (``attachments``) — a hot update for the task, merged by the worker.
- :class:`Run` ``run`` (``spec``) — the next task for an idle reusable process.
- :class:`Retire` ``exit`` — an idle reusable process is no longer wanted (closing the channel does
  the same).

**Worker → skald** (:data:`FROM_WORKER`)

- :class:`Running` ``running`` — ``_run_main`` began.
- :class:`Heartbeat` ``hb`` (``v``: 0–199, counting) — every heartbeat interval, from the link thread.
- :class:`UpdateOk` ``update_ok`` (``attachments``: the worker's whole new values) — an update was
  applied. :class:`UpdateError` ``update_error`` (``error``) — it was rejected. Answers come in the
  order the updates were sent; the supervisor matches them and sets ``origin`` (and, on a
  rejection, ``rejected``: the update's attachments), neither on the wire.
- :class:`WorkerException` ``exception`` (``text``: the traceback) — the task raised.
- :class:`Final` ``final`` (``status``: an :class:`Outcome`, ``exception``: text or null, ``result``:
  what main returned, as JSON, or null) — the task's end, sent once before release.
- :class:`Fenced` ``fenced`` (``after``: seconds without an ack) — the worker stops itself.
- :class:`Logs` ``logs`` (``lines``: ``[n, timestamp ms, level, message]`` each) — recent log lines,
  after a heartbeat and on exit (:mod:`skalds.worker.logtail`).
- :class:`Done` ``done`` (``code``: exit code, ``idle``: seconds it may wait, ``tasks``: how many it ran)
  — a reusable process finished its task and waits for :class:`Run` or :class:`Retire`.

Why a worker stopped is a :class:`StopReason`, decided by the skald; how its task ended is the
:class:`Outcome` it reports. Both are ``StrEnum``, equal to the strings they stand for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar, Generic, Self, TypeVar

from skalds.errors import SkaldsError


class ProtocolError(SkaldsError):
    """A message that is not one this channel carries (malformed, or of an unknown kind)."""


class Kind(StrEnum):
    """The ``t`` of a message. ``exit`` names two messages, on different channels."""

    SPAWN = "spawn"
    SPAWNED = "spawned"
    ERROR = "error"
    EXIT = "exit"
    ACK = "ack"
    UPDATE = "update"
    RUN = "run"
    RUNNING = "running"
    HB = "hb"
    UPDATE_OK = "update_ok"
    UPDATE_ERROR = "update_error"
    EXCEPTION = "exception"
    FINAL = "final"
    FENCED = "fenced"
    LOGS = "logs"
    DONE = "done"


class StopReason(StrEnum):
    """Why the skald stopped a worker; decides what its exit means for the task."""

    #: The skald stops: the task stays assigned to it and starts again with it.
    SHUTDOWN = "shutdown"
    #: The task is no longer this skald's (moved, epoch changed) — or the worker fenced itself.
    FENCED = "fenced"
    #: Edge: the entry changed in the task file; it starts again with the new values.
    RESTART = "restart"
    PAUSE = "pause"
    CANCEL = "cancel"
    #: Edge: the entry left the task file.
    REMOVED = "removed"
    #: The task ran past its max run time: it ends Failed.
    TIMEOUT = "timeout"


class Outcome(StrEnum):
    """How a task ended, as its worker reports it (the task's lifecycle status of the same name)."""

    FINISHED = "Finished"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


Reader = Callable[[Mapping[str, Any], str], Any]


class Message:
    """Base of every message: its kind, and how its fields are read from the wire."""

    __slots__ = ()
    kind: ClassVar[Kind]
    #: Fields sent on the wire (all but those marked local), set below for each class.
    wire_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Self:
        """The message with the fields of ``raw``, each read by the reader its class gives it."""
        return cls(*[read(raw, name) for name, read in cls.readers])

    #: ``(field, reader)`` of each wire field, set below for each class.
    readers: ClassVar[tuple[tuple[str, Reader], ...]] = ()
    #: ``kind`` as a plain ``str``, and the JSON encoder of the channel it is sent on (set below).
    tag: ClassVar[str] = ""
    encoder: ClassVar[json.JSONEncoder]


# ---- field readers: how tolerant each receiver is, in one place ----------------------------------
def _as_sent(raw: Mapping[str, Any], key: str) -> Any:
    return raw.get(key)


def _int(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ProtocolError(f"{raw.get('t')}: {key} is not an integer: {value!r}") from None


def _int_or_0(raw: Mapping[str, Any], key: str) -> int:
    return _int(raw, key) if key in raw else 0


def _spec(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    spec = raw.get(key)
    if not isinstance(spec, dict):
        raise ProtocolError(f"{raw.get('t')}: {key} is not an object")
    return spec


def _spec_or_empty(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    return _spec(raw, key) if raw.get(key) else {}


def _text(raw: Mapping[str, Any], key: str) -> str:
    return str(raw.get(key))


def _json_or_none(raw: Mapping[str, Any], key: str) -> Any:
    return raw.get(key)


def _text_or_none(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return None if value is None else str(value)


def _outcome(raw: Mapping[str, Any], key: str) -> Outcome:
    try:
        return Outcome(raw.get(key, ""))
    except ValueError:
        raise ProtocolError(f"{raw.get('t')}: unknown {key} {raw.get(key)!r}") from None


def _seconds(raw: Mapping[str, Any], key: str) -> float:
    """A positive number of seconds; anything else is 0."""
    value = raw.get(key)
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0


def _exit_code(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key)
    return value if isinstance(value, int) else 0


def _task_count(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key)
    return value if isinstance(value, int) else 1


def _log_lines(raw: Mapping[str, Any], key: str) -> list[list[Any]]:
    """The well-formed ``[n, timestamp ms, level, message]`` lines (the others are dropped)."""
    lines = raw.get(key)
    if not isinstance(lines, list):
        return []
    return [
        line
        for line in lines
        if isinstance(line, list) and len(line) == 4 and isinstance(line[0], int) and isinstance(line[1], int)
    ]


# ---- fork server channel -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Spawn(Message):
    kind: ClassVar[Kind] = Kind.SPAWN
    req: int = field(metadata={"read": _int})
    spec: dict[str, Any] = field(metadata={"read": _spec_or_empty})


@dataclass(frozen=True, slots=True)
class Spawned(Message):
    kind: ClassVar[Kind] = Kind.SPAWNED
    req: int = field(metadata={"read": _int})
    pid: int = field(metadata={"read": _int})


@dataclass(frozen=True, slots=True)
class SpawnFailed(Message):
    kind: ClassVar[Kind] = Kind.ERROR
    req: int = field(metadata={"read": _int})
    error: str = field(metadata={"read": _text})


@dataclass(frozen=True, slots=True)
class Reaped(Message):
    kind: ClassVar[Kind] = Kind.EXIT
    pid: int = field(metadata={"read": _int})
    code: int = field(metadata={"read": _int})


# ---- skald → worker ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ack(Message):
    kind: ClassVar[Kind] = Kind.ACK


@dataclass(frozen=True, slots=True)
class Update(Message):
    kind: ClassVar[Kind] = Kind.UPDATE
    attachments: Any


@dataclass(frozen=True, slots=True)
class Run(Message):
    kind: ClassVar[Kind] = Kind.RUN
    spec: dict[str, Any] = field(metadata={"read": _spec})


@dataclass(frozen=True, slots=True)
class Retire(Message):
    kind: ClassVar[Kind] = Kind.EXIT


# ---- worker → skald ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Running(Message):
    kind: ClassVar[Kind] = Kind.RUNNING


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    kind: ClassVar[Kind] = Kind.HB
    v: int = field(metadata={"read": _int_or_0})


#: Where an update came from (``store``, ``direct``, ``yaml``; ``worker`` when unknown): set by the
#: supervisor, never sent.
_ORIGIN: Any = field(default="worker", metadata={"local": True})


@dataclass(frozen=True, slots=True)
class UpdateOk(Message):
    kind: ClassVar[Kind] = Kind.UPDATE_OK
    attachments: Any
    origin: str = _ORIGIN


@dataclass(frozen=True, slots=True)
class UpdateError(Message):
    kind: ClassVar[Kind] = Kind.UPDATE_ERROR
    error: str = field(metadata={"read": _text})
    origin: str = _ORIGIN
    #: The attachments of the update it rejected, as the skald sent them: set by the supervisor,
    #: never sent.
    rejected: Any = field(default=None, metadata={"local": True})


@dataclass(frozen=True, slots=True)
class WorkerException(Message):
    kind: ClassVar[Kind] = Kind.EXCEPTION
    text: str = field(metadata={"read": _text})


@dataclass(frozen=True, slots=True)
class Final(Message):
    kind: ClassVar[Kind] = Kind.FINAL
    status: Outcome = field(metadata={"read": _outcome})
    exception: str | None = field(default=None, metadata={"read": _text_or_none})
    #: What main returned, as JSON (None when it returned nothing, or nothing storable).
    result: Any = field(default=None, metadata={"read": _json_or_none})


@dataclass(frozen=True, slots=True)
class Fenced(Message):
    kind: ClassVar[Kind] = Kind.FENCED
    after: float = field(metadata={"read": _seconds})


@dataclass(frozen=True, slots=True)
class Logs(Message):
    kind: ClassVar[Kind] = Kind.LOGS
    lines: list[list[Any]] = field(metadata={"read": _log_lines})


@dataclass(frozen=True, slots=True)
class Done(Message):
    kind: ClassVar[Kind] = Kind.DONE
    code: int = field(metadata={"read": _exit_code})
    #: Seconds the process may wait for its next task (0: retire it now).
    idle: float = field(metadata={"read": _seconds})
    tasks: int = field(default=1, metadata={"read": _task_count})


_LOGS_HEAD = b'{"t":"logs","lines":['
_LOGS_TAIL = b"]}"
#: Bytes a ``logs`` message adds to its lines.
LOGS_OVERHEAD = len(_LOGS_HEAD) + len(_LOGS_TAIL)


def encode_logs(lines: list[bytes]) -> bytes:
    """A :class:`Logs` message of lines already encoded one by one (the log tail sizes its batches
    by their encoded length, so it encodes each line once, here not again)."""
    return _LOGS_HEAD + b",".join(lines) + _LOGS_TAIL


ToForkServer = Spawn
FromForkServer = Spawned | SpawnFailed | Reaped
ToWorker = Ack | Update | Run | Retire
FromWorker = Running | Heartbeat | UpdateOk | UpdateError | WorkerException | Final | Fenced | Logs | Done

M = TypeVar("M", bound=Message)


class Channel(Generic[M]):
    """One direction of one socket: the kinds it carries and the message class of each."""

    def __init__(self, name: str, *classes: type[M]) -> None:
        self.name = name
        self.classes = classes
        self.readers: dict[str, Callable[[Mapping[str, Any]], M]] = {cls.kind.value: cls.from_wire for cls in classes}


TO_FORKSERVER: Channel[ToForkServer] = Channel("skald → fork server", Spawn)
FROM_FORKSERVER: Channel[FromForkServer] = Channel("fork server → skald", Spawned, SpawnFailed, Reaped)
TO_WORKER: Channel[ToWorker] = Channel("skald → worker", Ack, Update, Run, Retire)
FROM_WORKER: Channel[FromWorker] = Channel(
    "worker → skald", Running, Heartbeat, UpdateOk, UpdateError, WorkerException, Final, Fenced, Logs, Done
)

#: Compact, and made once (``json.dumps`` with options builds an encoder per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_WORKER_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)

_CHANNELS: tuple[Channel[Any], ...] = (TO_FORKSERVER, FROM_FORKSERVER, TO_WORKER, FROM_WORKER)
for _cls in {cls for channel in _CHANNELS for cls in channel.classes}:
    _wire = [f for f in fields(_cls) if not f.metadata.get("local")]
    _cls.wire_fields = tuple(f.name for f in _wire)
    _cls.readers = tuple((f.name, f.metadata.get("read", _as_sent)) for f in _wire)
    _cls.tag = _cls.kind.value  # a plain str: encode() then never goes through the enum
    _cls.encoder = _WORKER_ENCODER if _cls in FROM_WORKER.classes else _ENCODER


def encode(message: Message) -> bytes:
    """The datagram for ``message``. What a worker sends may hold values JSON does not know (an
    exception's text, a user's attachments): they are sent as their ``str``."""
    body: dict[str, Any] = {"t": message.tag}
    for name in message.wire_fields:
        body[name] = getattr(message, name)
    return message.encoder.encode(body).encode()


# ---- the periodic pair, in fixed wire form ---------------------------------------------------------
# A worker is forked from the fork server: every shared object it touches (a class, an enum member, a
# function) copies the memory page holding it into the worker for good. Heartbeats and acks go both
# ways every interval for as long as a task runs, so the link thread sends and recognises them as
# bytes; they are exactly what encode(Heartbeat(v)) and encode(Ack()) give (a unit test checks).

#: ``encode(Ack())``.
ACK_BYTES = b'{"t":"ack"}'


def heartbeat_bytes(v: int) -> bytes:
    """``encode(Heartbeat(v))``."""
    return b'{"t":"hb","v":%d}' % v


def decode(data: bytes | dict[str, Any], channel: Channel[M]) -> M:
    """The message in ``data`` (a datagram, or its JSON object) received on ``channel``; raises
    :class:`ProtocolError` for anything else."""
    if isinstance(data, bytes):
        try:
            data = json.loads(data)
        except ValueError:
            raise ProtocolError(f"{channel.name}: not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{channel.name}: not a JSON object")
    reader = channel.readers.get(data.get("t"))  # type: ignore[arg-type]
    if reader is None:
        raise ProtocolError(f"{channel.name}: unknown message kind {data.get('t')!r}")
    return reader(data)


__all__ = [
    "ACK_BYTES",
    "FROM_FORKSERVER",
    "FROM_WORKER",
    "LOGS_OVERHEAD",
    "TO_FORKSERVER",
    "TO_WORKER",
    "Ack",
    "Channel",
    "Done",
    "Fenced",
    "Final",
    "FromForkServer",
    "FromWorker",
    "Heartbeat",
    "Kind",
    "Logs",
    "Message",
    "Outcome",
    "ProtocolError",
    "Reaped",
    "Retire",
    "Run",
    "Running",
    "Spawn",
    "SpawnFailed",
    "Spawned",
    "StopReason",
    "ToForkServer",
    "ToWorker",
    "Update",
    "UpdateError",
    "UpdateOk",
    "WorkerException",
    "decode",
    "encode",
    "encode_logs",
    "heartbeat_bytes",
]
