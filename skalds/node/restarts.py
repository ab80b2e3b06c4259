"""Restarting a persistent task that ended by itself: a backoff shared by edge and single_process.

A persistent task (``isPersistent: true``) is meant to run for ever, like a Deployment's pod: when
its worker ends on its own — main returned, or it failed, or it died — it starts again after a
delay of 1 s, doubling up to 60 s while it keeps ending quickly, and back to 1 s once a run lasted a
minute. So a crash loop costs a restart a minute at most, and a worker that ran for a day comes
back at once.
"""

from __future__ import annotations

BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
#: A run at least this long (seconds) resets the delay to :data:`BACKOFF_START`.
HEALTHY_RUN = 60.0


class RestartBackoff:
    """The delays before successive restarts of one task."""

    def __init__(self) -> None:
        self._delay = BACKOFF_START

    def next(self, ran_for: float) -> float:
        """The delay before the restart that follows a run of ``ran_for`` seconds."""
        if ran_for >= HEALTHY_RUN:
            self._delay = BACKOFF_START
        delay = self._delay
        self._delay = min(self._delay * 2, BACKOFF_MAX)
        return delay


__all__ = ["BACKOFF_MAX", "BACKOFF_START", "HEALTHY_RUN", "RestartBackoff"]
