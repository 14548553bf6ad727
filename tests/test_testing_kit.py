"""The public test kit: reference server, in-memory transport, pytest fixtures.

A raw trio-websocket client drives the server here, so these tests pin the
kit's own behaviour independently of the manager.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import jwt
import pytest
import trio
import trio.testing
from trio.testing import MockClock
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
    wrap_client_stream,
)

import trio_ws_bus.testing
from trio_ws_bus.testing import (
    MemoryTransport,
    ReferenceServer,
    make_alert,
    open_reference_server,
)

HOST = "backend.test"


def resource(token: str | None, path: str = "/api/v2/ws") -> str:
    return path if token is None else f"{path}?token={token}"


async def handshake(
    nursery: trio.Nursery, stream: trio.abc.Stream, target: str, **options: Any
) -> WebSocketConnection:
    """trio-websocket's client handshake (typed for sockets, works on any stream)."""
    return await wrap_client_stream(
        nursery, cast("trio.SocketStream", stream), HOST, target, **options
    )


@asynccontextmanager
async def connect(
    server: ReferenceServer, target: str | None = None, **options: Any
) -> AsyncIterator[WebSocketConnection]:
    """A raw trio-websocket client over the server's in-memory transport.

    ``options`` go to trio-websocket's handshake (``subprotocols``,
    ``extra_headers``).
    """
    if target is None:
        target = resource(server.issue_token())
    stream = await server.transport.open_stream(HOST, 80, ssl_context=None)
    try:
        async with trio.open_nursery() as nursery:
            ws = await handshake(nursery, stream, target, **options)
            try:
                yield ws
            finally:
                await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)


async def rejection(
    server: ReferenceServer, target: str, **options: Any
) -> ConnectionRejected:
    """The ConnectionRejected a handshake to ``target`` ends with."""
    with pytest.RaisesGroup(ConnectionRejected) as excinfo:
        async with connect(server, target, **options):
            pass
    exc = excinfo.value.exceptions[0]
    assert isinstance(exc, ConnectionRejected)
    return exc


async def subscribe(
    ws: WebSocketConnection, kind: str, device_id: str | None = None
) -> dict[str, object]:
    message: dict[str, object] = {"action": "subscribe", "type": kind}
    if device_id is not None:
        message["device_id"] = device_id
    await ws.send_message(json.dumps(message))
    reply: dict[str, object] = json.loads(await ws.get_message())
    return reply


@pytest.fixture
async def server() -> AsyncIterator[ReferenceServer]:
    # pytest-trio takes the clock only from the test function's own arguments,
    # so every test using this fixture asks for autojump_clock itself.
    async with open_reference_server(listen=False) as server:
        yield server


# -- handshake -------------------------------------------------------------


async def test_valid_token_is_accepted(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """A valid token gets a connection that the server lists at once."""
    token = server.issue_token("alice")
    with trio.fail_after(5):
        async with connect(server, resource(token)):
            [conn] = server.connections
            assert conn.token == token
            assert conn.token_location == "query"
            assert conn.request_target == resource(token)
            assert conn.id == 1
            assert not conn.closed
            assert (server.handshakes, server.rejections) == (1, 0)
            assert server.tokens_seen == [token]


@pytest.mark.parametrize(
    ("token", "body"),
    [
        (None, b"missing token"),
        ("", b"missing token"),
        ("not-a-jwt", b"invalid token"),
        ("wrong-secret", b"invalid token"),
        ("expired", b"token expired"),
    ],
)
async def test_bad_token_is_rejected_with_401(
    server: ReferenceServer, autojump_clock: MockClock, token: str | None, body: bytes
) -> None:
    """Missing, malformed, foreign and expired tokens get HTTP 401."""
    if token == "wrong-secret":
        claims = {"sub": "x", "iat": 0, "exp": 2**40}
        token = jwt.encode(claims, "another-secret-of-at-least-32-bytes!", "HS256")
    elif token == "expired":
        token = server.issue_token(expires_in=-60)
    with trio.fail_after(5):
        exc = await rejection(server, resource(token))
    assert exc.status_code == 401
    assert exc.body == body
    assert (server.handshakes, server.rejections) == (1, 1)
    assert server.tokens_seen == [token]
    assert server.all_connections == []


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", f"Bearer {token}".encode())]


async def test_bearer_header_token_is_accepted(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """A token in ``Authorization: Bearer`` is accepted and its location recorded."""
    token = server.issue_token()
    with trio.fail_after(5):
        async with connect(server, resource(None), extra_headers=bearer(token)):
            [conn] = server.connections
            assert (conn.token, conn.token_location) == (token, "header")
            assert conn.request_target == "/api/v2/ws"
            assert ("authorization", f"Bearer {token}") in conn.request_headers
    assert server.tokens_seen == [token]


@pytest.mark.parametrize(
    ("value", "body"),
    [
        ("Bearer not-a-jwt", b"invalid token"),
        ("Bearer", b"missing token"),
        ("Basic {valid}", b"missing token"),
    ],
)
async def test_bad_bearer_header_is_rejected_with_401(
    server: ReferenceServer, autojump_clock: MockClock, value: str, body: bytes
) -> None:
    """A bad bearer token is refused like a bad query token; other schemes are none."""
    header = value.format(valid=server.issue_token()).encode()
    with trio.fail_after(5):
        exc = await rejection(
            server, resource(None), extra_headers=[(b"Authorization", header)]
        )
    assert (exc.status_code, exc.body) == (401, body)


async def test_token_in_query_and_header_is_rejected_with_400(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """A token in both places is refused even when both are valid."""
    token = server.issue_token()
    with trio.fail_after(5):
        exc = await rejection(server, resource(token), extra_headers=bearer(token))
    assert (exc.status_code, exc.body) == (400, b"token in query and header")
    assert server.tokens_seen == [token]
    assert server.all_connections == []


WS_HEADERS = {"connection", "upgrade", "sec-websocket-key", "sec-websocket-version"}


async def test_request_headers_are_recorded_in_order(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """Custom, repeated, User-Agent and Origin headers reach the connection record."""
    sent = [
        (b"User-Agent", b"probe/1.0"),
        (b"Origin", b"http://127.0.0.1:9"),
        (b"X-Trace", b"a"),
        (b"X-Trace", b"b"),
    ]
    with trio.fail_after(5):
        async with connect(server, extra_headers=sent):
            [conn] = server.connections
    received = [pair for pair in conn.request_headers if pair[0] not in WS_HEADERS]
    assert received == [
        ("user-agent", "probe/1.0"),
        ("origin", "http://127.0.0.1:9"),
        ("x-trace", "a"),
        ("x-trace", "b"),
    ]


@pytest.mark.parametrize(
    ("offered", "supported", "chosen"),
    [
        (["v2", "v1"], ("v1", "v2"), "v2"),
        (["v1", "v2"], ("v2",), "v2"),
        (["v3"], ("v1", "v2"), None),
        ([], ("v1",), None),
        (["v1"], (), None),
    ],
)
async def test_subprotocol_is_the_first_offered_that_is_supported(
    autojump_clock: MockClock,
    offered: list[str],
    supported: tuple[str, ...],
    chosen: str | None,
) -> None:
    """The client's preference wins among supported ones; no match means none."""
    async with open_reference_server(listen=False, subprotocols=supported) as server:
        assert server.subprotocols == supported
        with trio.fail_after(5):
            async with connect(server, subprotocols=offered) as ws:
                assert ws.subprotocol == chosen
                [conn] = server.connections
                assert conn.subprotocol == chosen
                assert conn.offered_subprotocols == tuple(offered)


def test_subprotocols_must_not_be_one_string() -> None:
    """A bare string is refused instead of being read as one letter per protocol."""

    async def main() -> None:
        async with open_reference_server(listen=False, subprotocols="chat"):
            pass  # pragma: no cover

    with pytest.raises(TypeError, match="sequence of strings"):
        trio.run(main)


async def test_server_never_shows_the_bearer_token(
    server: ReferenceServer,
    autojump_clock: MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Neither reprs nor the kit's logs show a token sent in the header."""
    caplog.set_level(logging.DEBUG)
    token = server.issue_token()
    with trio.fail_after(5):
        async with connect(server, resource(None), extra_headers=bearer(token)):
            [conn] = server.connections
            shown = [repr(server), repr(conn)]
        await server.drop_connections()
    logs = [r.getMessage() for r in caplog.records if r.name.startswith("trio_ws")]
    assert not [text for text in shown + logs if token in text]


async def test_wrong_path_is_rejected_with_404(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """Only the configured path is served."""
    with trio.fail_after(5):
        exc = await rejection(server, resource(server.issue_token(), "/api/v1/ws"))
    assert exc.status_code == 404


async def test_reject_next_then_success(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """reject_next(2, 503) rejects two handshakes before auth, then serves."""
    server.reject_next(2, 503, body=b"busy", headers=[(b"Retry-After", b"5")])
    with trio.fail_after(5):
        for _ in range(2):
            exc = await rejection(server, resource("whatever"))
            assert (exc.status_code, exc.body) == (503, b"busy")
            assert (b"retry-after", b"5") in exc.headers
        async with connect(server):
            assert len(server.connections) == 1
    assert (server.handshakes, server.rejections) == (3, 2)


def test_reject_next_validates_arguments() -> None:
    """Negative counts and non-error statuses are refused."""

    async def main() -> None:
        async with open_reference_server(listen=False) as server:
            with pytest.raises(ValueError, match="n must be"):
                server.reject_next(-1)
            with pytest.raises(ValueError, match="status"):
                server.reject_next(1, 101)

    trio.run(main)


# -- subscriptions and publishing --------------------------------------------


async def test_subscribe_is_acknowledged_and_recorded(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """Acks echo channel and device id; subscriptions are ordered, deduplicated."""
    with trio.fail_after(5):
        async with connect(server) as ws:
            assert await subscribe(ws, "alerts") == {
                "type": "subscribed",
                "channel": "alerts",
            }
            assert await subscribe(ws, "device", "d1") == {
                "type": "subscribed",
                "channel": "device",
                "device_id": "d1",
            }
            await subscribe(ws, "alerts")
            [conn] = server.connections
            assert conn.subscriptions == [("alerts", None), ("device", "d1")]
            await ws.send_message(
                '{"action":"unsubscribe","type":"device","device_id":"d1"}'
            )
            assert json.loads(await ws.get_message()) == {
                "type": "unsubscribed",
                "channel": "device",
                "device_id": "d1",
            }
            assert conn.subscriptions == [("alerts", None)]
            assert len(conn.received) == 4
            assert json.loads(conn.received[0]) == {
                "action": "subscribe",
                "type": "alerts",
            }
            assert conn.sent[0] == '{"type":"subscribed","channel":"alerts"}'


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"\x00binary", "binary frames are not supported"),
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"action": "publish", "type": "alerts"}', "unknown action"),
        ('{"action": "subscribe", "type": "weather"}', "unknown subscription type"),
        (
            '{"action": "subscribe", "type": "device"}',
            "device subscription needs a device_id",
        ),
    ],
)
async def test_invalid_client_message_gets_error_and_connection_stays(
    server: ReferenceServer, autojump_clock: MockClock, message: str | bytes, error: str
) -> None:
    """Invalid client messages get an error reply; the connection stays up."""
    with trio.fail_after(5):
        async with connect(server) as ws:
            await ws.send_message(message)
            assert json.loads(await ws.get_message()) == {
                "type": "error",
                "message": error,
            }
            assert (await subscribe(ws, "alerts"))["type"] == "subscribed"
            [conn] = server.connections
            assert conn.received[0] == message


async def test_publish_reaches_only_subscribers(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """Alerts go to alerts subscribers, telemetry to that device's subscribers."""
    with trio.fail_after(5):
        async with connect(server) as ws_a, connect(server) as ws_b, connect(server):
            await subscribe(ws_a, "alerts")
            await subscribe(ws_b, "device", "d1")
            alerts = [make_alert(1), make_alert(2, severity=5)]
            assert await server.publish_alerts(alerts) == 1
            assert json.loads(await ws_a.get_message()) == {
                "type": "alerts",
                "alerts": alerts,
            }
            metrics = {"temp": 21.5, "ok": True, "count": 3}
            stamp = "2024-01-01T00:00:00Z"
            assert await server.publish_telemetry("d1", metrics, timestamp=stamp) == 1
            assert await server.publish_telemetry("d2", {"temp": 1.0}) == 0
            assert json.loads(await ws_b.get_message()) == {
                "type": "telemetry",
                "device_id": "d1",
                "data": {"timestamp": stamp, "metrics": metrics},
            }
            a, b, c = server.connections
            assert len(a.sent) == len(b.sent) == 2
            assert c.sent == []


async def test_send_raw_and_send_error_reach_every_connection(
    server: ReferenceServer,
    autojump_clock: MockClock,
) -> None:
    """send_raw sends text or binary frames as is; send_error sends an error message."""
    with trio.fail_after(5):
        async with connect(server) as ws_a, connect(server) as ws_b:
            assert await server.send_raw("{garbage") == 2
            assert await server.send_raw(b"\xff\x00") == 2
            assert await server.send_error("boom") == 2
            for ws in (ws_a, ws_b):
                assert await ws.get_message() == "{garbage"
                assert await ws.get_message() == b"\xff\x00"
                assert json.loads(await ws.get_message()) == {
                    "type": "error",
                    "message": "boom",
                }


# -- ending connections ------------------------------------------------------


async def test_drop_connections_gives_1006(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """drop_connections closes the stream without a close frame: code 1006."""
    with trio.fail_after(5):
        async with connect(server) as ws:
            assert await server.drop_connections() == 1
            with pytest.raises(ConnectionClosed) as excinfo:
                await ws.get_message()
            assert excinfo.value.reason is not None
            assert excinfo.value.reason.code == 1006
    [conn] = server.all_connections
    assert (conn.closed, conn.close_code) == (True, 1006)
    assert server.connections == []
    assert await conn.send_raw("late") is False


async def test_close_connections_sends_the_code(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """close_connections(1012) does a close handshake the client sees as 1012."""
    with trio.fail_after(5):
        async with connect(server) as ws:
            assert await server.close_connections(1012, "restarting") == 1
            with pytest.raises(ConnectionClosed) as excinfo:
                await ws.get_message()
            assert excinfo.value.reason is not None
            assert (excinfo.value.reason.code, excinfo.value.reason.reason) == (
                1012,
                "restarting",
            )
    [conn] = server.all_connections
    assert (conn.close_code, conn.close_reason) == (1012, "restarting")


async def test_client_close_is_recorded(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """A client's close code is recorded once the server sees it."""
    with trio.fail_after(5):
        async with connect(server) as ws:
            await ws.aclose(4000, "bye")
            await server.wait_connections(0)
    [conn] = server.all_connections
    assert (conn.closed, conn.close_code, conn.close_reason) == (True, 4000, "bye")


async def test_client_vanishing_is_tolerated(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """Clients that vanish before or during the handshake do not hurt the server."""
    with trio.fail_after(5):
        stream = await server.transport.open_stream(HOST, 80, ssl_context=None)
        await stream.aclose()
        stream = await server.transport.open_stream(HOST, 80, ssl_context=None)
        await stream.send_all(b"GET /api/v2/ws HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.aclose()
        stream = await server.transport.open_stream(HOST, 80, ssl_context=None)
        await stream.send_all(b"\x16\x03\x01 not http at all\r\n\r\n")
        await trio.aclose_forcefully(stream)
        async with connect(server):
            assert len(server.connections) == 1
    assert len(server.all_connections) == 1


async def test_server_exit_drops_connections_and_refuses_new_ones(
    autojump_clock: MockClock,
) -> None:
    """Leaving the server's block drops every connection (1006) and refuses attempts."""
    with trio.fail_after(5):
        async with connect_after_exit() as (ws, server):
            with pytest.raises(ConnectionClosed) as excinfo:
                await ws.get_message()
            assert excinfo.value.reason is not None
            assert excinfo.value.reason.code == 1006
            assert server.all_connections[0].close_code == 1006
            with pytest.raises(ConnectionRefusedError):
                await server.transport.open_stream(HOST, 80, ssl_context=None)


@asynccontextmanager
async def connect_after_exit() -> AsyncIterator[
    tuple[WebSocketConnection, ReferenceServer]
]:
    """A client connected to a server whose block has already been left."""
    async with trio.open_nursery() as nursery:
        async with open_reference_server(listen=False) as server:
            stream = await server.transport.open_stream(HOST, 80, ssl_context=None)
            target = resource(server.issue_token())
            ws = await handshake(nursery, stream, target)
        yield ws, server
        await trio.aclose_forcefully(stream)


async def test_body_exception_is_not_wrapped(
    autojump_clock: MockClock,
) -> None:
    """An exception from the server's block propagates as itself."""
    with pytest.raises(KeyError, match="boom"):
        async with open_reference_server(listen=False):
            raise KeyError("boom")


# -- transport ---------------------------------------------------------------


async def test_fail_next_raises_oserror(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """fail_next makes the next attempts raise OSError, in script order."""
    transport = server.transport
    transport.fail_next(1)
    transport.fail_next(1, lambda: socket.gaierror(-2, "Name or service not known"))
    with pytest.raises(ConnectionRefusedError):
        await transport.open_stream("a", 1, ssl_context=None)
    with pytest.raises(socket.gaierror):
        await transport.open_stream("b", 2, ssl_context=None)
    with trio.fail_after(5):
        async with connect(server):
            pass
    assert (transport.attempts, transport.opened) == (3, 1)
    assert transport.targets == [("a", 1), ("b", 2), (HOST, 80)]


async def test_stall_next_never_answers_the_handshake(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """A stalled attempt gets a stream whose handshake never completes."""
    server.transport.stall_next(1)
    start = trio.current_time()
    stream = await server.transport.open_stream(HOST, 80, ssl_context=None)
    async with trio.open_nursery() as nursery:
        with trio.move_on_after(30) as scope:
            await handshake(nursery, stream, resource(server.issue_token()))
        nursery.cancel_scope.cancel()
    await stream.aclose()
    assert scope.cancelled_caught
    assert trio.current_time() - start == 30
    assert server.handshakes == 0
    with trio.fail_after(5):
        async with connect(server):
            assert server.handshakes == 1


def test_memory_transport_validates_counts() -> None:
    """Negative counts are refused."""
    transport = MemoryTransport(lambda stream: None)
    with pytest.raises(ValueError, match="n must be"):
        transport.fail_next(-1)
    with pytest.raises(ValueError, match="n must be"):
        transport.stall_next(-1)


# -- waiting and counting ----------------------------------------------------


async def test_wait_until_wakes_on_subscription(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """wait_subscribed returns as soon as the server holds the subscription."""
    woke_at: list[float] = []

    async def waiter() -> None:
        await server.wait_subscribed("device", "d9")
        woke_at.append(trio.current_time())

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            async with connect(server) as ws:
                await trio.sleep(5)
                await subscribe(ws, "device", "d8")
                assert woke_at == []
                await trio.sleep(5)
                await subscribe(ws, "device", "d9")
    assert woke_at == [10]


async def test_wait_until_sees_brief_states(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """A predicate that holds only between two changes still wakes the waiter."""
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.wait_connections, 1)
            await trio.testing.wait_all_tasks_blocked()
            async with connect(server):
                await server.drop_connections()
    assert server.connections == []
    await server.wait_handshakes(1)  # already true: returns at once


async def test_wait_until_raises_what_the_predicate_raises(
    server: ReferenceServer,
    autojump_clock: MockClock,
) -> None:
    """An exception from the predicate reaches the waiting task."""

    def predicate(server: ReferenceServer) -> bool:
        if server.handshakes:
            raise LookupError("bad predicate")
        return False

    with trio.fail_after(5), pytest.RaisesGroup(pytest.RaisesExc(LookupError)):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.wait_until, predicate)
            await trio.testing.wait_all_tasks_blocked()
            async with connect(server):
                pass


async def test_max_concurrent_connections(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """The peak of simultaneously open connections is recorded."""
    with trio.fail_after(5):
        async with connect(server):
            pass
        await server.wait_connections(0)
        async with connect(server):
            pass
        await server.wait_connections(0)
        assert server.max_concurrent_connections == 1
        async with connect(server), connect(server):
            assert server.max_concurrent_connections == 2
    assert [c.id for c in server.all_connections] == [1, 2, 3, 4]


# -- helpers and configuration -----------------------------------------------


def test_make_alert_is_complete_and_deterministic() -> None:
    """make_alert fills all 11 fields from alert_id and accepts overrides."""
    alert = make_alert(7, severity=1, details=None)
    assert list(alert) == list(trio_ws_bus.testing.ALERT_FIELDS)
    assert alert["alert_id"] == 7
    assert alert["created_at"] == "2024-01-01T00:00:07Z"
    assert (alert["severity"], alert["details"], alert["closed_at"]) == (1, None, None)
    assert make_alert(7) == make_alert(7) != make_alert(8)
    with pytest.raises(TypeError, match="sevrity"):
        make_alert(sevrity=1)


def test_issue_token_claims() -> None:
    """Tokens are HS256 JWTs with sub, iat and exp, signed with the server secret."""

    async def main() -> None:
        secret = "a-test-secret-that-is-at-least-32-bytes-long"
        async with open_reference_server(listen=False, secret=secret) as server:
            token = server.issue_token("bob", expires_in=60)
            claims = jwt.decode(token, secret, algorithms=["HS256"])
            assert claims["sub"] == "bob"
            assert claims["exp"] - claims["iat"] in (59, 60, 61)
            assert server.secret == secret

    trio.run(main)


async def test_short_secret_works_without_warnings(autojump_clock: MockClock) -> None:
    """A short HS256 secret is fine for a test server (PyJWT's warning is muted)."""
    async with open_reference_server(listen=False, secret="s3cret") as server:
        with trio.fail_after(5):
            async with connect(server):
                assert len(server.connections) == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "example.com", "10.0.0.1", ""])
def test_non_loopback_host_is_refused(host: str) -> None:
    """The server never binds to anything but loopback."""

    async def main() -> None:
        async with open_reference_server(host=host):
            pass  # pragma: no cover

    with pytest.raises(ValueError, match="loopback"):
        trio.run(main)


async def test_memory_only_server_has_no_url(
    server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """Url and port need a listening server."""
    assert not server.listening
    with pytest.raises(RuntimeError):
        _ = server.url
    with pytest.raises(RuntimeError):
        _ = server.port


def test_public_names() -> None:
    """The kit's public names are pinned."""
    assert sorted(trio_ws_bus.testing.__all__) == [
        "ALERT_FIELDS",
        "LOOPBACK_HOSTS",
        "MemoryTransport",
        "Opcode",
        "RawAnswer",
        "RawHttpServer",
        "ReferenceServer",
        "ServerConnection",
        "SubscriptionKey",
        "TokenLocation",
        "encode_frame",
        "http_response",
        "make_alert",
        "open_raw_http_server",
        "open_reference_server",
        "upgrade_response",
    ]
    for name in trio_ws_bus.testing.__all__:
        assert getattr(trio_ws_bus.testing, name) is not None


# -- pytest fixtures ---------------------------------------------------------


async def test_memory_fixture_under_autojump(
    ws_bus_memory_server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """ws_bus_memory_server works under a mock clock, without sockets."""
    assert not ws_bus_memory_server.listening
    with trio.fail_after(3605):
        async with connect(ws_bus_memory_server) as ws:
            await trio.sleep(3600)  # virtual: autojump makes this instant
            await subscribe(ws, "alerts")
            assert await ws_bus_memory_server.publish_alerts([make_alert()]) == 1
            assert json.loads(await ws.get_message())["alerts"][0]["alert_id"] == 1


async def test_loopback_fixture_end_to_end(ws_bus_server: ReferenceServer) -> None:
    """ws_bus_server serves real loopback sockets to open_websocket_url."""
    assert ws_bus_server.url == f"http://127.0.0.1:{ws_bus_server.port}"
    url = ws_bus_server.websocket_url(ws_bus_server.issue_token())
    assert url.startswith(f"ws://127.0.0.1:{ws_bus_server.port}/api/v2/ws?token=")
    with trio.fail_after(10):
        async with open_websocket_url(url) as ws:
            assert await subscribe(ws, "device", "d1") == {
                "type": "subscribed",
                "channel": "device",
                "device_id": "d1",
            }
            assert await ws_bus_server.publish_telemetry("d1", {"v": 1}) == 1
            message = json.loads(await ws.get_message())
            assert message["data"]["metrics"] == {"v": 1}
        await ws_bus_server.wait_connections(0)
    [conn] = ws_bus_server.all_connections
    assert conn.close_code == 1000


# -- misbehaviour knobs --------------------------------------------------------


def test_encode_frame_builds_exactly_what_it_is_told() -> None:
    """Lengths use 7, 16 or 64 bits; mask, reserved bits and FIN are honoured."""
    from trio_ws_bus.testing import Opcode, encode_frame

    assert encode_frame(Opcode.TEXT, b"hi") == b"\x81\x02hi"
    assert encode_frame(Opcode.PING, b"", fin=False, rsv=4) == b"\x49\x00"
    assert encode_frame(Opcode.BINARY, b"x" * 126)[:4] == b"\x82\x7e\x00\x7e"
    assert encode_frame(Opcode.BINARY, b"x" * 65536)[:10] == (
        b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"
    )
    masked = encode_frame(Opcode.TEXT, b"ab", mask=b"\x01\x02\x03\x04")
    assert masked == b"\x81\x82\x01\x02\x03\x04" + bytes([ord("a") ^ 1, ord("b") ^ 2])
    for bad in ({"opcode": 16}, {"rsv": 8}, {"mask": b"123"}):
        kwargs = {"opcode": 1, **bad}
        with pytest.raises(ValueError):  # noqa: PT011 - each message is specific
            encode_frame(**kwargs)  # type: ignore[arg-type]


def test_http_response_and_upgrade_response() -> None:
    """http_response sets Content-Length; upgrade_response computes the RFC accept."""
    from trio_ws_bus.testing import http_response, upgrade_response

    assert http_response(401, headers=[("X-A", "1")], body=b"no") == (
        b"HTTP/1.1 401 Unauthorized\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nno"
    )
    request = b"GET / HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in (
        upgrade_response(request)
    )
    with pytest.raises(ValueError, match="Sec-WebSocket-Key"):
        upgrade_response(b"GET / HTTP/1.1\r\n\r\n")


async def test_raw_http_server_answers_in_script_order(
    autojump_clock: MockClock,
) -> None:
    """Connection i gets answer i, the last repeats; requests are recorded."""
    from trio_ws_bus.testing import open_raw_http_server

    async with open_raw_http_server([b"first", b"then"], listen=False) as raw:
        answers = []
        for _ in range(3):
            stream = await raw.transport.open_stream("h", 1, ssl_context=None)
            await stream.send_all(b"GET /x HTTP/1.1\r\n\r\n")
            data = b""
            while chunk := await stream.receive_some():
                data += chunk
            answers.append(data)
            await stream.aclose()
        assert answers == [b"first", b"then", b"then"]
        assert raw.connections == 3
        assert raw.requests == [b"GET /x HTTP/1.1\r\n\r\n"] * 3
        with pytest.raises(RuntimeError):
            _ = raw.url


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"answers": []}, "empty"),
        ({"answers": b"x", "chunk_size": 0}, "chunk_size"),
        ({"answers": b"x", "host": "0.0.0.0"}, "loopback"),
    ],
)
async def test_raw_http_server_validates_arguments(
    options: dict[str, object], match: str
) -> None:
    """No empty script, no zero-byte chunks, loopback only."""
    from trio_ws_bus.testing import open_raw_http_server

    with pytest.raises(ValueError, match=match):
        async with open_raw_http_server(**options):  # type: ignore[arg-type]
            pass  # pragma: no cover


def test_close_next_validates_arguments() -> None:
    """close_next refuses negative counts and impossible close codes."""
    server = ReferenceServer(cast("trio.Nursery", None), secret="s", path="/p")
    with pytest.raises(ValueError, match="n must be"):
        server.close_next(-1)
    with pytest.raises(ValueError, match="code must be"):
        server.close_next(1, code=999)


async def test_tls_needs_a_socket() -> None:
    """ssl_context= with listen=False is refused (the memory transport has no TLS)."""
    import ssl

    with pytest.raises(ValueError, match="listen=True"):
        async with open_reference_server(
            listen=False, ssl_context=ssl.create_default_context()
        ):
            pass  # pragma: no cover


async def test_close_next_and_send_after_subscribe(autojump_clock: MockClock) -> None:
    """close_next ends accepted connections at once; send_after_subscribe follows."""
    async with open_reference_server(listen=False) as server:
        server.close_next(1, code=4001, reason="expired")
        with pytest.RaisesGroup(ConnectionClosed, allow_unwrapped=True):
            async with connect(server) as ws:
                await ws.get_message()
        assert server.all_connections[0].close_code == 4001
        server.send_after_subscribe("snapshot")
        async with connect(server) as ws:
            await ws.send_message('{"action":"subscribe","type":"alerts"}')
            assert json.loads(await ws.get_message())["type"] == "subscribed"
            assert await ws.get_message() == "snapshot"
