"""Every way an attempt or a connection can end, as a ``ConnectionFailure``.

trio-websocket, wsproto, h11, trio and the ssl module each raise their own
exceptions when a server misbehaves; the connection task hands whatever one
connection raised to :func:`failure_from_group` and gets back one
:class:`ConnectionFailure` with a short, token-free reason. Anything that is
not a connection failure (a bug) is re-raised, never swallowed.
"""

from __future__ import annotations

import socket
import ssl
from typing import Final, NoReturn

import h11
import trio
import trio_websocket
from wsproto.connection import ConnectionState
from wsproto.utilities import LocalProtocolError

from ._logs import LOG_TEXT_LIMIT
from ._reconnect import ConnectionFailure, FailureKind
from ._stream import HandshakeAnswerError, ObservedStream
from ._util import BaseExceptionGroup, leaf_exceptions

__all__ = [
    "HandshakeAborted",
    "failure_from_exception",
    "failure_from_group",
    "failure_from_os_error",
    "raise_when_ended",
    "wsproto_state",
]


class HandshakeAborted(Exception):
    """The peer closed the stream before the opening handshake finished."""


async def raise_when_ended(stream: ObservedStream) -> NoReturn:
    await stream.ended.wait()
    raise HandshakeAborted


def wsproto_state(
    connection: trio_websocket.WebSocketConnection,
) -> ConnectionState | None:
    """The wsproto state under a trio-websocket connection (None if unknown).

    trio-websocket does not expose it; it tells a close frame from the server
    (REMOTE_CLOSING or CLOSED) from a frame wsproto refused (still OPEN).
    """
    protocol = getattr(connection, "_wsproto", None)
    state = getattr(protocol, "state", None)
    return state if isinstance(state, ConnectionState) else None


def failure_from_os_error(exc: BaseException) -> ConnectionFailure:
    """Describe a transport failure: TLS, name resolution, or other socket error."""
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return ConnectionFailure(
            FailureKind.TLS_ERROR,
            reason=f"TLS certificate verification failed: {cause.verify_message}",
        )
    if isinstance(cause, ssl.SSLError):
        return ConnectionFailure(
            FailureKind.TLS_ERROR,
            reason=f"TLS failed: {cause.reason or type(cause).__name__}",
        )
    if isinstance(cause, OSError):
        # Names the host and port at most; the token is only ever in the path.
        text = (cause.strerror or str(cause) or type(cause).__name__)[:LOG_TEXT_LIMIT]
        if isinstance(cause, socket.gaierror):
            return ConnectionFailure(
                FailureKind.UNREACHABLE, reason=f"Name resolution failed: {text}"
            )
        return ConnectionFailure(
            FailureKind.UNREACHABLE, reason=f"Connection failed: {text}"
        )
    return ConnectionFailure(
        FailureKind.UNREACHABLE, reason=f"Connection failed: {type(cause).__name__}"
    )


def failure_from_exception(exc: BaseException) -> ConnectionFailure:
    """Translate what an attempt raised; re-raise what is not a connection failure."""
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return ConnectionFailure(
            FailureKind.REJECTED,
            status_code=exc.status_code,
            reason=f"Handshake rejected with HTTP {exc.status_code}",
        )
    if isinstance(exc, HandshakeAnswerError):
        if exc.status_code is not None and exc.status_code != 101:
            return ConnectionFailure(
                FailureKind.REJECTED,
                status_code=exc.status_code,
                reason=f"Handshake rejected with HTTP {exc.status_code}"
                f" ({exc.reason}, not read)",
            )
        return ConnectionFailure(
            FailureKind.PROTOCOL_ERROR,
            reason=f"Invalid handshake answer: {exc.reason}",
        )
    if isinstance(exc, (h11.LocalProtocolError, LocalProtocolError)):
        # trio-websocket's reader crashes this way when wsproto refuses the
        # server's answer (bad upgrade headers, bad accept key): it tries to
        # send wsproto's suggested rejection, which h11 refuses on a client.
        return ConnectionFailure(
            FailureKind.PROTOCOL_ERROR,
            reason="Invalid handshake answer: not a WebSocket upgrade",
        )
    if isinstance(exc, trio_websocket.ConnectionClosed):
        code = int(exc.reason.code) if exc.reason is not None else 1006
        return ConnectionFailure(
            FailureKind.CLOSED, close_code=code, reason="Connection closed"
        )
    if isinstance(exc, HandshakeAborted):
        return ConnectionFailure(
            FailureKind.UNREACHABLE,
            reason="Connection closed during the opening handshake",
        )
    if isinstance(exc, (OSError, trio.BrokenResourceError)):
        return failure_from_os_error(exc)
    if isinstance(exc, trio_websocket.HandshakeError):
        return ConnectionFailure(
            FailureKind.UNREACHABLE, reason="Opening handshake failed"
        )
    raise exc


#: When one connection's nursery fails with several exceptions (the server
#: rejected the handshake *and* closed the stream), the first kind here wins.
FAILURE_PRIORITY: Final = (
    trio_websocket.ConnectionRejected,
    HandshakeAnswerError,
    h11.LocalProtocolError,
    LocalProtocolError,
    trio_websocket.ConnectionClosed,
    trio_websocket.HandshakeError,
    OSError,
    trio.BrokenResourceError,
    HandshakeAborted,
)


def failure_from_group(group: BaseExceptionGroup[BaseException]) -> ConnectionFailure:
    """Turn what one connection's nursery raised into a failure, or re-raise."""
    leaves = [e for e in leaf_exceptions(group) if not isinstance(e, trio.Cancelled)]
    if not leaves or any(not isinstance(e, FAILURE_PRIORITY) for e in leaves):
        raise group
    for kind in FAILURE_PRIORITY:
        for exc in leaves:
            if isinstance(exc, kind):
                return failure_from_exception(exc)
    raise group  # pragma: no cover - every leaf matched a kind above
