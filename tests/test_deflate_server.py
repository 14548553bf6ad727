"""The deflate test server, checked against websockets' own Trio client."""

from __future__ import annotations

import json
import random

import pytest
from deflate_server import open_deflate_server

from trio_ws_bus.testing import make_alert

# websockets.trio arrived in websockets 17.0, which needs Python 3.11.
connect = pytest.importorskip("websockets.trio.client").connect


def incompressible(size: int) -> str:
    """Text that deflate cannot shrink below half: ``size`` random hex digits."""
    return random.Random(size).randbytes(size // 2).hex()


async def test_negotiates_deflate_and_delivers_a_large_message_intact() -> None:
    """The server accepts permessage-deflate, acks a subscribe, sends >64 KiB."""
    alert = make_alert(1, summary=incompressible(300_000))
    async with open_deflate_server() as server:
        url = server.url.replace("http", "ws") + "/api/v2/ws?token=t"
        async with connect(url) as ws:
            await ws.send(json.dumps({"action": "subscribe", "type": "alerts"}))
            assert json.loads(await ws.recv()) == {
                "type": "subscribed",
                "channel": "alerts",
            }
            await server.publish_alerts([alert])
            assert json.loads(await ws.recv()) == {"type": "alerts", "alerts": [alert]}
        [conn] = server.connections
        assert conn.extensions == ["permessage-deflate"]
        assert conn.request.path == "/api/v2/ws?token=t"
        assert conn.subscriptions == [("alerts", None)]


@pytest.mark.parametrize("device_id", [None, "d1"])
async def test_without_compression_no_extension_is_offered(
    device_id: str | None,
) -> None:
    """A client that offers nothing gets no extension; device acks echo the id."""
    async with open_deflate_server() as server:
        async with connect(server.url.replace("http", "ws"), compression=None) as ws:
            kind = "alerts" if device_id is None else "device"
            request = {"action": "subscribe", "type": kind, "device_id": device_id}
            await ws.send(json.dumps(request))
            await server.wait_subscribed(kind, device_id)
            ack = json.loads(await ws.recv())
            assert ack.get("device_id") == device_id
        [handshake] = server.requests
        assert "Sec-WebSocket-Extensions" not in handshake.headers
        assert server.connections[0].extensions == []
