"""Test kit for code that uses trio_ws_bus: a reference server and fixtures.

:func:`open_reference_server` runs a real trio-websocket server that speaks the
backend side of the protocol: it checks the JWT in the handshake, acknowledges
``subscribe``/``unsubscribe``, publishes alerts and telemetry to subscribed
connections, records what clients did, and injects failures (HTTP rejections,
dropped streams, close codes, bad frames). Reach it over loopback sockets
(:attr:`ReferenceServer.url`) or, without sockets and under a mock clock,
through its in-memory transport (:attr:`ReferenceServer.transport`, a
:class:`MemoryTransport` that can also fail or stall connection attempts)::

    async with open_reference_server(listen=False) as server:
        async with trio_ws_bus.open_websocket_manager(
            "http://backend.test",
            token=server.issue_token(),
            transport=server.transport,
        ) as manager:
            async with manager.alerts() as alerts:
                await server.wait_subscribed("alerts")
                await server.publish_alerts([make_alert(1)])
                batch = await alerts.receive()

The pytest plugin (registered for anyone who installs trio-ws-bus) provides the
``ws_bus_server`` and ``ws_bus_memory_server`` fixtures; they are async
fixtures, so tests need pytest-trio. This subpackage needs PyJWT:
``pip install 'trio-ws-bus[testing]'``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .._util import fixup_module_metadata

if TYPE_CHECKING:
    from ._connection import (
        ServerConnection as ServerConnection,
        SubscriptionKey as SubscriptionKey,
        TokenLocation as TokenLocation,
    )
    from ._factories import ALERT_FIELDS as ALERT_FIELDS, make_alert as make_alert
    from ._frames import (
        Opcode as Opcode,
        encode_frame as encode_frame,
        http_response as http_response,
        upgrade_response as upgrade_response,
    )
    from ._memory import MemoryTransport as MemoryTransport
    from ._raw import (
        RawAnswer as RawAnswer,
        RawHttpServer as RawHttpServer,
        open_raw_http_server as open_raw_http_server,
    )
    from ._server import (
        LOOPBACK_HOSTS as LOOPBACK_HOSTS,
        ReferenceServer as ReferenceServer,
        open_reference_server as open_reference_server,
    )

__all__ = [
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

# The names are imported on first use (PEP 562): pytest loads our plugin, and
# so this package, for everyone who installs trio-ws-bus, and that must cost
# little and work without PyJWT until a reference server is actually used.
_SOURCES = {
    "ALERT_FIELDS": "._factories",
    "LOOPBACK_HOSTS": "._server",
    "MemoryTransport": "._memory",
    "Opcode": "._frames",
    "RawAnswer": "._raw",
    "RawHttpServer": "._raw",
    "encode_frame": "._frames",
    "http_response": "._frames",
    "open_raw_http_server": "._raw",
    "upgrade_response": "._frames",
    "ReferenceServer": "._server",
    "ServerConnection": "._connection",
    "SubscriptionKey": "._connection",
    "TokenLocation": "._connection",
    "make_alert": "._factories",
    "open_reference_server": "._server",
}

if not TYPE_CHECKING:  # for type checkers, the imports above are the truth

    def __getattr__(name: str) -> Any:
        if name not in _SOURCES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        # All at once, so every public class already has its public
        # __module__ when another name's signature mentions it.
        namespace = {
            public: getattr(importlib.import_module(source, __name__), public)
            for public, source in _SOURCES.items()
        }
        fixup_module_metadata(__name__, namespace)
        globals().update(namespace)
        return namespace[name]

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
