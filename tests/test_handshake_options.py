"""End to end through ``open_websocket_manager``: each handshake option on the wire.

Headers, ``User-Agent``, ``Origin``, subprotocols and the bearer token are
checked against the reference server (trio-websocket) over 127.0.0.1;
permessage-deflate against the deflate server (websockets' ``ServerProtocol``),
since trio-websocket's server negotiates no extension.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from deflate_server import DeflateServer, open_deflate_server
from helpers import SCENARIO_CAP, TIMESTAMP
from trio.testing import MockClock

import trio_ws_bus
from trio_ws_bus import ManagerStatistics, WebSocketManager, open_websocket_manager
from trio_ws_bus.testing import (
    ALERT_FIELDS,
    ReferenceServer,
    ServerConnection,
    make_alert,
    open_reference_server,
)

# Every test here but one runs on the real clock, each within SCENARIO_CAP.


@asynccontextmanager
async def connected(url: str, **options: Any) -> AsyncIterator[WebSocketManager]:
    """A manager on ``url`` that has finished its first handshake."""
    async with open_websocket_manager(url, **options) as manager:
        with trio.fail_after(SCENARIO_CAP):
            await manager.wait_connected()
        yield manager


async def handshake(
    server: ReferenceServer, **options: Any
) -> tuple[ServerConnection, ManagerStatistics]:
    """The server's record of one manager's handshake, and the manager's view."""
    options.setdefault("token", server.issue_token())
    async with connected(server.url, **options) as manager:
        [conn] = server.connections
        return conn, manager.statistics()


def header_values(conn: ServerConnection, name: str) -> list[str]:
    return [value for key, value in conn.request_headers if key == name]


# -- headers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"X-Tenant": "t1", "X-Trace": "abc"},
            [("x-tenant", "t1"), ("x-trace", "abc")],
        ),
        ([("X-Trace", "a"), ("X-Trace", "b")], [("x-trace", "a"), ("x-trace", "b")]),
    ],
)
async def test_additional_headers_arrive(
    ws_bus_server: ReferenceServer, headers: Any, expected: list[tuple[str, str]]
) -> None:
    """A mapping or a list of pairs (repeats kept, in order) reaches the server."""
    conn, _ = await handshake(ws_bus_server, additional_headers=headers)
    names = {name for name, _ in expected}
    assert [pair for pair in conn.request_headers if pair[0] in names] == expected


@pytest.mark.parametrize(
    ("options", "header", "expected"),
    [
        ({}, "user-agent", [f"trio-ws-bus/{trio_ws_bus.__version__}"]),
        ({"user_agent": "pager/2.1"}, "user-agent", ["pager/2.1"]),
        ({"user_agent": None}, "user-agent", []),
        ({}, "origin", []),
        ({"origin": "http://127.0.0.1:3000"}, "origin", ["http://127.0.0.1:3000"]),
    ],
)
async def test_user_agent_and_origin(
    ws_bus_server: ReferenceServer,
    options: dict[str, Any],
    header: str,
    expected: list[str],
) -> None:
    """User-Agent is trio-ws-bus/<version>, replaced or none; Origin only if given."""
    conn, _ = await handshake(ws_bus_server, **options)
    assert header_values(conn, header) == expected


# -- subprotocols ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(["v1", "v2"], "v1"), (["v9", "v2"], "v2"), (["v9"], None), (None, None)],
)
async def test_negotiated_subprotocol_shows_in_statistics(
    offered: list[str] | None, chosen: str | None
) -> None:
    """The server's choice among what the client offered is in ``statistics()``."""
    async with open_reference_server(subprotocols=("v2", "v1")) as server:
        conn, stats = await handshake(server, subprotocols=offered)
    assert conn.offered_subprotocols == tuple(offered or ())
    assert conn.subprotocol == chosen
    assert stats.subprotocol == chosen


# -- token location ----------------------------------------------------------------


async def test_token_in_the_query_by_default(ws_bus_server: ReferenceServer) -> None:
    """The default puts the token in the query and sends no ``Authorization``."""
    token = ws_bus_server.issue_token()
    conn, _ = await handshake(ws_bus_server, token=token)
    assert (conn.token, conn.token_location) == (token, "query")
    assert header_values(conn, "authorization") == []


async def test_token_in_the_header_and_never_in_query_or_logs(
    ws_bus_server: ReferenceServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``token_location="header"``: a bearer header, no ``token=``, no token logged."""
    caplog.set_level(logging.DEBUG)
    token = ws_bus_server.issue_token()
    conn, _ = await handshake(ws_bus_server, token=token, token_location="header")
    assert (conn.token, conn.token_location) == (token, "header")
    assert header_values(conn, "authorization") == [f"Bearer {token}"]
    assert conn.request_target == ws_bus_server.path
    assert "token=" not in conn.request_target
    assert caplog.records  # DEBUG logging did capture the connection's life
    assert [r.name for r in caplog.records if token in repr(vars(r))] == []


# -- compression -----------------------------------------------------------------


def incompressible(size: int) -> str:
    """``size`` random hex digits: deflate leaves more than half of them."""
    return random.Random(size).randbytes(size // 2).hex()


async def exchange(
    manager: WebSocketManager, server: DeflateServer
) -> list[trio_ws_bus.Telemetry]:
    """Send a small and a large alert, then a reading; return the readings got.

    The alerts are checked here, field by field.
    """
    sent = [make_alert(1), make_alert(2, summary=incompressible(200_000))]
    async with manager.alerts() as alerts, manager.telemetry("d1") as telemetry:
        with trio.fail_after(SCENARIO_CAP):
            await server.wait_subscribed("alerts")
            await server.wait_subscribed("device", "d1")
            for alert in sent:
                await server.publish_alerts([alert])
            await server.publish_telemetry("d1", TIMESTAMP, {"t": 21.5})
            received = [*await alerts.receive(), *await alerts.receive()]
            readings = [await telemetry.receive()]
    assert [{f: getattr(a, f) for f in ALERT_FIELDS} for a in received] == sent
    return readings


async def test_deflate_is_negotiated_and_messages_arrive_intact() -> None:
    """By default permessage-deflate is offered, agreed, and >64 KiB survives it."""
    async with open_deflate_server() as server:
        async with connected(server.url, token="t") as manager:
            readings = await exchange(manager, server)
            assert manager.statistics().compression == "deflate"
    [conn] = server.connections
    assert conn.extensions == ["permessage-deflate"]
    assert [(r.device_id, r.timestamp, r.metrics) for r in readings] == [
        ("d1", "2024-01-01T00:00:00Z", {"t": 21.5})
    ]


async def test_compression_none_offers_no_extension(autojump_clock: MockClock) -> None:
    """``compression=None`` offers nothing (in memory, under a mock clock)."""
    async with open_deflate_server() as server:
        async with open_websocket_manager(
            "http://127.0.0.1", token="t", transport=server.transport, compression=None
        ) as manager:
            await manager.wait_connected()
            await exchange(manager, server)
            assert manager.statistics().compression is None
    [request] = server.requests
    assert "Sec-WebSocket-Extensions" not in request.headers
    assert server.connections[0].extensions == []


async def test_server_that_declines_deflate_leaves_it_off(
    ws_bus_server: ReferenceServer,
) -> None:
    """The reference server negotiates no extension: compression is ``None``."""
    async with connected(ws_bus_server.url, token=ws_bus_server.issue_token()) as m:
        async with m.alerts() as alerts:
            with trio.fail_after(SCENARIO_CAP):
                await ws_bus_server.wait_subscribed("alerts")
                await ws_bus_server.publish_alerts([make_alert(7)])
                [alert] = await alerts.receive()
        assert alert.alert_id == 7
        assert m.statistics().compression is None
