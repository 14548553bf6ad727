"""Connection status events: what the manager publishes on ``CONNECTION_TOPIC``."""

from __future__ import annotations

import enum

import attrs

__all__ = ["ConnectionEvent", "ConnectionStatus"]


class ConnectionStatus(str, enum.Enum):
    """Where the connection is, as the browser client reports it."""

    CONNECTING = "connecting"
    """An attempt is under way: token fetched, handshake in progress."""
    CONNECTED = "connected"
    """The handshake succeeded; messages flow."""
    DISCONNECTED = "disconnected"
    """No connection: lost, waiting to retry, or closed on purpose."""
    ERROR = "error"
    """Something failed; the manager either retries or has given up."""

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class ConnectionEvent:
    """One change of connection status, published on ``CONNECTION_TOPIC``.

    The browser client's events map one to one; durations are seconds.

    Attributes:
        status: The new status.
        code: The WebSocket close code of a lost connection (1006 when the
            connection vanished without a close frame), else ``None``.
        reason: The close reason the server gave, if any.
        retry_in: Seconds until the next attempt, on a "disconnected" event
            that announces a retry.
        retry_count: Which retry is coming (1 for the first), with ``retry_in``.
        message: A short human-readable explanation, on "error" events
            ("No auth token", "Max reconnection attempts reached", ...).
    """

    status: ConnectionStatus
    code: int | None = None
    reason: str | None = None
    retry_in: float | None = None
    retry_count: int | None = None
    message: str | None = None
