"""The seam between the manager and the network: who opens the byte stream.

The manager runs the WebSocket protocol (its own sans-I/O session) on
whatever :class:`trio.abc.Stream` a transport gives it. The default opens TCP
(and TLS for ``wss:``);
:class:`ProxyTransport` tunnels through a proxy with python-socks;
:mod:`trio_ws_bus.testing` plugs in an in-memory transport so tests run the
real protocol under a mock clock.
"""

from __future__ import annotations

import math
import os
import socket
import ssl
from typing import Final, Protocol

import attrs
import python_socks
import trio
from python_socks.async_.trio import Proxy

from ._errors import ProxyError
from ._failures import ConnectionFailure, FailureKind
from ._logs import LOG_TEXT_LIMIT
from ._proxy import ProxyURL
from ._util import BaseExceptionGroup, leaf_exceptions

__all__ = ["ProxyTransport", "TcpTransport", "Transport", "failure_from_os_error"]

_PROXY_TYPES: Final = {
    "http": python_socks.ProxyType.HTTP,
    "socks4": python_socks.ProxyType.SOCKS4,
    "socks5": python_socks.ProxyType.SOCKS5,
    "socks5h": python_socks.ProxyType.SOCKS5,
}
_PROXY_AUTH_REQUIRED: Final = 407


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
        stream = await trio.open_tcp_stream(host, port)
        return await _with_tls(stream, host, ssl_context)

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
        text = _os_error_text(cause)[:LOG_TEXT_LIMIT]
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


def _os_error_text(exc: OSError) -> str:
    """The OS's words for ``exc``: "Connection refused", "No route to host", ...

    ``trio.open_tcp_stream`` raises a plain "all attempts to connect to
    host:port failed" from a group of each address's error: their own words
    come first, then that sentence.
    """
    if exc.strerror:
        return exc.strerror
    group = exc.__cause__
    if isinstance(group, BaseExceptionGroup):
        # Each address's error says "Error connecting to (...): <words>".
        words = dict.fromkeys(
            os.strerror(e.errno)
            if isinstance(e.errno, int) and not isinstance(e, socket.gaierror)
            else e.strerror or str(e)
            for e in leaf_exceptions(group)
            if isinstance(e, OSError)
        )
        if words:
            return f"{', '.join(words)} ({exc})"
    return str(exc) or type(exc).__name__


def _to_proxy_url(proxy: str | ProxyURL) -> ProxyURL:
    return proxy if isinstance(proxy, ProxyURL) else ProxyURL.parse(proxy)


@attrs.frozen
class ProxyTransport:
    """Tunnels each attempt through a proxy: HTTP CONNECT, SOCKS5 or SOCKS4.

    The tunnel is opened with python-socks; for ``wss:`` TLS with the target
    runs inside it, so the proxy sees only encrypted bytes. A proxy that is
    down, refuses, wants other credentials or cannot open the tunnel raises
    :exc:`ProxyError`; a TLS failure inside the tunnel stays an
    :exc:`ssl.SSLError` (it is about the target's certificate).

    Args:
        proxy: The proxy, as a URL string (``http://user:pass@host:port``,
            ``socks5://...``, ``socks5h://...``, ``socks4://...``) or a
            :class:`ProxyURL`.

    Raises:
        ValueError: If the proxy URL is not valid.
    """

    proxy: ProxyURL = attrs.field(converter=_to_proxy_url)
    """The proxy every attempt goes through."""

    async def open_stream(
        self, host: str, port: int, *, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        """Open a tunnel to ``host:port`` through the proxy, with TLS if asked.

        Raises:
            ProxyError: If the proxy fails the tunnel; its message names the
                proxy's ``host:port``, never its credentials.
        """
        proxy = self.proxy
        tunnel = Proxy(
            _PROXY_TYPES[proxy.scheme],
            proxy.host,
            proxy.port,
            proxy.username,
            proxy.password,
            rdns=proxy.scheme == "socks5h",
        )
        try:
            # No timeout of python-socks' own: the caller's cancel scope (the
            # manager's open_timeout) bounds the attempt.
            sock = await tunnel.connect(host, port, timeout=math.inf)
        except (python_socks.ProxyError, OSError) as exc:
            raise ProxyError(
                _proxy_failure(exc, proxy, f"{host}:{port}"), proxy=proxy.address
            ) from exc
        return await _with_tls(trio.SocketStream(sock), host, ssl_context)


def _proxy_failure(exc: Exception, proxy: ProxyURL, target: str) -> str:
    """What went wrong at the proxy, in words; python-socks' text at most."""
    where = f"Proxy {proxy.address}"
    if isinstance(exc, python_socks.ProxyConnectionError):
        cause = exc.__cause__
        reason = cause.strerror if isinstance(cause, OSError) else None
        return f"{where} is unreachable: {reason or 'connection failed'}"
    detail = (str(exc) or type(exc).__name__)[:LOG_TEXT_LIMIT]
    if isinstance(exc, python_socks.ProxyError):
        if exc.error_code == _PROXY_AUTH_REQUIRED or "authentication" in detail:
            given = (
                "rejected the credentials" if proxy.username else "requires credentials"
            )
            return f"{where} {given} ({detail})"
        return f"{where} did not open a tunnel to {target} ({detail})"
    return f"{where} dropped the connection to {target} ({detail})"


async def _with_tls(
    stream: trio.SocketStream, host: str, ssl_context: ssl.SSLContext | None
) -> trio.abc.Stream:
    """``stream`` itself, or TLS over it with the handshake done (see TcpTransport)."""
    if ssl_context is None:
        return stream
    tls = trio.SSLStream(
        stream, ssl_context, server_hostname=host, https_compatible=True
    )
    try:
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    return tls
