"""The seam between the manager and the network: who opens the byte stream.

The manager runs the WebSocket protocol (trio-websocket over wsproto) on
whatever :class:`trio.abc.Stream` a transport gives it. The default opens TCP
(and TLS for ``wss:``); :mod:`trio_ws_bus.testing` plugs in an in-memory
transport so tests run the real protocol under a mock clock.
"""

from __future__ import annotations

import ssl
from typing import Protocol

import trio

__all__ = ["TcpTransport", "Transport"]


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
