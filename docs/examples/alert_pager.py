"""How-to (testing): the app under test pages on-call for severe alerts.

It takes a running manager instead of opening one, so tests can hand it a
manager connected to the reference server.
"""

from __future__ import annotations

import trio

from trio_ws_bus import WebSocketManager


async def page_severe_alerts(
    manager: WebSocketManager,
    pager: trio.MemorySendChannel[str],
    *,
    min_severity: int = 4,
) -> None:
    """Send one page per alert of at least ``min_severity``, forever."""
    async with manager.alerts() as alerts:
        async for batch in alerts:
            for alert in batch:
                if alert.severity >= min_severity:
                    await pager.send(f"{alert.device_id}: {alert.summary}")
