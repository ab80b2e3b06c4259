"""The worker side of the skald channel: heartbeats never block, silence fences a node worker."""

from __future__ import annotations

import socket
import time

from tests.support.procs import wait_for


class _Worker:
    """Just enough of a worker for the link thread (it only forwards updates to it)."""

    def handle_update_message(self, message: object) -> bool:
        return True


def test_heartbeats_to_a_silent_skald_never_block_and_fencing_still_fires():
    import signal

    from skalds.worker.link import ChannelLink

    # Given a link whose skald end is never read (a frozen skald) and fast heartbeats
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    kills: list[int] = []
    link = ChannelLink(theirs, heartbeat_interval=0.005, fence_after=2.0, signal_self=kills.append)

    # When the link runs for longer than the channel can buffer heartbeats (~400 beats, room for ~280)
    started = time.monotonic()
    link.start(_Worker())  # type: ignore[arg-type]

    # Then the thread is not stuck in send: it fences (SIGTERM) after ~2 s, then SIGKILLs
    wait_for(lambda: signal.SIGTERM in kills, timeout=6, what="SIGTERM to itself")
    assert 1.9 <= time.monotonic() - started < 4.0
    wait_for(lambda: signal.SIGKILL in kills, timeout=3, what="SIGKILL to itself")
    assert kills == [signal.SIGTERM, signal.SIGKILL]
    link.stop()
    ours.close()
    theirs.close()
