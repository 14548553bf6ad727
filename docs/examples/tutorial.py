"""Tutorial: a Trio app that watches a pump's alerts and telemetry.

Run: python docs/examples/tutorial.py (needs ``pip install 'trio-ws-bus[testing]'``)
"""

from __future__ import annotations

import trio

from trio_ws_bus import (
    CONNECTION_TOPIC,
    ConnectionEvent,
    TokenProvider,
    WebSocketManager,
    open_websocket_manager,
)
from trio_ws_bus.testing import ReferenceServer, make_alert, open_reference_server

PUMP = "pump-1"


# --- the app -----------------------------------------------------------------


def show_status(event: ConnectionEvent) -> None:
    """Print each connection status change (a bus handler: quick, synchronous)."""
    if event.retry_in is not None:
        print(f"status: retry {event.retry_count} in {event.retry_in:g} s")
    elif event.code is not None:
        print(f"status: {event.status} (code {event.code}, {event.reason})")
    else:
        print(f"status: {event.status}")


async def show_telemetry(manager: WebSocketManager, device_id: str) -> None:
    """Print every reading of one device."""
    async with manager.telemetry(device_id) as readings:
        async for reading in readings:
            print(f"reading: {reading.device_id} {reading.metrics}")


async def watch_alerts(manager: WebSocketManager, device_id: str) -> None:
    """Print the device's alerts; return once one of them is closed."""
    async with manager.alerts() as alerts:
        async for batch in alerts:
            for alert in batch:
                if alert.device_id != device_id:
                    continue
                print(f"alert: #{alert.alert_id} [{alert.severity}] {alert.summary}")
                if alert.closed_at is not None:
                    print(f"alert: #{alert.alert_id} closed at {alert.closed_at}")
                    return


async def watch_pump(url: str, token: TokenProvider) -> None:
    """The whole app: watch the pump until its alert is closed."""
    async with open_websocket_manager(url, token=token) as manager:
        manager.bus.on(CONNECTION_TOPIC, show_status)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(show_telemetry, manager, PUMP)
            await watch_alerts(manager, PUMP)
            nursery.cancel_scope.cancel()  # stop show_telemetry too


# --- the backend's part, played by the reference server ------------------------


async def play_backend(server: ReferenceServer) -> None:
    """An alert, a few readings, a server restart, then the alert is closed."""
    await server.wait_subscribed("alerts")
    await server.wait_subscribed("device", PUMP)
    alert = make_alert(7, device_id=PUMP, severity=4, summary="Pressure above 8 bar")
    await server.publish_alerts([alert])
    for pressure in (8.4, 7.9, 6.1):
        await server.publish_telemetry(PUMP, {"pressure_bar": pressure})
    # A restart: the client reconnects after 1 s and subscribes again.
    await server.close_connections(1012, "service restart")
    await server.wait_subscribed("alerts")
    await server.publish_alerts([{**alert, "closed_at": "2024-01-01T00:10:00Z"}])


async def main() -> None:
    """Start a reference server on 127.0.0.1 and run the app against it."""
    async with open_reference_server() as server, trio.open_nursery() as nursery:
        nursery.start_soon(play_backend, server)
        await watch_pump(server.url, server.issue_token())


if __name__ == "__main__":
    trio.run(main)
