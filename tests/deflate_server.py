"""A minimal backend that negotiates permessage-deflate, for end-to-end tests.

trio-websocket's server cannot negotiate extensions, so the reference server
never compresses. This one drives websockets' sans-I/O ``ServerProtocol``
from one Trio task per connection, with permessage-deflate enabled: it accepts
every handshake (any token), acknowledges ``subscribe``, records what it saw,
and sends alerts and telemetry when told to. Reach it over loopback
(:attr:`DeflateServer.url`) or, under a mock clock, through
:attr:`DeflateServer.transport`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from trio_ws_bus.testing import MemoryTransport, SubscriptionKey

__all__ = ["DeflateConnection", "DeflateServer", "open_deflate_server"]

RECEIVE_SIZE = 65536


class DeflateConnection:
    """One accepted connection: its handshake, what it negotiated and received."""

    def __init__(
        self, protocol: ServerProtocol, stream: trio.abc.Stream, request: Request
    ) -> None:
        self._protocol = protocol
        self._stream = stream
        self._send_lock = trio.Lock()
        self.request = request
        """The handshake request (``path`` with the query, ``headers``)."""
        self.extensions = [extension.name for extension in protocol.extensions]
        """The names of the negotiated extensions, e.g. ``["permessage-deflate"]``."""
        self.received: list[str] = []
        """Every text message the client sent."""
        self.subscriptions: list[SubscriptionKey] = []
        """What the client subscribed to, in order."""

    async def send_json(self, message: Mapping[str, Any]) -> None:
        """Send ``message`` as one JSON text message (compressed if negotiated)."""
        self._protocol.send_text(json.dumps(message).encode())
        await self._flush()

    async def _flush(self) -> None:
        """Write what the protocol wants sent; its end-of-stream marker closes."""
        async with self._send_lock:
            for data in self._protocol.data_to_send():
                if data:
                    await self._stream.send_all(data)
                else:
                    await self._stream.aclose()

    def _on_text(self, text: str) -> dict[str, Any] | None:
        """Record one client message; the ack to send for a subscribe."""
        self.received.append(text)
        message = json.loads(text)
        if message.get("action") != "subscribe":
            return None
        key: SubscriptionKey = (message["type"], message.get("device_id"))
        self.subscriptions.append(key)
        ack = {"type": "subscribed", "channel": key[0]}
        return ack if key[1] is None else {**ack, "device_id": key[1]}


class DeflateServer:
    """Made by :func:`open_deflate_server`; see the module docstring."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._changed = trio.lowlevel.ParkingLot()
        self.port: int | None = None
        """The loopback port, once listening."""
        self.requests: list[Request] = []
        """Every handshake request, in order."""
        self.connections: list[DeflateConnection] = []
        """Every accepted connection, in order."""
        self.transport = MemoryTransport(
            lambda stream: nursery.start_soon(self._serve, stream)
        )
        """An in-memory way in, for tests under a mock clock."""

    @property
    def url(self) -> str:
        """The base URL to give a client."""
        return f"http://127.0.0.1:{self.port}"

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds (checked at every change)."""
        while not predicate():
            await self._changed.park()

    async def wait_subscribed(self, kind: str, device_id: str | None = None) -> None:
        """Wait until some connection subscribed to ``(kind, device_id)``."""
        await self.wait_until(
            lambda: any((kind, device_id) in c.subscriptions for c in self.connections)
        )

    async def publish_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Send one ``alerts`` message to every connection."""
        for conn in self.connections:
            await conn.send_json({"type": "alerts", "alerts": list(alerts)})

    async def publish_telemetry(
        self, device_id: str, timestamp: str, metrics: Mapping[str, Any]
    ) -> None:
        """Send one ``telemetry`` message to every connection."""
        data = {"timestamp": timestamp, "metrics": dict(metrics)}
        for conn in self.connections:
            await conn.send_json(
                {"type": "telemetry", "device_id": device_id, "data": data}
            )

    async def _serve(self, stream: trio.abc.Stream) -> None:
        protocol = ServerProtocol(extensions=[ServerPerMessageDeflateFactory()])
        conn: DeflateConnection | None = None
        async with stream:
            while True:
                try:
                    data = await stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if data:
                    protocol.receive_data(data)
                else:
                    protocol.receive_eof()
                for event in protocol.events_received():
                    if isinstance(event, Request):
                        self.requests.append(event)
                        protocol.send_response(protocol.accept(event))
                        conn = DeflateConnection(protocol, stream, event)
                        if protocol.state is State.OPEN:
                            self.connections.append(conn)
                    elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                        assert conn is not None
                        ack = conn._on_text(bytes(event.data).decode())
                        if ack is not None:
                            protocol.send_text(json.dumps(ack).encode())
                    self._changed.unpark_all()
                if conn is not None:  # before the request, nothing is due
                    await conn._flush()
                if not data:
                    return


@asynccontextmanager
async def open_deflate_server() -> AsyncIterator[DeflateServer]:
    """Run a :class:`DeflateServer` on 127.0.0.1 (any free port) and in memory."""
    async with trio.open_nursery() as nursery:
        server = DeflateServer(nursery)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        server.port = listeners[0].socket.getsockname()[1]
        await nursery.start(trio.serve_listeners, server._serve, listeners)
        yield server
        nursery.cancel_scope.cancel()
