"""The heartbeat clock of one connection: when to ping, when a peer counts as gone.

Pure: the caller passes the current time and reports what arrived, and the
clock says what to do. Rules:

* A ping goes out every ``interval`` seconds while no ping is outstanding.
* A pong carrying the outstanding ping's payload answers it.
* A ping unanswered ``timeout`` seconds after it went out means the peer is
  gone, unless the connection is busy: if at least :data:`LIVELINESS_BYTES`
  arrived in that window, the peer is alive (its pong may be queued behind a
  large message on a slow link) and the window starts again. A frame that
  trickles in a few bytes at a time is still cut off.
"""

from __future__ import annotations

import enum
import math
from typing import Final

import attrs

__all__ = ["LIVELINESS_BYTES", "Heartbeat", "HeartbeatAction"]

LIVELINESS_BYTES: Final = 1024
"""Bytes that must arrive within each ``ping_timeout`` window for a connection
whose pong is late to count as alive (1 KiB)."""


class HeartbeatAction(enum.Enum):
    """What :meth:`Heartbeat.poll` asks the session to do."""

    NOTHING = "nothing"
    PING = "ping"
    TIMEOUT = "timeout"


@attrs.define
class Heartbeat:
    """Ping schedule and liveness check; ``interval=None`` disables both."""

    interval: float | None
    timeout: float
    _next_ping_at: float = math.inf
    _pong_due_at: float | None = None
    _window_bytes: int = 0
    _pings_sent: int = 0

    def start(self, now: float) -> None:
        """The connection opened at ``now``: schedule the first ping."""
        if self.interval is not None:
            self._next_ping_at = now + self.interval

    def deadline(self) -> float:
        """When :meth:`poll` next has something to do (``inf`` for never)."""
        if self._pong_due_at is None:
            return self._next_ping_at
        return min(self._next_ping_at, self._pong_due_at)

    def on_bytes(self, count: int) -> None:
        """Record ``count`` bytes received."""
        self._window_bytes += count

    def on_pong(self, payload: bytes) -> None:
        """Record a pong; the one for the outstanding ping clears it."""
        if payload == self.payload:
            self._pong_due_at = None

    @property
    def payload(self) -> bytes:
        """The payload of the latest ping sent."""
        return self._pings_sent.to_bytes(4, "big")

    def poll(self, now: float) -> HeartbeatAction:
        """Advance to ``now`` and say whether to ping or give up on the peer."""
        due = self._pong_due_at
        if due is not None and now >= due:
            if self._window_bytes < LIVELINESS_BYTES:
                return HeartbeatAction.TIMEOUT
            # Busy: data kept flowing, so the peer is alive; watch another window.
            self._pong_due_at = now + self.timeout
            self._window_bytes = 0
        if now < self._next_ping_at or self.interval is None:
            return HeartbeatAction.NOTHING
        self._next_ping_at = now + self.interval
        if self._pong_due_at is not None:
            return HeartbeatAction.NOTHING  # one ping outstanding at a time
        self._pings_sent = (self._pings_sent + 1) % 2**32
        self._pong_due_at = now + self.timeout
        self._window_bytes = 0
        return HeartbeatAction.PING
