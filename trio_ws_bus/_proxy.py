"""Which proxy a connection goes through: proxy URLs and the environment's rules.

Pure: no I/O and no Trio, so the rules are tested synchronously. The rules are
httpx's (``trust_env=True``):

* ``ws:`` reads ``HTTP_PROXY``, ``wss:`` reads ``HTTPS_PROXY``; either falls
  back to ``ALL_PROXY``. Names are case-insensitive and the lower-case one wins
  (an empty lower-case variable hides the upper-case one), as in
  :func:`urllib.request.getproxies`. ``HTTP_PROXY`` is ignored when
  ``REQUEST_METHOD`` is set (a CGI script: "httpoxy").
* ``NO_PROXY`` is a comma-separated list; a target matching any entry goes
  direct. ``*`` matches every host; ``example.com`` matches it and its
  subdomains; ``.example.com`` only its subdomains; an IP address matches
  itself and a CIDR block (``10.0.0.0/8``) the addresses in it. An entry may end
  in ``:port`` to match that port only.
* A value without a scheme is an ``http://`` proxy.
* Loopback (``localhost``, ``127.0.0.0/8``, ``::1``) is never proxied from the
  environment, as Go's ``net/http`` rules: a proxy on another machine cannot
  reach this one's loopback, so ``HTTP_PROXY`` set for the Internet must not
  break a local server (the demo, a test server). ``NO_PROXY`` need not say so.
* An explicit ``proxy`` argument, ``None`` included, wins over the environment
  (for loopback too).
"""

from __future__ import annotations

import enum
import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from typing import Final

import attrs

__all__ = [
    "PROXY_FROM_ENV",
    "ProxyFromEnv",
    "ProxyURL",
    "is_loopback",
    "resolve_proxy",
]

#: The proxy schemes we speak, with their default ports. ``socks5h`` resolves the
#: target's name at the proxy; ``socks5`` and ``socks4`` resolve it here.
_DEFAULT_PORTS: Final = {"http": 80, "socks4": 1080, "socks5": 1080, "socks5h": 1080}
#: The environment variable (without ``_proxy``) each WebSocket scheme reads.
_ENV_KEYS: Final = {"ws": "http", "wss": "https"}


class ProxyFromEnv(enum.Enum):
    """The type of :data:`PROXY_FROM_ENV`."""

    PROXY_FROM_ENV = "PROXY_FROM_ENV"

    def __repr__(self) -> str:
        return "PROXY_FROM_ENV"


#: The default of ``proxy`` arguments: no proxy was given, so with
#: ``trust_env=True`` the environment decides. Pass ``proxy=None`` to go direct
#: whatever the environment says.
PROXY_FROM_ENV: Final = ProxyFromEnv.PROXY_FROM_ENV


@attrs.frozen(repr=False)
class ProxyURL:
    """A proxy to tunnel through: ``http``, ``socks5``, ``socks5h`` or ``socks4``.

    Its repr and :attr:`address` never show the credentials: they are secrets,
    like the token.
    """

    scheme: str
    """``http`` (HTTP CONNECT), ``socks5``, ``socks5h`` (the proxy resolves names) or
    ``socks4``."""
    host: str
    """The proxy's host name or IP address (no brackets)."""
    port: int
    """The proxy's port."""
    username: str | None = None
    """The user name to authenticate with, if any."""
    password: str | None = None
    """The password to authenticate with, if any."""

    @classmethod
    def parse(cls, url: str) -> ProxyURL:
        """Parse ``scheme://[user:password@]host[:port]``; percent-escapes are decoded.

        Raises:
            ValueError: If the scheme is not a supported one, the host is
                missing, the port is invalid, or the URL has a path or query.
                The message never shows the credentials.
        """
        parts = urllib.parse.urlsplit(url.strip())
        scheme = parts.scheme.lower()
        _userinfo, at, hostport = parts.netloc.rpartition("@")
        shown = f"{parts.scheme}://{'***@' if at else ''}{hostport}"
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(
                f"unsupported proxy scheme {scheme!r} in {shown!r}: use "
                + ", ".join(f"{name}://" for name in _DEFAULT_PORTS)
            )
        if not parts.hostname:
            raise ValueError(f"proxy URL without a host: {shown!r}")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError(f"a proxy URL has no path or query: {shown!r}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"invalid port in proxy URL {shown!r}") from None
        return cls(
            scheme,
            parts.hostname,
            _DEFAULT_PORTS[scheme] if port is None else port,
            _unquote(parts.username),
            _unquote(parts.password),
        )

    @property
    def address(self) -> str:
        """``host:port`` (``[host]:port`` for IPv6): how messages name the proxy."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __repr__(self) -> str:
        auth = "***@" if self.username is not None or self.password else ""
        return f"ProxyURL('{self.scheme}://{auth}{self.address}')"


def _unquote(text: str | None) -> str | None:
    return None if text is None else urllib.parse.unquote(text)


def resolve_proxy(
    target_scheme: str,
    host: str,
    port: int,
    *,
    proxy: str | ProxyURL | ProxyFromEnv | None,
    trust_env: bool,
    environ: Mapping[str, str] | None = None,
) -> ProxyURL | None:
    """The proxy to reach ``host:port`` through, or ``None`` to connect directly.

    Args:
        target_scheme: ``ws`` or ``wss``.
        host: The target's host name or IP address (no brackets).
        port: The target's port (``NO_PROXY`` entries may name one).
        proxy: An explicit proxy URL, ``None`` for none, or
            :data:`PROXY_FROM_ENV` to let the environment decide.
        trust_env: Read the environment when ``proxy`` is :data:`PROXY_FROM_ENV`.
        environ: The environment variables; ``None`` reads ``os.environ``.

    Returns:
        The explicit ``proxy``; else, with ``trust_env``, the environment's
        proxy for the scheme unless ``NO_PROXY`` matches or ``host`` is
        loopback (see :func:`is_loopback`); else ``None``.

    Raises:
        ValueError: If the chosen proxy URL is not valid.
    """
    if isinstance(proxy, ProxyURL):
        return proxy
    if isinstance(proxy, str):
        return ProxyURL.parse(proxy)
    if proxy is None or not trust_env or is_loopback(host):
        return None
    proxies = _environment_proxies(os.environ if environ is None else environ)
    url = proxies.get(_ENV_KEYS[target_scheme]) or proxies.get("all")
    if not url or _bypassed(proxies.get("no", ""), host.lower(), port):
        return None
    return ProxyURL.parse(url if "://" in url else f"http://{url}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost``, ``127.0.0.0/8`` or ``::1``.

    Names other than ``localhost`` are not resolved (no I/O here), as in Go.
    """
    host = host.lower().rstrip(".").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _environment_proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """``*_proxy`` variables by prefix, lower-case names winning (as urllib)."""
    proxies: dict[str, str] = {}
    for name, value in environ.items():
        key = name.lower()
        if value and key.endswith("_proxy"):
            proxies[key[:-6]] = value
    if "REQUEST_METHOD" in environ:
        proxies.pop("http", None)
    for name, value in environ.items():
        if name.endswith("_proxy"):
            if value:
                proxies[name[:-6]] = value
            else:
                proxies.pop(name[:-6], None)
    return proxies


def _bypassed(no_proxy: str, host: str, port: int) -> bool:
    """Whether an entry of ``NO_PROXY`` matches ``host:port``."""
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        entry, entry_port = _split_port(entry)
        if entry and entry_port in (None, port) and _host_matches(entry, host):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """Split ``host:port`` or ``[v6]:port``; a bare IPv6 address has no port."""
    head, sep, tail = entry.rpartition(":")
    if sep and tail.isdigit() and (entry.startswith("[") or ":" not in head):
        return head.strip("[]"), int(tail)
    return entry.strip("[]"), None


def _host_matches(entry: str, host: str) -> bool:
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        domain = entry.removeprefix("*").lstrip(".")
        if entry.startswith((".", "*.")):
            return host.endswith(f".{domain}")
        return host == domain or host.endswith(f".{domain}")
    try:
        return ipaddress.ip_address(host) in network
    except ValueError:
        return False
