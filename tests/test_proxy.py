"""Proxies: the environment's rules (pure), and tunnels through a real pproxy server.

The end-to-end cases run pproxy (HTTP CONNECT and SOCKS5 on one port) as a
subprocess on 127.0.0.1 and the reference server on 127.0.0.1, on the real
clock, each under a ``fail_after``. pproxy is started with ``--auth 0``: by
default it trusts an address for 30 days once it authenticated, which would
let a bad password through after a good one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import re
import socket
import ssl
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import trio
import trustme
from helpers import NO_RETRY, SCENARIO_CAP, SpyPolicy
from hypothesis import given, strategies as st
from test_docs import load_example

from trio_ws_bus import (
    CONNECTION_TOPIC,
    PROXY_FROM_ENV,
    ConnectionEvent,
    ConnectionFailure,
    ConnectionGaveUp,
    ConnectionStatus,
    FailureKind,
    MessageBus,
    ProxyError,
    ProxyTransport,
    ProxyURL,
    TcpTransport,
    Telemetry,
    Transport,
    WebSocketManager,
    open_websocket_manager,
)
from trio_ws_bus._cli import main
from trio_ws_bus._cli._commands import ListenSettings, Stop, UsageError, run_listen
from trio_ws_bus._cli._main import _listen_settings, build_parser
from trio_ws_bus._cli._output import Output
from trio_ws_bus._cli._tokens import EnvToken
from trio_ws_bus._proxy import resolve_proxy
from trio_ws_bus.testing import ReferenceServer, open_reference_server

#: Real seconds pproxy may take to start listening.
START_LIMIT = 20.0
USER, PASSWORD = "alice", "pr0xy-s3cret"


def free_port() -> int:
    """A port nothing listens on (just closed), on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.define
class PproxyServer:
    """A pproxy subprocess serving HTTP CONNECT and SOCKS5 on one loopback port."""

    port: int
    userinfo: str
    """What a client puts before the host: ``user:password@`` or nothing."""
    lines: queue.Queue[str] = attrs.Factory(queue.Queue)

    def url(self, scheme: str, userinfo: str | None = None) -> str:
        """The proxy's URL, with the right credentials unless others are given."""
        userinfo = self.userinfo if userinfo is None else userinfo
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}"

    def expect_tunnel(self, scheme: str, target_port: int) -> None:
        """Wait (bounded) until pproxy logs a ``scheme`` tunnel to ``target_port``."""
        wanted = f"-> 127.0.0.1:{target_port}"
        while True:  # bounded: get() raises queue.Empty after the limit
            line = self.lines.get(timeout=START_LIMIT).rstrip()
            if line.startswith(f"{scheme} ") and line.endswith(wanted):
                return


@contextlib.contextmanager
def running_pproxy(*, with_auth: bool) -> Iterator[PproxyServer]:
    """Start pproxy on a free loopback port, wait until it listens, always stop it."""
    port = free_port()
    auth = f"#{USER}:{PASSWORD}" if with_auth else ""
    process = subprocess.Popen(
        [
            *(sys.executable, "-u", "-m", "pproxy", "-v", "--auth", "0"),
            *("-l", f"http+socks5://127.0.0.1:{port}{auth}"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = PproxyServer(port, f"{USER}:{PASSWORD}@" if with_auth else "")
    output = process.stdout
    assert output is not None
    reader = threading.Thread(
        target=lambda: [server.lines.put(line) for line in output], daemon=True
    )
    reader.start()
    try:
        first = server.lines.get(timeout=START_LIMIT)
        assert first.startswith("Serving on"), first
        yield server
    finally:
        process.terminate()
        process.wait(timeout=START_LIMIT)
        reader.join(timeout=START_LIMIT)
        output.close()


@pytest.fixture(scope="module", params=["open", "auth"])
def pproxy(request: pytest.FixtureRequest) -> Iterator[PproxyServer]:
    """A pproxy on 127.0.0.1, without and with credentials."""
    with running_pproxy(with_auth=request.param == "auth") as server:
        yield server


@pytest.fixture(scope="module")
def auth_pproxy() -> Iterator[PproxyServer]:
    """A pproxy on 127.0.0.1 that wants credentials."""
    with running_pproxy(with_auth=True) as server:
        yield server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def port_of(server: ReferenceServer) -> int:
    port = urllib.parse.urlsplit(server.url).port
    assert port is not None
    return port


def manager_through(
    server: ReferenceServer,
    transport: Transport | None,
    ssl_context: ssl.SSLContext | None = None,
    **options: Any,
) -> contextlib.AbstractAsyncContextManager[WebSocketManager]:
    """A manager on ``server`` with ``transport`` (or its own) that never retries."""
    return open_websocket_manager(
        server.url,
        token=server.issue_token,
        transport=transport,
        ssl_context=ssl_context,
        backoff=NO_RETRY,
        **options,
    )


async def receive_through(
    server: ReferenceServer,
    transport: Transport | None,
    ssl_context: ssl.SSLContext | None = None,
    **options: Any,
) -> Telemetry:
    """Connect with ``transport``, subscribe, and receive one reading."""
    async with manager_through(server, transport, ssl_context, **options) as manager:
        async with manager.telemetry("pump") as pump:
            await server.wait_subscribed("device", "pump")
            await server.publish_telemetry("pump", {"rpm": 7})
            reading = await pump.receive()
    assert isinstance(reading, Telemetry)
    return reading


async def failed_attempt(
    server: ReferenceServer,
    transport: Transport | None,
    ssl_context: ssl.SSLContext | None = None,
    **options: Any,
) -> tuple[list[ConnectionEvent], ConnectionFailure]:
    """Every connection event of one failed attempt (no retry), and its failure."""
    bus = MessageBus()
    events: list[ConnectionEvent] = []
    bus.on(CONNECTION_TOPIC, events.append)
    spy = SpyPolicy()
    async with manager_through(
        server, transport, ssl_context, bus=bus, retry_policy=spy, **options
    ) as manager:
        with pytest.raises(ConnectionGaveUp):
            await manager.wait_connected()
    (failure,) = spy.failures
    return events, failure


def error_messages(events: list[ConnectionEvent]) -> list[str | None]:
    return [e.message for e in events if e.status is ConnectionStatus.ERROR]


# --- through a real proxy ------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "socks5", "socks5h"])
async def test_data_flows_through_the_proxy_for_ws(
    pproxy: PproxyServer, scheme: str
) -> None:
    """ws: through HTTP CONNECT and SOCKS5: the reading arrives, via the proxy."""
    transport = ProxyTransport(pproxy.url(scheme))
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server() as server:
            reading = await receive_through(server, transport)
    assert reading.metrics == {"rpm": 7}
    pproxy.expect_tunnel("socks5" if scheme == "socks5h" else scheme, port_of(server))


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_wss_runs_tls_inside_the_tunnel(
    pproxy: PproxyServer, scheme: str, ca: trustme.CA
) -> None:
    """wss: through either proxy kind: TLS with the target inside the tunnel."""
    transport = ProxyTransport(pproxy.url(scheme))
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server(ssl_context=server_context(ca)) as server:
            assert server.url.startswith("https://")
            reading = await receive_through(server, transport, trusting(ca))
    assert reading.metrics == {"rpm": 7}
    pproxy.expect_tunnel(scheme, port_of(server))


async def test_a_bad_certificate_inside_the_tunnel_stays_a_tls_error(
    pproxy: PproxyServer, ca: trustme.CA
) -> None:
    """The target's certificate is checked in the tunnel: a TLS error, not a proxy's."""
    transport = ProxyTransport(pproxy.url("http"))
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server(ssl_context=server_context(ca)) as server:
            events, failure = await failed_attempt(
                server, transport, ssl.create_default_context()
            )
            assert server.handshakes == 0
    assert failure.kind is FailureKind.TLS_ERROR
    assert error_messages(events)[0] == (
        "TLS certificate verification failed: unable to get local issuer certificate"
    )


@pytest.mark.parametrize("scheme", ["http", "socks5"])
@pytest.mark.parametrize("auth", ["", f"{USER}:wrong-{PASSWORD}@"], ids=["none", "bad"])
async def test_bad_proxy_credentials_fail_the_attempt_naming_the_proxy_only(
    auth_pproxy: PproxyServer,
    scheme: str,
    auth: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Missing or wrong credentials: an error event naming the proxy, never a secret."""
    caplog.set_level(logging.DEBUG)
    transport = ProxyTransport(auth_pproxy.url(scheme, auth))
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server() as server:
            events, failure = await failed_attempt(server, transport)
            assert server.handshakes == 0
    assert failure.kind is FailureKind.PROXY_ERROR
    proxy = f"Proxy 127.0.0.1:{auth_pproxy.port} "
    first = error_messages(events)[0] or ""
    assert proxy in first
    if scheme == "http":
        verdict = "rejected the credentials" if auth else "requires credentials"
        assert f"{verdict} (407 Proxy Authentication Required)" in first
    else:  # pproxy hangs up on a SOCKS5 client it does not accept
        assert "did not open a tunnel to 127.0.0.1:" in first
    shown = [repr(event) for event in events] + [caplog.text, repr(transport)]
    for secret in (PASSWORD, USER):
        assert not [text for text in shown if secret in text]


async def test_target_unreachable_through_the_proxy_is_a_proxy_error(
    pproxy: PproxyServer,
) -> None:
    """HTTP CONNECT to a closed port: ProxyError naming the proxy and the target."""
    transport = ProxyTransport(pproxy.url("http"))
    target = free_port()
    with trio.fail_after(SCENARIO_CAP), pytest.raises(ProxyError) as failed:
        await transport.open_stream("127.0.0.1", target, ssl_context=None)
    assert failed.value.proxy == f"127.0.0.1:{pproxy.port}"
    assert str(failed.value) == (
        f"Proxy 127.0.0.1:{pproxy.port} did not open a tunnel to "
        f"127.0.0.1:{target} (Invalid proxy response)"
    )


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_a_proxy_that_is_down_is_a_proxy_error(scheme: str) -> None:
    """Nothing listening at the proxy: ProxyError "unreachable", no credentials."""
    port = free_port()
    transport = ProxyTransport(f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{port}")
    with trio.fail_after(SCENARIO_CAP), pytest.raises(ProxyError) as failed:
        await transport.open_stream("127.0.0.1", 9, ssl_context=None)
    message = str(failed.value)
    assert message.startswith(f"Proxy 127.0.0.1:{port} is unreachable: ")
    assert "Connection refused" in message
    assert PASSWORD not in message
    assert USER not in message
    assert failed.value.proxy == f"127.0.0.1:{port}"
    assert isinstance(failed.value, OSError)


async def test_a_proxy_that_is_down_fails_the_attempt_with_its_message() -> None:
    """Through the manager: one error event that says it was the proxy."""
    port = free_port()
    transport = ProxyTransport(f"http://{USER}:{PASSWORD}@127.0.0.1:{port}")
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server() as server:
            events, failure = await failed_attempt(server, transport)
    assert failure.kind is FailureKind.PROXY_ERROR
    first = error_messages(events)[0] or ""
    assert f"Proxy 127.0.0.1:{port} is unreachable: " in first
    assert PASSWORD not in repr(events)


async def test_no_proxy_match_goes_direct_past_a_dead_proxy() -> None:
    """HTTP_PROXY points at nothing; NO_PROXY names the target: it connects direct."""
    dead = f"http://{USER}:{PASSWORD}@127.0.0.1:{free_port()}"
    environ = {"HTTP_PROXY": dead, "NO_PROXY": "localhost,127.0.0.0/8"}
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server() as server:
            port = port_of(server)

            def transport() -> Transport:
                """The manager's choice: the proxy the rules pick, else TCP."""
                url = resolve_proxy(
                    "ws",
                    "127.0.0.1",
                    port,
                    proxy=PROXY_FROM_ENV,
                    trust_env=True,
                    environ=environ,
                )
                return TcpTransport() if url is None else ProxyTransport(url)

            assert (await receive_through(server, transport())).metrics == {"rpm": 7}
            # Without NO_PROXY too: loopback is never proxied from the environment.
            del environ["NO_PROXY"]
            assert (await receive_through(server, transport())).metrics == {"rpm": 7}


# --- the manager picks the proxy (no transport=) ---------------------------------


@pytest.fixture
def dead_env_proxy(monkeypatch: pytest.MonkeyPatch) -> int:
    """HTTP_PROXY and HTTPS_PROXY name a dead proxy; no other proxy variable is set."""
    for name in [name for name in os.environ if name.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    port = free_port()
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, f"http://{USER}:{PASSWORD}@127.0.0.1:{port}")
    return port


async def test_the_proxy_argument_tunnels_without_a_transport(
    pproxy: PproxyServer, dead_env_proxy: int
) -> None:
    """proxy="http://127.0.0.1:<port>": the manager tunnels through it, not the env."""
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server() as server:
            proxy = pproxy.url("http")
            reading = await receive_through(server, None, proxy=proxy)
    assert reading.metrics == {"rpm": 7}
    pproxy.expect_tunnel("http", port_of(server))


@pytest.mark.parametrize(
    "options", [{"proxy": None}, {"trust_env": False}], ids=["proxy=None", "no env"]
)
async def test_the_environment_proxy_can_be_ignored(
    dead_env_proxy: int, options: dict[str, Any]
) -> None:
    """proxy=None or trust_env=False: the dead proxy of the env is not used."""
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server() as server:
            reading = await receive_through(server, None, **options)
    assert reading.metrics == {"rpm": 7}


async def test_the_environment_proxy_is_used_by_default(dead_env_proxy: int) -> None:
    """No proxy= argument: the env's dead proxy fails the attempt, PROXY_ERROR.

    The target is a name that never resolves (``.invalid``): only the proxy,
    on loopback, is ever contacted.
    """
    bus = MessageBus()
    events: list[ConnectionEvent] = []
    bus.on(CONNECTION_TOPIC, events.append)
    spy = SpyPolicy()
    with trio.fail_after(SCENARIO_CAP):
        async with open_websocket_manager(
            "http://ops.example.invalid:8765",
            token="tok",
            bus=bus,
            backoff=NO_RETRY,
            retry_policy=spy,
        ) as manager:
            with pytest.raises(ConnectionGaveUp):
                await manager.wait_connected()
    (failure,) = spy.failures
    assert failure.kind is FailureKind.PROXY_ERROR
    first = error_messages(events)[0] or ""
    assert f"Proxy 127.0.0.1:{dead_env_proxy} is unreachable: " in first
    assert PASSWORD not in repr(events)


async def listen_until_subscribed(
    proxy: ProxyURL | None,
) -> tuple[ReferenceServer, io.StringIO, io.StringIO]:
    """Run ``listen`` with ``proxy`` until it subscribed; the server and output."""
    out, err = io.StringIO(), io.StringIO()
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server() as server:
            settings = ListenSettings(
                url=server.url,
                token_source=EnvToken("T", environ={"T": server.issue_token()}),
                devices=("pump",),
                proxy=proxy,
                duration=5.0,
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_listen, settings, Output(out, err), Stop())
                await server.wait_subscribed("device", "pump")
                nursery.cancel_scope.cancel()
    return server, out, err


async def test_listen_proxy_connects_and_never_prints_credentials(
    pproxy: PproxyServer,
) -> None:
    """``listen --proxy`` tunnels through the proxy; its output names host:port only."""
    server, out, err = await listen_until_subscribed(
        ProxyURL.parse(pproxy.url("socks5"))
    )
    pproxy.expect_tunnel("socks5", port_of(server))
    assert f"through proxy 127.0.0.1:{pproxy.port}" in out.getvalue()
    assert PASSWORD not in out.getvalue() + err.getvalue()
    assert USER not in out.getvalue() + err.getvalue()


# --- proxy URLs ----------------------------------------------------------------


def test_proxy_url_parses_and_hides_credentials() -> None:
    """Credentials are percent-decoded, kept, and never in the repr."""
    url = ProxyURL.parse("HTTP://us%40er:p%3Ass@proxy.corp:3128/")
    assert url == ProxyURL("http", "proxy.corp", 3128, "us@er", "p:ss")
    assert repr(url) == "ProxyURL('http://***@proxy.corp:3128')"
    assert repr(ProxyTransport(url)) == (
        "ProxyTransport(proxy=ProxyURL('http://***@proxy.corp:3128'))"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://proxy", ProxyURL("http", "proxy", 80)),
        ("socks5://proxy", ProxyURL("socks5", "proxy", 1080)),
        ("socks5h://[::1]:9050", ProxyURL("socks5h", "::1", 9050)),
        ("socks4://10.0.0.1:1081", ProxyURL("socks4", "10.0.0.1", 1081)),
    ],
)
def test_proxy_url_default_ports_and_ipv6(url: str, expected: ProxyURL) -> None:
    """A missing port is the scheme's usual one; IPv6 hosts lose their brackets."""
    assert ProxyURL.parse(url) == expected


def test_proxy_url_address_brackets_ipv6() -> None:
    """``address`` is how messages name the proxy: ``[::1]:9050``."""
    assert ProxyURL("socks5", "::1", 9050).address == "[::1]:9050"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "https://u:pw@proxy:3128",
            "unsupported proxy scheme 'https' in 'https://***@proxy:3128'",
        ),
        ("proxy.corp:3128", "unsupported proxy scheme 'proxy.corp'"),
        ("http://u:pw@:3128", "proxy URL without a host: 'http://***@:3128'"),
        (
            "http://u:pw@proxy:70000",
            "invalid port in proxy URL 'http://***@proxy:70000'",
        ),
        ("http://u:pw@proxy:3128/path", "a proxy URL has no path or query"),
        ("socks5://u:pw@proxy?x=1", "a proxy URL has no path or query"),
    ],
)
def test_invalid_proxy_urls_are_value_errors_without_secrets(
    url: str, message: str
) -> None:
    """A bad proxy URL raises ValueError at once; the message hides the credentials."""
    with pytest.raises(ValueError, match="^" + re.escape(message)) as raised:
        ProxyTransport(url)
    assert "pw" not in str(raised.value)


userinfo_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)


@given(user=userinfo_text, password=userinfo_text)
def test_any_credentials_round_trip_and_stay_hidden(user: str, password: str) -> None:
    """Percent-encoded credentials of any text come back as given, never in the repr."""
    quote = urllib.parse.quote
    url = ProxyURL.parse(
        f"socks5://{quote(user, safe='')}:{quote(password, safe='')}@h:1"
    )
    assert (url.username, url.password) == (user, password)
    assert repr(url) == "ProxyURL('socks5://***@h:1')"


# --- the environment's rules ---------------------------------------------------


def resolve(
    environ: dict[str, str],
    scheme: str = "wss",
    host: str = "api.example.com",
    port: int = 443,
) -> ProxyURL | None:
    return resolve_proxy(
        scheme, host, port, proxy=PROXY_FROM_ENV, trust_env=True, environ=environ
    )


@pytest.mark.parametrize(
    ("environ", "scheme", "expected"),
    [
        ({"HTTPS_PROXY": "http://p:1"}, "wss", "p"),
        ({"HTTPS_PROXY": "http://p:1"}, "ws", None),
        ({"HTTP_PROXY": "http://p:1"}, "ws", "p"),
        ({"HTTP_PROXY": "http://p:1"}, "wss", None),
        ({"ALL_PROXY": "socks5://a:1", "HTTPS_PROXY": "http://p:1"}, "wss", "p"),
        ({"ALL_PROXY": "socks5://a:1"}, "ws", "a"),
        ({"all_proxy": "socks5://a:1"}, "wss", "a"),
        ({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:1"}, "wss", "low"),
        ({"https_proxy": "", "HTTPS_PROXY": "http://up:1"}, "wss", None),
        ({"HTTPS_PROXY": "p:3128"}, "wss", "p"),
        ({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}, "ws", None),
        ({}, "wss", None),
    ],
)
def test_environment_picks_the_proxy_as_httpx_does(
    environ: dict[str, str], scheme: str, expected: str | None
) -> None:
    """HTTP_PROXY for ws:, HTTPS_PROXY for wss:, ALL_PROXY after; lower case wins."""
    url = resolve(environ, scheme)
    assert (url.host if url else None) == expected


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST", "localhost.", "127.0.0.1", "127.1.2.3", "::1"],
)
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_loopback_is_never_proxied_from_the_environment(host: str, scheme: str) -> None:
    """Go's rule: HTTP(S)_PROXY and ALL_PROXY never apply to this machine."""
    environ = {"HTTP_PROXY": "http://p:1", "HTTPS_PROXY": "http://p:1"}
    assert resolve({**environ, "ALL_PROXY": "socks5://a:1"}, scheme, host) is None
    assert resolve({"ALL_PROXY": "socks5://a:1"}, scheme, host) is None
    explicit = resolve_proxy(
        scheme, host, 443, proxy="http://p:1", trust_env=True, environ=environ
    )
    assert explicit == ProxyURL("http", "p", 1)


@pytest.mark.parametrize(
    "host", ["localhost.example.com", "mylocalhost", "128.0.0.1", "::2", "10.0.0.1"]
)
def test_hosts_that_only_look_local_are_proxied(host: str) -> None:
    """Only loopback addresses and the name ``localhost`` itself go direct."""
    assert resolve({"HTTPS_PROXY": "http://p:1"}, "wss", host) == ProxyURL(
        "http", "p", 1
    )


def test_a_scheme_less_proxy_variable_is_http() -> None:
    """``HTTPS_PROXY=proxy:3128`` means an HTTP CONNECT proxy."""
    assert resolve({"HTTPS_PROXY": "proxy:3128"}) == ProxyURL("http", "proxy", 3128)


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("*", "anything.example", 443, True),
        ("api.example.com", "api.example.com", 443, True),
        ("API.EXAMPLE.COM", "api.example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        ("example.com", "example.com", 443, True),
        ("example.com", "badexample.com", 443, False),
        (".example.com", "api.example.com", 443, True),
        (".example.com", "example.com", 443, False),
        ("*.example.com", "example.com", 443, False),
        ("*example.com", "example.com", 443, True),
        ("other.com, example.com", "api.example.com", 443, True),
        ("10.1.2.3", "10.1.2.3", 443, True),
        ("10.1.2.3", "10.1.2.4", 443, False),
        ("10.0.0.0/8", "10.200.0.1", 443, True),
        ("10.0.0.0/8", "11.0.0.1", 443, False),
        ("10.0.0.0/8", "ten.example.com", 443, False),
        ("::1", "::1", 443, True),
        ("[::1]:443", "::1", 443, True),
        ("fd00::/8", "fd12::1", 443, True),
        ("example.com:443", "api.example.com", 443, True),
        ("example.com:8443", "api.example.com", 443, False),
        ("", "api.example.com", 443, False),
        (" , ", "api.example.com", 443, False),
    ],
)
def test_no_proxy_matches_hosts_domains_ips_and_cidr(
    no_proxy: str, host: str, port: int, bypassed: bool
) -> None:
    """A target matching a NO_PROXY entry goes direct; others use the proxy."""
    environ = {"HTTPS_PROXY": "http://p:1", "no_proxy": no_proxy}
    assert (resolve(environ, host=host, port=port) is None) is bypassed


env_names = st.sampled_from(
    [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "REQUEST_METHOD",
    ]
)
env_values = st.sampled_from(["", "*", "http://p:1", "socks5://s:2", "q:3", "x.y"])
environments = st.dictionaries(env_names, env_values)


@given(environ=environments, scheme=st.sampled_from(["ws", "wss"]))
def test_an_explicit_proxy_wins_over_any_environment(
    environ: dict[str, str], scheme: str
) -> None:
    """``proxy=None`` or a URL ignore the environment, as does trust_env=False."""
    args = (scheme, "h", 443)
    assert resolve_proxy(*args, proxy=None, trust_env=True, environ=environ) is None
    chosen = resolve_proxy(
        *args, proxy="socks5h://me:9", trust_env=True, environ=environ
    )
    assert chosen == ProxyURL("socks5h", "me", 9)
    assert (
        resolve_proxy(*args, proxy=PROXY_FROM_ENV, trust_env=False, environ=environ)
        is None
    )


@given(environ=environments, host=st.sampled_from(["h", "10.0.0.1", "::1"]))
def test_no_proxy_star_always_goes_direct(environ: dict[str, str], host: str) -> None:
    """``NO_PROXY=*`` (the winning spelling) sends every target direct."""
    environ.pop("NO_PROXY", None)
    environ["no_proxy"] = "*"
    assert resolve(environ, host=host) is None


def test_the_process_environment_is_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without ``environ`` the rules read ``os.environ``."""
    for name in ("https_proxy", "all_proxy", "no_proxy", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://envproxy:8080")
    assert resolve_proxy(
        "wss", "h", 443, proxy=PROXY_FROM_ENV, trust_env=True
    ) == ProxyURL("http", "envproxy", 8080)


async def test_the_howto_example_reads_through_the_proxy(
    auth_pproxy: PproxyServer,
) -> None:
    """docs/examples/proxies.py gets a reading through a proxy with credentials."""
    example = load_example("proxies")
    readings: list[Telemetry] = []
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server() as server:

            async def read() -> None:
                url, token = server.url, server.issue_token()
                readings.append(
                    await example.first_reading(url, token, auth_pproxy.url("http"))
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await server.wait_subscribed("device", "pump-1")
                await server.publish_telemetry("pump-1", {"rpm": 3})
    assert [reading.metrics for reading in readings] == [{"rpm": 3}]
    auth_pproxy.expect_tunnel("http", port_of(server))


def test_listen_proxy_option_is_checked_without_showing_credentials() -> None:
    """``--proxy`` is parsed up front; a bad one is a usage error that hides secrets."""
    argv = ["listen", "https://ops.example.com", "--token-env", "T", "--proxy"]
    parser = build_parser()
    settings = _listen_settings(parser.parse_args([*argv, "socks5h://u:pw@p:1080"]))
    assert settings.proxy == ProxyURL("socks5h", "p", 1080, "u", "pw")
    with pytest.raises(UsageError) as bad:
        _listen_settings(parser.parse_args([*argv, "ftp://u:pw@p:21"]))
    assert str(bad.value) == (
        "bad --proxy: unsupported proxy scheme 'ftp' in 'ftp://***@p:21': "
        "use http://, socks4://, socks5://, socks5h://"
    )


def test_listen_no_proxy_ignores_the_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--no-proxy`` connects directly; the default reads the environment."""
    argv = ["listen", "https://ops.example.com", "--token-env", "T"]
    parser = build_parser()
    assert _listen_settings(parser.parse_args(argv)).proxy is PROXY_FROM_ENV
    assert _listen_settings(parser.parse_args([*argv, "--no-proxy"])).proxy is None
    assert main([*argv, "--no-proxy", "--proxy", "http://p:1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "trio-ws-bus listen: error: argument --proxy: not allowed with argument "
        "--no-proxy (see --help)"
    ]


async def test_listen_no_proxy_goes_past_a_dead_environment_proxy(
    dead_env_proxy: int,
) -> None:
    """``listen --no-proxy`` says so in its header and connects without the proxy."""
    server, out, _err = await listen_until_subscribed(None)
    assert f"{server.url} (no proxy), token from" in out.getvalue()
