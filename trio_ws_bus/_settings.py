"""What one manager is configured with, checked before anything connects.

:func:`make_settings` turns the arguments of ``open_websocket_manager`` into
one frozen :class:`Settings`, raising ``ValueError``/``TypeError`` for what
can never work; the manager's session loop only reads it.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, Literal

import attrs

from ._logs import get_logger
from ._proxy import ProxyFromEnv, ProxyURL, is_loopback, resolve_proxy
from ._session import Compression, HandshakeOptions
from ._transport import ProxyTransport, TcpTransport, Transport
from ._url import check_base_url, resolve_target
from ._version import __version__

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_PATH",
    "DEFAULT_SUBSCRIBER_WAIT",
    "DEFAULT_USER_AGENT",
    "HandshakeHeaders",
    "Settings",
    "TokenLocation",
    "TokenProvider",
    "is_loopback",
    "make_settings",
    "token_problem",
]

logger = get_logger("trio_ws_bus.manager")

TokenProvider = str | Callable[[], "str | Awaitable[str | None] | None"]
"""A token, or a sync or async callable returning the current one (or None)."""

TokenLocation = Literal["query", "header"]
"""Where the token travels: ``"query"`` (``?token=``, the seed's) or ``"header"``
(``Authorization: Bearer <token>``)."""

HandshakeHeaders = Mapping[str, str] | Sequence[tuple[str, str]]
"""Extra handshake request headers: a mapping, or ``(name, value)`` pairs (a
name may repeat)."""

DEFAULT_PATH: Final = "/api/v2/ws"
DEFAULT_MAX_MESSAGE_SIZE: Final = 1024 * 1024
DEFAULT_USER_AGENT: Final = f"trio-ws-bus/{__version__}"
#: Seconds the reader waits, at a time, for a congested subscription (see
#: ``subscriber_wait`` of ``open_websocket_manager``).
DEFAULT_SUBSCRIBER_WAIT: Final = 0.5


@attrs.frozen
class Settings:
    """Everything one attempt needs that never changes."""

    url: str
    token: TokenProvider
    path: str
    token_location: TokenLocation
    handshake: HandshakeOptions
    ping_interval: float | None
    ping_timeout: float
    open_timeout: float
    close_timeout: float
    ssl_context: ssl.SSLContext | None
    max_message_size: int
    transport: Transport
    subscriber_wait: float = DEFAULT_SUBSCRIBER_WAIT


def make_settings(
    url: str,
    *,
    token: TokenProvider,
    path: str,
    ping_interval: float | None,
    ping_timeout: float,
    open_timeout: float,
    close_timeout: float,
    ssl_context: ssl.SSLContext | None,
    max_message_size: int,
    transport: Transport | None,
    additional_headers: HandshakeHeaders,
    user_agent: str | None,
    origin: str | None,
    subprotocols: Sequence[str] | None,
    compression: Compression,
    token_location: TokenLocation,
    proxy: str | ProxyURL | ProxyFromEnv | None,
    trust_env: bool,
    subscriber_wait: float = 0.5,
) -> Settings:
    """Check ``open_websocket_manager``'s arguments; return them as Settings.

    Raises:
        ValueError: For a URL that can never work or an out-of-range setting.
        TypeError: For an argument of the wrong type.
    """
    check_base_url(url)
    if not (isinstance(token, str) or callable(token)):
        raise TypeError("token must be a str or a callable returning one")
    for name, value in (
        ("ping_timeout", ping_timeout),
        ("open_timeout", open_timeout),
        ("close_timeout", close_timeout),
    ):
        _check_positive(name, value)
    if ping_interval is not None:
        _check_positive("ping_interval", ping_interval)
    if (
        isinstance(subscriber_wait, bool)
        or not isinstance(subscriber_wait, (int, float))
        or not subscriber_wait >= 0
    ):
        raise ValueError(
            f"subscriber_wait must be a number of seconds >= 0, got {subscriber_wait!r}"
        )
    if (
        isinstance(max_message_size, bool)
        or not isinstance(max_message_size, int)
        or (max_message_size < 1)
    ):
        raise ValueError(
            f"max_message_size must be an int >= 1, got {max_message_size!r}"
        )
    if token_location not in ("query", "header"):
        raise ValueError(
            f"token_location must be 'query' or 'header', got {token_location!r}"
        )
    handshake = _handshake_options(
        additional_headers, user_agent, origin, subprotocols, compression
    )
    probe = resolve_target(url, None, path=path)
    if probe.secure and ssl_context is None:
        ssl_context = ssl.create_default_context()
    elif not probe.secure and ssl_context is not None:
        raise ValueError("ssl_context given for a ws:/http: URL; use wss:/https:")
    if transport is None:
        proxy_url = resolve_proxy(
            probe.scheme, probe.host, probe.port, proxy=proxy, trust_env=trust_env
        )
        transport = TcpTransport() if proxy_url is None else ProxyTransport(proxy_url)
    if not probe.secure and not is_loopback(probe.host):
        logger.warning(
            "connecting to %s without TLS: the token travels in clear text", probe.host
        )
    return Settings(
        url=url,
        token=token,
        path=path,
        token_location=token_location,
        handshake=handshake,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        ssl_context=ssl_context,
        max_message_size=max_message_size,
        transport=transport,
        subscriber_wait=float(subscriber_wait),
    )


def token_problem(token: str, location: TokenLocation) -> str | None:
    """Why ``token`` cannot be sent where it goes, or ``None`` (never shows it)."""
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        return "Token is not valid text (it cannot be encoded as UTF-8)"
    if location == "header" and not (token.isascii() and token.isprintable()):
        return "Token cannot be sent in a header (only printable ASCII can)"
    return None


def _check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _handshake_options(
    additional_headers: HandshakeHeaders,
    user_agent: str | None,
    origin: str | None,
    subprotocols: Sequence[str] | None,
    compression: Compression,
) -> HandshakeOptions:
    pairs = (
        list(additional_headers.items())
        if isinstance(additional_headers, Mapping)
        else list(additional_headers)
    )
    for name, value in pairs:
        if not (isinstance(name, str) and isinstance(value, str)):
            raise TypeError("additional_headers must map str to str")
        if name.lower() in ("authorization", "host") or name.lower().startswith(
            "sec-websocket-"
        ):
            raise ValueError(f"additional_headers may not set {name!r}")
    if compression not in ("deflate", None):
        raise ValueError(f"compression must be 'deflate' or None, got {compression!r}")
    if isinstance(subprotocols, str):
        raise TypeError("subprotocols must be a sequence of str, not one str")
    return HandshakeOptions(
        headers=tuple(pairs),
        user_agent=user_agent,
        origin=origin,
        subprotocols=tuple(subprotocols or ()),
        compression=compression,
    )
