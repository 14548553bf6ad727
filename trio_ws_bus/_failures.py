"""What went wrong: one failed attempt or lost connection, as a value.

:class:`FailureKind` names how an attempt or a connection ended and
:class:`ConnectionFailure` carries it with its codes and a token-free reason.
The transport, the session and the pump build them; the retry budget
(``_retry.py``) reads them. Pure values: no Trio, no clock, no socket.
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["ConnectionFailure", "FailureKind"]


class FailureKind(str, enum.Enum):
    """How an attempt or a connection ended, for the retry policy."""

    TOKEN_ERROR = "token_error"
    """The token provider raised, hung past ``open_timeout`` or returned a non-str."""
    UNREACHABLE = "unreachable"
    """No connection: refused, DNS failure, closed during the opening handshake."""
    TLS_ERROR = "tls_error"
    """The TLS handshake failed: an untrusted certificate, a name mismatch, ..."""
    TIMEOUT = "timeout"
    """The opening handshake did not finish within ``open_timeout``."""
    REJECTED = "rejected"
    """The server answered the handshake with an HTTP status (401, 503, 301, ...)."""
    PROTOCOL_ERROR = "protocol_error"
    """The server's answer to the handshake was not a valid HTTP upgrade answer."""
    INVALID_TOKEN = "invalid_token"
    """The token cannot be sent: it is not valid text (a lone surrogate, ...)."""
    PROXY_ERROR = "proxy_error"
    """The proxy is down, refused the tunnel, wants credentials or cannot
    reach the target."""
    CLOSED = "closed"
    """An open connection ended: close frame, vanished peer (1006), heartbeat,
    a frame that broke the protocol (1002, 1007) or a message too big (1009)."""

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class ConnectionFailure:
    """One failed attempt or lost connection, as the retry policy sees it.

    Attributes:
        kind: What went wrong.
        status_code: The HTTP status of a rejected handshake, else ``None``.
        close_code: The WebSocket close code of a closed connection (1006 when
            it vanished without a close frame), else ``None``.
        reason: A short, token-free description for events and logs.
        connected_for: Seconds the connection had been open (``CLOSED`` only).
        retry_after: Seconds the server asked us to wait (its ``Retry-After``
            header on a rejected handshake), else ``None``. Whenever present,
            a retry waits at least this long, up to ``Backoff.max_delay``.
        repeats: How many failures just before this one, in a row, had the
            same kind, status code and close code (0 for the first). The
            manager fills it in before asking the retry policy; a connection
            that stayed up ``max(Backoff.reset_after, Backoff.base)`` seconds
            breaks the row.
    """

    kind: FailureKind
    status_code: int | None = None
    close_code: int | None = None
    reason: str | None = None
    connected_for: float | None = None
    retry_after: float | None = None
    repeats: int = 0

    @property
    def outcome(self) -> tuple[FailureKind, int | None, int | None]:
        """``(kind, status_code, close_code)``: what :attr:`repeats` compares."""
        return (self.kind, self.status_code, self.close_code)
