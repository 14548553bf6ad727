"""Connect through a proxy: the how-to's example (run by tests/test_proxy.py)."""

from __future__ import annotations

import trio_ws_bus


async def first_reading(url: str, token: str, proxy: str) -> trio_ws_bus.Telemetry:
    """Connect to ``url`` through ``proxy`` and return pump-1's next reading."""
    transport = trio_ws_bus.ProxyTransport(proxy)  # e.g. "http://user:pw@proxy:3128"
    async with (
        trio_ws_bus.open_websocket_manager(
            url, token=token, transport=transport
        ) as manager,
        manager.telemetry("pump-1") as readings,
    ):
        reading = await readings.receive()
        assert isinstance(reading, trio_ws_bus.Telemetry)
        return reading
