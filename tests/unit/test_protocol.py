"""The process protocol: every message survives its trip, anything else is one ProtocolError."""

from __future__ import annotations

import json

import pytest

from skalds.model.task import TaskLifecycleStatus
from skalds.worker import protocol as p

#: One of each message, with the channel that carries it.
EXAMPLES: list[tuple[p.Message, p.Channel]] = [
    (p.Spawn(7, {"task_id": "a", "class_name": "W", "attachments": {"x": [1, 2]}}), p.TO_FORKSERVER),
    (p.Spawned(7, 4242), p.FROM_FORKSERVER),
    (p.SpawnFailed(7, "fork failed: no memory"), p.FROM_FORKSERVER),
    (p.Reaped(4242, -9), p.FROM_FORKSERVER),
    (p.Ack(), p.TO_WORKER),
    (p.Update({"fixFrame": 3}), p.TO_WORKER),
    (p.Run({"task_id": "b", "class_name": "W"}), p.TO_WORKER),
    (p.Retire(), p.TO_WORKER),
    (p.Running(), p.FROM_WORKER),
    (p.Heartbeat(199), p.FROM_WORKER),
    (p.UpdateOk({"fixFrame": 4}), p.FROM_WORKER),
    (p.UpdateError("update rejected"), p.FROM_WORKER),
    (p.WorkerException("Traceback …\nValueError: boom"), p.FROM_WORKER),
    (p.Final(p.Outcome.FAILED, "ValueError: boom"), p.FROM_WORKER),
    (p.Final(p.Outcome.FINISHED), p.FROM_WORKER),
    (p.Fenced(2.5), p.FROM_WORKER),
    (p.Logs([[1, 1700000000000, "INFO", "hello"]]), p.FROM_WORKER),
    (p.Done(0, 10.0, 3), p.FROM_WORKER),
]


def test_every_kind_has_an_example() -> None:
    kinds = {message.kind for message, _ in EXAMPLES}
    assert kinds == set(p.Kind)


@pytest.mark.parametrize(("message", "channel"), EXAMPLES, ids=lambda v: type(v).__name__)
def test_a_message_decodes_to_what_was_encoded(message: p.Message, channel: p.Channel) -> None:
    data = p.encode(message)
    assert json.loads(data)["t"] == message.kind.value
    assert p.decode(data, channel) == message
    assert p.decode(json.loads(data), channel) == message  # the parsed object too


def test_the_origin_of_an_update_answer_stays_with_the_skald() -> None:
    answer = p.UpdateOk({"a": 1}, origin="store")
    assert "origin" not in json.loads(p.encode(answer))
    assert p.decode(p.encode(answer), p.FROM_WORKER) == p.UpdateOk({"a": 1}, origin="worker")


def test_log_batches_are_logs_messages() -> None:
    data = p.encode_logs([b'[1,2,"INFO","a"]', b'[2,3,"INFO","b"]'])
    assert p.decode(data, p.FROM_WORKER) == p.Logs([[1, 2, "INFO", "a"], [2, 3, "INFO", "b"]])


@pytest.mark.parametrize(
    ("data", "channel"),
    [
        (b"not json", p.FROM_WORKER),
        (b"[1, 2]", p.FROM_WORKER),
        (b'{"v": 3}', p.FROM_WORKER),  # no kind
        (b'{"t": "nonsense"}', p.FROM_WORKER),
        (b'{"t": "spawn", "req": 1, "spec": {}}', p.FROM_WORKER),  # a kind of another channel
        (b'{"t": "hb", "v": "often"}', p.FROM_WORKER),
        (b'{"t": "final", "status": "Running"}', p.FROM_WORKER),
        (b'{"t": "run", "spec": "x"}', p.TO_WORKER),
        (b'{"t": "spawned", "req": 1}', p.FROM_FORKSERVER),
        (b'{"t": "spawn", "spec": {}}', p.TO_FORKSERVER),
    ],
)
def test_anything_else_is_a_protocol_error(data: bytes, channel: p.Channel) -> None:
    with pytest.raises(p.ProtocolError):
        p.decode(data, channel)


def test_exit_means_a_reaped_child_from_the_fork_server_and_retirement_to_a_worker() -> None:
    assert p.decode(b'{"t": "exit", "pid": 5, "code": 0}', p.FROM_FORKSERVER) == p.Reaped(5, 0)
    assert p.decode(b'{"t": "exit"}', p.TO_WORKER) == p.Retire()


def test_enums_equal_the_strings_they_stand_for() -> None:
    assert p.StopReason.PAUSE == "pause" and p.StopReason("removed") is p.StopReason.REMOVED
    assert {str(r) for r in p.StopReason} == {"shutdown", "fenced", "restart", "pause", "cancel", "removed", "timeout"}
    for outcome in p.Outcome:
        assert TaskLifecycleStatus(outcome) == outcome


def test_the_periodic_pair_in_fixed_wire_form_is_what_encode_gives() -> None:
    # The link thread sends heartbeats and recognises acks as bytes (an idle worker then touches no
    # shared message class); they must stay exactly the protocol's encoding of those messages.
    assert p.encode(p.Ack()) == p.ACK_BYTES
    assert p.decode(p.ACK_BYTES, p.TO_WORKER) == p.Ack()
    for v in range(200):
        assert p.heartbeat_bytes(v) == p.encode(p.Heartbeat(v))
        assert p.decode(p.heartbeat_bytes(v), p.FROM_WORKER) == p.Heartbeat(v)


def test_every_message_class_carries_its_kind_as_a_plain_string() -> None:
    for message, channel in EXAMPLES:
        assert type(message.tag) is str and message.tag == message.kind
        assert json.loads(p.encode(message))["t"] == message.kind.value
        # what a worker sends may hold values JSON does not know: sent as their str
        assert (message.encoder.default is str) == (channel is p.FROM_WORKER)
