"""TLS: certificates are verified by default, quickly and clearly; plain ws: warns.

The TLS scenarios use real loopback sockets and the real clock (never
``autojump_clock``: bytes are in flight), each under a tight ``fail_after``;
certificates come from a throw-away ``trustme`` CA.
"""

from __future__ import annotations

import logging
import ssl

import pytest
import trio
import trio.testing
import trustme
from _fault_helpers import (
    errors,
    manager_tasks,
    wait_given_up,
)
from conftest import TaskCensus
from helpers import NO_RETRY, SCENARIO_CAP, manager_on

from trio_ws_bus import (
    Backoff,
    ConnectionEvent,
    ConnectionFailure,
    FailureKind,
    RetryRules,
    RetryVerdict,
    Telemetry,
    default_retry_policy,
    open_websocket_manager,
)
from trio_ws_bus.testing import open_reference_server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throw-away certificate authority."""
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    """A server-side context with a certificate for ``names``, signed by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts ``ca``."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


class KindSpy:
    """A retry policy that records the kind of every failure."""

    def __init__(self, rules: RetryRules | None = None) -> None:
        self.kinds: list[FailureKind] = []
        self._rules = rules

    def __call__(self, failure: ConnectionFailure) -> RetryVerdict:
        self.kinds.append(failure.kind)
        return (self._rules or default_retry_policy)(failure)


# --- 21. wss: certificates ---------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "client", "message"),
    [
        (
            ("127.0.0.1",),
            "default",
            "TLS certificate verification failed: unable to get local issuer "
            "certificate",
        ),
        (
            ("backend.example",),
            "trusting",
            "TLS certificate verification failed: IP address mismatch, certificate "
            "is not valid for '127.0.0.1'.",
        ),
    ],
    ids=["untrusted-ca", "name-mismatch"],
)
async def test_wss_verifies_certificates_by_default(
    names: tuple[str, ...],
    client: str,
    message: str,
    ca: trustme.CA,
    no_tasks_left: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An untrusted or mismatched certificate fails fast and clearly; no token sent."""
    spy = KindSpy()
    context = None if client == "default" else trusting(ca)
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server(
            ssl_context=server_context(ca, *names)
        ) as server:
            assert server.url.startswith("https://127.0.0.1:")
            started = trio.current_time()
            async with open_websocket_manager(
                server.url,
                token="tok-tls",
                backoff=NO_RETRY,
                retry_policy=spy,
                open_timeout=30.0,
                ssl_context=context,
            ) as manager:
                events: list[ConnectionEvent] = []
                manager.bus.on("connection", events.append)
                assert (
                    await wait_given_up(manager) == "Max reconnection attempts reached"
                )
            assert trio.current_time() - started < 5.0  # not open_timeout
            assert server.handshakes == 0  # the token never left the client
    assert errors(events) == [message, "Max reconnection attempts reached"]
    assert spy.kinds == [FailureKind.TLS_ERROR]
    assert "tok-tls" not in caplog.text


async def test_tls_failure_can_be_made_fatal(
    ca: trustme.CA, no_tasks_left: None
) -> None:
    """RetryRules(fatal_kinds={TLS_ERROR}) stops at the first certificate failure."""
    policy = RetryRules(fatal_kinds={FailureKind.TLS_ERROR})
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server(
            ssl_context=server_context(ca, "127.0.0.1")
        ) as server:
            async with open_websocket_manager(
                server.url, token="t", retry_policy=policy
            ) as manager:
                reason = await wait_given_up(manager)
    assert reason.startswith("TLS certificate verification failed: ")
    assert reason.endswith("(not retried)")


async def test_custom_ssl_context_works_end_to_end(
    ca: trustme.CA, task_census: TaskCensus, no_tasks_left: None
) -> None:
    """A context trusting the server's CA: connect, receive, drop, reconnect, close."""
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server(
            ssl_context=server_context(ca, "127.0.0.1", "localhost")
        ) as server:
            async with open_websocket_manager(
                server.url,
                token=server.issue_token,
                ssl_context=trusting(ca),
                backoff=Backoff(base=0.05),
            ) as manager:
                async with manager.telemetry("pump") as pump:
                    await server.wait_subscribed("device", "pump")
                    await server.publish_telemetry("pump", {"rpm": 1})
                    first = await pump.receive()
                    assert isinstance(first, Telemetry)
                    await server.drop_connections()
                    await server.wait_until(
                        lambda s: (
                            len(s.connections) == 1
                            and s.connections[0].holds("device", "pump")
                            and len(s.all_connections) == 2
                        )
                    )
                    await server.publish_telemetry("pump", {"rpm": 2})
                    assert (await pump.receive()).metrics == {"rpm": 2}
            assert manager_tasks(task_census) == []
            await server.wait_connections(0)
            assert server.all_connections[-1].close_code == 1000


async def test_wss_to_a_plain_server_fails_fast(no_tasks_left: None) -> None:
    """wss: to a server that does not speak TLS: a clear TLS error, not a timeout."""
    spy = KindSpy()
    with trio.fail_after(SCENARIO_CAP):
        async with open_reference_server() as server:
            url = server.url.replace("http://", "https://")
            started = trio.current_time()
            async with open_websocket_manager(
                url, token="t", backoff=NO_RETRY, retry_policy=spy, open_timeout=30.0
            ) as manager:
                events: list[ConnectionEvent] = []
                manager.bus.on("connection", events.append)
                await wait_given_up(manager)
            assert trio.current_time() - started < 5.0
    [message, _] = errors(events)
    assert message is not None
    assert message.startswith("TLS failed: ")
    assert spy.kinds == [FailureKind.TLS_ERROR]


# --- plain ws: ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://backend.example", True),
        ("ws://10.0.0.7:8080/api/v2/ws", True),
        ("http://127.0.0.1:8080", False),
        ("http://[::1]:8080", False),
        ("http://localhost", False),
        ("https://backend.example", False),
    ],
)
async def test_plain_ws_to_a_remote_host_logs_a_warning(
    url: str,
    warned: bool,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    no_tasks_left: None,
) -> None:
    """ws: beyond loopback warns that the token travels in clear text (no network)."""
    caplog.set_level(logging.WARNING, logger="trio_ws_bus")
    async with open_reference_server(listen=False) as server:
        token = server.issue_token()
        async with open_websocket_manager(
            url, token=token, transport=server.transport
        ) as manager:
            await manager.wait_connected()
        host = server.transport.targets[0][0]
    warnings = [
        r.getMessage() for r in caplog.records if "without TLS" in r.getMessage()
    ]
    if warned:
        assert warnings == [
            f"connecting to {host} without TLS: the token travels in clear text"
        ]
    else:
        assert warnings == []
    assert token not in caplog.text


async def test_ssl_context_with_a_plain_url_is_refused(no_tasks_left: None) -> None:
    """ssl_context= with ws:/http: is a ValueError before anything connects."""
    async with open_reference_server(listen=False) as server:
        with pytest.raises(ValueError, match="ssl_context"):
            async with manager_on(server, ssl_context=ssl.create_default_context()):
                pass  # pragma: no cover
        assert server.transport.attempts == 0
