"""Building the connection URL from a base URL and a token, and redacting it."""

from __future__ import annotations

import urllib.parse

import attrs

__all__ = ["TokenNotText", "WebSocketTarget", "redact_url", "resolve_target"]

_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_REDACTED = "***"


class TokenNotText(ValueError):
    """The token cannot be sent: it is not valid text (a lone surrogate, ...).

    Its message never holds the token, and it is raised without the
    ``UnicodeEncodeError`` that would (that one quotes the whole token).
    """


@attrs.frozen(repr=False)
class WebSocketTarget:
    """Where one connection attempt goes; the token is kept out of every repr.

    Attributes:
        scheme: ``"ws"`` or ``"wss"``.
        host: Host name or address (IPv6 without brackets).
        port: TCP port.
        resource: Path and query sent in the request line, token included.
    """

    scheme: str
    host: str
    port: int
    resource: str

    @property
    def secure(self) -> bool:
        """Whether the connection uses TLS (``wss:``)."""
        return self.scheme == "wss"

    @property
    def host_header(self) -> str:
        """The ``Host:`` header value, with the port when it is not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.secure else 80
        return host if self.port == default_port else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The full URL, token included: never log or show this."""
        return f"{self.scheme}://{self.host_header}{self.resource}"

    @property
    def redacted_url(self) -> str:
        """The URL with the token replaced by ``***``: safe to show."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"WebSocketTarget({self.redacted_url!r})"


def _split_base(base_url: str) -> urllib.parse.SplitResult:
    if not isinstance(base_url, str):
        raise TypeError(f"url must be a str, got {type(base_url).__name__}")
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme.lower() not in _SCHEMES:
        raise ValueError(
            f"url scheme must be http, https, ws or wss, got {parts.scheme!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError("url has an invalid port") from None
    del port
    if not parts.hostname:
        raise ValueError("url has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("url must not contain credentials; use the token provider")
    if parts.fragment:
        raise ValueError("url must not contain a fragment")
    return parts


def check_base_url(base_url: str) -> None:
    """Raise ``ValueError`` now if ``base_url`` can never be connected to."""
    _split_base(base_url)


def resolve_target(base_url: str, token: str | None, *, path: str) -> WebSocketTarget:
    """Turn the base URL and a token into one attempt's target.

    ``http:`` becomes ``ws:`` and ``https:`` becomes ``wss:``; an empty path gets
    ``path``; the token is percent-encoded into the ``token`` query parameter
    (replacing any ``token`` already there; with ``token=None`` there is
    none, for a token sent in a header) and other parameters are kept.

    Raises:
        ValueError: For an unsupported scheme, a missing host or a bad port.
        TokenNotText: For a token that UTF-8 cannot encode.
    """
    parts = _split_base(base_url)
    try:
        if token is not None:
            token.encode("utf-8")
    except UnicodeEncodeError:
        raise TokenNotText("the token is not valid text (a lone surrogate)") from None
    scheme = _SCHEMES[parts.scheme.lower()]
    resource_path = parts.path if parts.path not in ("", "/") else path
    if not resource_path.startswith("/"):
        resource_path = "/" + resource_path
    kept = [
        pair
        for pair in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if pair[0] != "token"
    ]
    # quote_via=quote with safe="" encodes every reserved character, so
    # "+ / = & # % space" in a token survive the trip to the server.
    if token is not None:
        kept.append(("token", token))
    query = urllib.parse.urlencode(kept, quote_via=urllib.parse.quote, safe="")
    host = parts.hostname
    assert host is not None  # checked by _split_base
    port = parts.port if parts.port is not None else (443 if scheme == "wss" else 80)
    resource = f"{resource_path}?{query}" if query else resource_path
    return WebSocketTarget(scheme, host, port, resource)


def redact_url(url: str) -> str:
    """Replace the value of every ``token`` query parameter with ``***``."""
    head, sep, query = url.partition("?")
    if not sep:
        return url
    query, hash_sep, fragment = query.partition("#")
    pieces = []
    for piece in query.split("&"):
        name, eq, _value = piece.partition("=")
        pieces.append(f"{name}={_REDACTED}" if eq and name == "token" else piece)
    return f"{head}?{'&'.join(pieces)}{hash_sep}{fragment}"
