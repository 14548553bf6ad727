"""The seam between the manager and the network: who opens the byte stream.

The manager runs the WebSocket protocol (its own sans-I/O session) on
whatever :class:`trio.abc.Stream` a transport gives it. The default opens TCP
(and TLS for ``wss:``); :mod:`trio_ws_bus.testing` plugs in an in-memory
transport so tests run the real protocol under a mock clock.
"""

from __future__ import annotations

import socket
import ssl
from typing import Protocol

import trio

from ._errors import ProxyError
from ._logs import LOG_TEXT_LIMIT
from ._reconnect import ConnectionFailure, FailureKind

__all__ = ["TcpTransport", "Transport", "failure_from_os_error"]


class Transport(Protocol):
    """Opens the byte stream that one connection attempt runs over."""

    async def open_stream(
        self, host: str, port: int, *, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        """Open a stream to ``host:port``, with TLS when ``ssl_context`` is set.

        Raises:
            OSError: When the peer cannot be reached (refused, DNS failure,
                TLS failure); the manager counts it as a failed attempt.
        """
        ...


class TcpTransport:
    """The default transport: TCP, with TLS when an SSL context is given.

    The TLS handshake is done here, so a certificate problem fails the attempt
    at once with a clear ``ssl.SSLError`` instead of during the WebSocket
    handshake.
    """

    async def open_stream(
        self, host: str, port: int, *, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        """Open a TCP (or TLS over TCP) stream to ``host:port``."""
        if ssl_context is None:
            return await trio.open_tcp_stream(host, port)
        stream = await trio.open_ssl_over_tcp_stream(
            host, port, ssl_context=ssl_context, https_compatible=True
        )
        try:
            await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream

    def __repr__(self) -> str:
        return "TcpTransport()"


def failure_from_os_error(exc: BaseException) -> ConnectionFailure:
    """Describe why a transport could not open: proxy, TLS, name, or socket."""
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
    if isinstance(cause, ProxyError):
        return ConnectionFailure(FailureKind.PROXY_ERROR, reason=str(cause))
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
