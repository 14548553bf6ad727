"""What one manager is configured with: declared once, checked before anything connects.

:class:`ManagerOptions` is the one list of the manager's options: each one's
name, type, default, check and doc. ``open_websocket_manager`` takes the same
names as keyword arguments (a test holds the two together), hands them over
with :func:`options_from` instead of listing them again, and gets its
``Args:`` entries from the options' docs (:func:`document_options`).
:meth:`ManagerOptions.resolve` then works out, once, what the options imply
(the handshake, the TLS context, the transport) into the frozen
:class:`Settings` that the manager's session loop reads.
"""

from __future__ import annotations

import inspect
import math
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Literal, TypeVar

import attrs

from ._logs import get_logger
from ._proxy import PROXY_FROM_ENV, ProxyFromEnv, ProxyURL, is_loopback, resolve_proxy
from ._session import Compression, HandshakeOptions
from ._transport import ProxyTransport, TcpTransport, Transport
from ._url import WebSocketTarget, check_base_url, redact_url, resolve_target
from ._version import __version__

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_PATH",
    "DEFAULT_SUBSCRIBER_WAIT",
    "DEFAULT_USER_AGENT",
    "HandshakeHeaders",
    "ManagerOptions",
    "Settings",
    "TokenLocation",
    "TokenProvider",
    "document_options",
    "is_loopback",
    "options_from",
    "token_problem",
]

logger = get_logger("trio_ws_bus.settings")

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


# --- the checks: each names the option it checks from attrs' Attribute ----------


def _url(_: object, attribute: attrs.Attribute[str], url: str) -> None:
    check_base_url(url)


def _token(_: object, attribute: attrs.Attribute[TokenProvider], token: object) -> None:
    if not (isinstance(token, str) or callable(token)):
        raise TypeError("token must be a str or a callable returning one")


def _seconds(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A duration: a finite number > 0."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _seconds_or_none(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A duration, or ``None`` for none."""
    if value is not None:
        _seconds(_, attribute, value)


def _wait(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    """A wait that may be zero or unbounded: a number >= 0, ``math.inf`` too."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(
            f"{attribute.name} must be a number of seconds >= 0, got {value!r}"
        )


def _size(_: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


def _one_of(*allowed: object) -> Callable[[object, attrs.Attribute[Any], object], None]:
    shown = " or ".join(map(repr, allowed))

    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value not in allowed:
            raise ValueError(f"{attribute.name} must be {shown}, got {value!r}")

    return check


def _header_pairs(headers: HandshakeHeaders) -> tuple[tuple[str, str], ...]:
    """Headers as ``(name, value)`` pairs, in order (a mapping's or the pairs')."""
    if isinstance(headers, Mapping):
        return tuple(headers.items())
    return tuple(headers)


def _headers(
    _: object, attribute: attrs.Attribute[Any], pairs: tuple[tuple[str, str], ...]
) -> None:
    """After :func:`_header_pairs`: str pairs, none of the library's headers."""
    for name, value in pairs:
        if not (isinstance(name, str) and isinstance(value, str)):
            raise TypeError(f"{attribute.name} must map str to str")
        if name.lower() in ("authorization", "host") or name.lower().startswith(
            "sec-websocket-"
        ):
            raise ValueError(f"{attribute.name} may not set {name!r}")


def _not_one_str(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a sequence of str, not one str")


def _tls_only(
    options: ManagerOptions,
    attribute: attrs.Attribute[ssl.SSLContext | None],
    context: ssl.SSLContext | None,
) -> None:
    """A TLS context only goes with a wss:/https: URL (checked after ``url``)."""
    if context is not None and not _target(options).secure:
        raise ValueError(f"{attribute.name} given for a ws:/http: URL; use wss:/https:")


def _target(options: ManagerOptions) -> WebSocketTarget:
    return resolve_target(options.url, None, path=options.path)


# --- the options -----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ManagerOptions:
    """The options of one connection manager, each declared once, here.

    ``open_websocket_manager`` takes every field as a keyword argument of the
    same name, type and default (``url`` also by position); its other
    arguments (``bus``, ``backoff``, ``retry_policy``, ``autoconnect``) are
    collaborators and an action, not settings. Making one checks every field
    and raises ``ValueError`` or ``TypeError`` naming the option, before
    anything connects. The entries below are the factory's ``Args:`` docs.

    Attributes:
        url: Base URL of the backend: ``http(s)://`` or ``ws(s)://``. An empty
            path becomes ``path``; other query parameters are kept.
        token: The auth token, or a sync or async callable returning it. A
            callable is called before every attempt, so it can refresh.
        path: The endpoint path used when ``url`` has none.
        ping_interval: Seconds between heartbeat pings; ``None`` disables them
            (then a half-open connection is never noticed).
        ping_timeout: Seconds to wait for a pong before the connection counts
            as lost, unless data keeps arriving (at least 1 KiB per
            ``ping_timeout``).
        open_timeout: Seconds one attempt may take, from the token call to the
            end of the opening handshake.
        close_timeout: Seconds a close we start may take before the
            connection is dropped without the close handshake.
        ssl_context: TLS settings for ``wss:``/``https:`` URLs; a default,
            verifying context when ``None``.
        max_message_size: Largest message accepted, in bytes; a bigger one
            closes the connection with 1009 and is counted.
        transport: Opens the byte stream of each attempt; TCP by default. The
            in-memory transport of :mod:`trio_ws_bus.testing` plugs in here.
        additional_headers: Extra handshake request headers (a mapping or
            ``(name, value)`` pairs); ``Authorization``, ``Host`` and
            ``Sec-WebSocket-*`` are the library's.
        user_agent: The ``User-Agent`` header; ``None`` sends none.
        origin: The ``Origin`` header, for servers that check it.
        subprotocols: Subprotocols to offer, in order of preference; the
            server's choice is in :meth:`WebSocketManager.statistics`.
        compression: ``"deflate"`` offers permessage-deflate; ``None`` offers
            no compression.
        token_location: ``"query"`` (the seed's ``?token=``) or ``"header"``
            (``Authorization: Bearer <token>``).
        proxy: ``"http://[user:pass@]host:port"`` (HTTP CONNECT),
            ``"socks5://..."`` or ``"socks5h://..."``; TLS runs inside the
            tunnel for ``wss:``. By default the environment decides (see
            ``trust_env``); an explicit ``None`` means no proxy, whatever the
            environment says. Ignored when ``transport`` is given.
        trust_env: Read ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY``
            as httpx does, when ``proxy`` is not given.
        subscriber_wait: The most seconds the connection's reader waits, at a
            time, for a subscription that passed half its ``max_buffer`` before
            it reads on (backpressure: TCP slows the server meanwhile). A
            subscription that has not drained to a quarter of its buffer by
            then is lagging: it loses messages by its overflow policy until it
            catches up, and never stalls the others for longer. ``0`` never
            waits (0.2.0's behaviour: bursts overflow buffers); ``math.inf``
            waits as long as it takes, as websockets' own clients do.
    """

    # Secrets stay out of the repr (it shows up in tracebacks with locals):
    # the token, a token in the URL, header values, proxy credentials.
    url: str = attrs.field(validator=_url, repr=lambda url: repr(redact_url(url)))
    token: TokenProvider = attrs.field(validator=_token, repr=False)
    path: str = DEFAULT_PATH
    ping_interval: float | None = attrs.field(default=20.0, validator=_seconds_or_none)
    ping_timeout: float = attrs.field(default=20.0, validator=_seconds)
    open_timeout: float = attrs.field(default=10.0, validator=_seconds)
    close_timeout: float = attrs.field(default=5.0, validator=_seconds)
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, validator=_tls_only)
    max_message_size: int = attrs.field(
        default=DEFAULT_MAX_MESSAGE_SIZE, validator=_size
    )
    transport: Transport | None = None
    additional_headers: HandshakeHeaders = attrs.field(
        default=(), converter=_header_pairs, validator=_headers, repr=False
    )
    user_agent: str | None = DEFAULT_USER_AGENT
    origin: str | None = None
    subprotocols: Sequence[str] | None = attrs.field(
        default=None, validator=_not_one_str
    )
    compression: Compression = attrs.field(
        default="deflate", validator=_one_of("deflate", None)
    )
    token_location: TokenLocation = attrs.field(
        default="query", validator=_one_of("query", "header")
    )
    proxy: str | ProxyURL | ProxyFromEnv | None = attrs.field(
        default=PROXY_FROM_ENV, repr=False
    )
    trust_env: bool = True
    subscriber_wait: float = attrs.field(
        default=DEFAULT_SUBSCRIBER_WAIT, validator=_wait
    )

    def resolve(self) -> Settings:
        """Work out what these options imply, once: what every attempt reads.

        The handshake from ``additional_headers``, ``user_agent``, ``origin``,
        ``subprotocols`` and ``compression``; a default, verifying TLS context
        for ``wss:`` when none is given; TCP, through the proxy that ``proxy``
        and ``trust_env`` name, when no ``transport`` is given. Warns on the
        ``trio_ws_bus.settings`` logger when the token would travel in clear
        text beyond loopback.

        Raises:
            ValueError: For a ``proxy`` URL that can never work.
        """
        target = _target(self)
        ssl_context = self.ssl_context
        if target.secure and ssl_context is None:
            ssl_context = ssl.create_default_context()
        transport = self.transport
        if transport is None:
            proxy_url = resolve_proxy(
                target.scheme,
                target.host,
                target.port,
                proxy=self.proxy,
                trust_env=self.trust_env,
            )
            transport = (
                TcpTransport() if proxy_url is None else ProxyTransport(proxy_url)
            )
        if not target.secure and not is_loopback(target.host):
            logger.warning(
                "connecting to %s without TLS: the token travels in clear text",
                target.host,
            )
        handshake = HandshakeOptions(
            headers=_header_pairs(self.additional_headers),
            user_agent=self.user_agent,
            origin=self.origin,
            subprotocols=tuple(self.subprotocols or ()),
            compression=self.compression,
        )
        resolved = {
            **{field.name: getattr(self, field.name) for field in _FIELDS},
            "ssl_context": ssl_context,
            "transport": transport,
            "subscriber_wait": float(self.subscriber_wait),
        }
        return Settings(**resolved, handshake=handshake)


@attrs.frozen(kw_only=True)
class Settings(ManagerOptions):
    """:class:`ManagerOptions` resolved: what the manager's session loop reads.

    Made by :meth:`ManagerOptions.resolve` only; still valid options (given
    to ``open_websocket_manager`` again they connect the same way).

    Attributes:
        transport: The transport every attempt uses: the one given, else TCP,
            through the proxy that ``proxy`` and ``trust_env`` chose.
        handshake: What the opening handshake sends, from
            ``additional_headers``, ``user_agent``, ``origin``,
            ``subprotocols`` and ``compression``.
    """

    transport: Transport = attrs.field(repr=False)  # a proxy's credentials
    handshake: HandshakeOptions = attrs.field(repr=False)  # header values


_FIELDS: Final = attrs.fields(ManagerOptions)


def options_from(arguments: Mapping[str, Any]) -> ManagerOptions:
    """Check the options among a call's ``arguments`` (the factory's ``locals()``).

    Every field of :class:`ManagerOptions` is taken by its name, so the
    factory never lists its options a second time.

    Raises:
        ValueError: For a URL that can never work or an out-of-range option.
        TypeError: For an option of the wrong type.
    """
    return ManagerOptions(**{field.name: arguments[field.name] for field in _FIELDS})


# --- the factory's docs ----------------------------------------------------------

_F = TypeVar("_F", bound=Callable[..., object])
_ENTRY: Final = re.compile(r"    (\w+):")


def _entries(doc: str, section: str) -> tuple[list[str], dict[str, list[str]], int]:
    """Split ``doc`` (cleaned) at its Google-style ``section``.

    Returns:
        The lines of ``doc``, the section's entries (name -> its lines, as
        written) and the index of the line after the section.
    """
    lines = inspect.cleandoc(doc).splitlines()
    start = lines.index(f"{section}:") + 1
    end = start
    while end < len(lines) and lines[end].startswith("    "):
        end += 1
    entries: dict[str, list[str]] = {}
    for line in lines[start:end]:
        match = _ENTRY.match(line)
        if match:
            entries[match[1]] = []
        list(entries.values())[-1].append(line)
    return lines, entries, end


def document_options(factory: _F) -> _F:
    """Give ``factory``'s ``Args:`` an entry for each option, in signature order.

    The entries are :class:`ManagerOptions`' own (its ``Attributes:``); the
    factory's docstring documents only its other arguments. Sphinx and
    ``help()`` both read the composed ``__doc__``.

    Raises:
        TypeError: If an argument is documented twice or not at all.
    """
    if factory.__doc__ is None or ManagerOptions.__doc__ is None:
        return factory  # docstrings stripped (python -OO): nothing to compose
    lines, own, end = _entries(factory.__doc__, "Args")
    _, options, _ = _entries(ManagerOptions.__doc__ or "", "Attributes")
    names = list(inspect.signature(factory).parameters)
    twice = own.keys() & options.keys()
    missing = set(names) - own.keys() - options.keys()
    if twice or missing or not own.keys() <= set(names):
        raise TypeError(
            f"{factory.__name__}: documented twice {sorted(twice)}, "
            f"undocumented {sorted(missing)}, not arguments "
            f"{sorted(own.keys() - set(names))}"
        )
    start = lines.index("Args:") + 1
    args = [line for name in names for line in {**own, **options}[name]]
    factory.__doc__ = "\n".join([*lines[:start], *args, *lines[end:]])
    return factory


def token_problem(token: str, location: TokenLocation) -> str | None:
    """Why ``token`` cannot be sent where it goes, or ``None`` (never shows it)."""
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        return "Token is not valid text (it cannot be encoded as UTF-8)"
    if location == "header" and not (token.isascii() and token.isprintable()):
        return "Token cannot be sent in a header (only printable ASCII can)"
    return None
