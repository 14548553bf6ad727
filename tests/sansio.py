"""A :class:`ClientSession` driven bytes in, bytes out: no sockets, no Trio.

:class:`Client` wraps a session whose router publishes into a list, so a test
sees what was routed (``(topic, payload)``, with :data:`OPENED` where
``on_open`` ran). :class:`Peer` wires it to websockets' own sans-I/O server;
:func:`client_frames` reads back what the client wrote for hand-built tests.
"""

from __future__ import annotations

import json
import logging
import struct
from typing import Any

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame
from websockets.http11 import Request
from websockets.server import ServerProtocol

from trio_ws_bus._ledger import SubscriptionLedger
from trio_ws_bus._routing import MessageCounters, Router
from trio_ws_bus._session import (
    ClientSession,
    Finished,
    HandshakeOptions,
    MessageRejected,
    Opened,
    SessionEvent,
)
from trio_ws_bus.testing import make_alert, upgrade_response

#: One alerts message and one telemetry reading, as the server sends them.
ALERTS = json.dumps({"type": "alerts", "alerts": [make_alert(1)]})
TELEMETRY = json.dumps(
    {
        "type": "telemetry",
        "device_id": "d1",
        "data": {"timestamp": "ts", "metrics": {"t": 1.5}},
    }
)
TOKEN = "secret-token"
URL = f"ws://127.0.0.1:8080/api/v2/ws?token={TOKEN}"
#: Stands in ``Client.routed`` where ``on_open`` ran.
OPENED = ("<opened>", None)
#: No extension offered: what the server sends reaches the client as is.
PLAIN = HandshakeOptions(compression=None)
SETTINGS: dict[str, Any] = {
    "max_message_size": 1 << 20,
    "ping_interval": None,
    "ping_timeout": 10.0,
    "close_timeout": 5.0,
}
_logger = logging.getLogger("tests.sansio")


class Client:
    """A session whose events are routed into :attr:`routed` (see module docs)."""

    def __init__(
        self,
        options: HandshakeOptions = PLAIN,
        url: str = URL,
        *,
        logger: logging.Logger = _logger,
        **settings: Any,
    ) -> None:
        self.routed: list[tuple[str, object]] = []
        self.events: list[SessionEvent] = []
        self.counters = MessageCounters()
        self.ledger = SubscriptionLedger()
        self.router = Router(self._publish, self.counters, str, _logger)
        self.session = ClientSession(
            url, options, now=0.0, logger=logger, **{**SETTINGS, **settings}
        )
        self.request = self.output()
        """The handshake request the session queued at construction."""

    def _publish(self, topic: str, payload: object) -> int:
        self.routed.append((topic, payload))
        return 1

    def receive(self, data: bytes, now: float = 0.0) -> list[SessionEvent]:
        """Feed ``data``; route what the session returns; return it too."""
        return self.route(self.session.receive_data(data, now), now)

    def eof(self, now: float = 0.0) -> list[SessionEvent]:
        """Feed the end of the stream; route what the session returns."""
        return self.route(self.session.receive_eof(now), now)

    def route(self, events: list[SessionEvent], now: float) -> list[SessionEvent]:
        """Act on events as the pump does (without its backpressure)."""
        self.events.extend(events)
        for event in events:
            if isinstance(event, str):
                self.router.text(event, now)
            elif isinstance(event, bytes):
                self.router.binary(event, now)
            elif isinstance(event, MessageRejected):
                self.router.refused(event.reason, event.raw, now)
            elif isinstance(event, Opened):
                self.routed.append(OPENED)
                self.ledger.connection_opened()
            else:
                assert isinstance(event, Finished)
        return events

    def flush(self) -> None:
        """Send what the ledger says the server lacks, as the pump's writer does."""
        if self.session.is_open:
            self.session.send_requests(self.ledger.take_pending(1 << 30))

    def output(self) -> bytes:
        """Take everything the session wants written."""
        return b"".join(self.session.data_to_send())

    def accept(self, then: bytes = b"", now: float = 0.0) -> None:
        """Feed a valid 101 answer to :attr:`request`, and ``then`` with it."""
        self.receive(upgrade_response(self.request) + then, now)

    @property
    def topics(self) -> list[str]:
        """The topics routed so far, in order."""
        return [topic for topic, _ in self.routed]


def client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Decode the client's (masked) frames into ``(opcode, payload)``."""
    frames = []
    while data:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, 2)
            offset = 4
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, 2)
            offset = 10
        mask, body = data[offset : offset + 4], data[offset + 4 :]
        payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(body[:length]))
        frames.append((opcode, payload))
        data = body[length:]
    return frames


def close_payload(code: int, reason: str = "") -> bytes:
    """A close frame's payload: the code, then the UTF-8 reason."""
    return code.to_bytes(2, "big") + reason.encode()


class Peer:
    """A :class:`Client` and websockets' ``ServerProtocol``, wired together.

    The server accepts the handshake (choosing among ``subprotocols``,
    negotiating permessage-deflate when offered) and records what it got.
    """

    def __init__(
        self, client: Client | None = None, subprotocols: list[str] | None = None
    ) -> None:
        self.client = client or Client()
        self.server = ServerProtocol(
            extensions=[ServerPerMessageDeflateFactory()],
            subprotocols=subprotocols,  # type: ignore[arg-type]
        )
        self.server.receive_data(self.client.request)
        self.request: Request | None = None
        self.received: list[Frame] = []
        """Every frame the server received, decompressed."""
        self.wire: list[bytes] = []
        """Every chunk the server wrote, as written."""

    def exchange(self, now: float = 0.0) -> None:
        """Move bytes both ways until neither side has anything to send."""
        client, server = self.client, self.server
        for _ in range(100):
            self._server_events()
            moved = False
            for data in server.data_to_send():
                moved = True
                self.wire.append(data)
                if data:
                    client.receive(data, now)
                else:
                    client.eof(now)
            for data in client.session.data_to_send():
                moved = True
                server.receive_data(data)
            if not moved:
                return
        raise AssertionError("the peers never went quiet")

    def _server_events(self) -> None:
        for event in self.server.events_received():
            if isinstance(event, Request):
                self.request = event
                self.server.send_response(self.server.accept(event))
            elif isinstance(event, Frame):
                self.received.append(event)

    @property
    def texts(self) -> list[str]:
        """The text messages the server received."""
        return [
            str(frame.data, "utf-8") for frame in self.received if frame.opcode == 1
        ]
