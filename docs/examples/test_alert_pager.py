"""How-to (testing): tests of alert_pager with the trio_ws_bus test kit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from alert_pager import page_severe_alerts
from trio.testing import MockClock

from trio_ws_bus import Transport, open_websocket_manager
from trio_ws_bus.testing import ReferenceServer, make_alert

# Not needed when the project sets trio_mode = true for pytest-trio.
pytestmark = pytest.mark.trio


@asynccontextmanager
async def running_pager(
    url: str, token: str, transport: Transport | None = None
) -> AsyncIterator[trio.MemoryReceiveChannel[str]]:
    """Run the pager against a server; yield the channel its pages go to."""
    send, pages = trio.open_memory_channel[str](10)
    async with (
        open_websocket_manager(url, token=token, transport=transport) as manager,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(page_severe_alerts, manager, send)
        yield pages
        nursery.cancel_scope.cancel()


async def test_pages_only_severe_alerts(
    ws_bus_memory_server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """Severity 4 and above is paged; the rest is not."""
    server = ws_bus_memory_server
    token = server.issue_token()
    async with running_pager("http://localhost", token, server.transport) as pages:
        await server.wait_subscribed("alerts")
        await server.publish_alerts(
            [make_alert(1, severity=2), make_alert(2, severity=5, summary="Overheat")]
        )
        with trio.fail_after(1):
            assert await pages.receive() == "device-1: Overheat"
        await trio.sleep(60)  # virtual time: free under autojump_clock
        with pytest.raises(trio.WouldBlock):
            pages.receive_nowait()


async def test_keeps_paging_after_a_drop(
    ws_bus_memory_server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """A dropped connection is back 1 s later, subscribed again."""
    server = ws_bus_memory_server
    token = server.issue_token()
    async with running_pager("http://localhost", token, server.transport) as pages:
        await server.wait_subscribed("alerts")
        await server.drop_connections()
        await server.wait_subscribed("alerts")  # on the new connection
        assert trio.current_time() == 1.0  # the first retry waits exactly 1 s
        await server.publish_alerts([make_alert(3, severity=4)])
        assert await pages.receive() == "device-1: Alert 3"


async def test_connects_through_failures(
    ws_bus_memory_server: ReferenceServer, autojump_clock: MockClock
) -> None:
    """Two refused attempts and a 503: retries at 1, 2 and 4 s later."""
    server = ws_bus_memory_server
    server.transport.fail_next(2)
    server.reject_next(1, 503)
    token = server.issue_token()
    async with running_pager("http://localhost", token, server.transport):
        await server.wait_subscribed("alerts")
        assert trio.current_time() == 1.0 + 2.0 + 4.0
        assert server.transport.attempts == 4
        assert server.rejections == 1


async def test_over_a_real_socket(ws_bus_server: ReferenceServer) -> None:
    """The same app over a loopback socket (real clock: cap the wait)."""
    server = ws_bus_server
    with trio.fail_after(10):
        async with running_pager(server.url, server.issue_token()) as pages:
            await server.wait_subscribed("alerts")
            await server.publish_alerts([make_alert(4, severity=5)])
            assert await pages.receive() == "device-1: Alert 4"
