"""The exception tree: one base class, one subclass per failure a user tells apart."""

from __future__ import annotations

__all__ = [
    "ConnectionGaveUp",
    "ProtocolError",
    "ProxyError",
    "SubscriberLagged",
    "TrioWsBusError",
]


class TrioWsBusError(Exception):
    """Base class of every exception trio_ws_bus raises on purpose."""


class ProtocolError(TrioWsBusError, ValueError):
    """A frame is not a valid message of the protocol.

    The message is a short reason ("missing field 'type'"), never the payload:
    payloads can be large, hostile, or carry data that must not reach a log.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        """Why the frame was rejected, in a few words."""


class SubscriberLagged(TrioWsBusError):
    """A subscription with ``Overflow.ERROR`` fell behind and lost messages.

    Raised once by the next ``receive()`` after the loss; delivery then goes on
    with the messages that did fit in the buffer.
    """

    def __init__(self, missed: int) -> None:
        super().__init__(f"subscriber lagged behind and missed {missed} message(s)")
        self.missed = missed
        """How many messages were lost since the subscriber last heard of a loss."""


class ConnectionGaveUp(TrioWsBusError):
    """The manager stopped trying to connect and waits for ``connect()``.

    Raised by ``WebSocketManager.wait_connected()``. The reason is one of: the
    retry budget is used up, the token provider returned no token, or the
    reconnect policy classified a failure as fatal.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        """Why the manager gave up, as published on the connection topic."""


class ProxyError(TrioWsBusError, OSError):
    """The proxy failed the attempt: down, refused, wants credentials, no route.

    The message names the proxy's host and port, never its credentials.
    """

    def __init__(self, message: str, *, proxy: str) -> None:
        super().__init__(message)
        self.proxy = proxy
        """The proxy as ``host:port`` (credentials are never kept here)."""
