"""End to end over real loopback sockets: the manager against the reference server.

Every test here runs with HTTP_PROXY, HTTPS_PROXY and ALL_PROXY naming a dead
proxy, as on a corporate machine or CI runner: loopback is never proxied from
the environment, so the manager connects directly all the same.
"""

from __future__ import annotations

import pytest
import trio

from trio_ws_bus import Backoff, ConnectionStatus, Telemetry, open_websocket_manager
from trio_ws_bus.testing import make_alert, open_reference_server

pytestmark = pytest.mark.usefixtures("dead_proxy_env")


async def test_receive_drop_reconnect_replay_receive_over_loopback() -> None:
    """Connect, receive alerts and telemetry, survive a drop, replay, receive again."""
    with trio.fail_after(20):
        async with open_reference_server() as server:
            assert server.url.startswith("http://127.0.0.1:")
            async with (
                open_websocket_manager(
                    server.url, token=server.issue_token, backoff=Backoff(base=0.05)
                ) as manager,
                manager.alerts() as alerts,
                manager.telemetry("pump-1") as pump,
            ):
                await server.wait_subscribed("device", "pump-1")
                await server.wait_subscribed("alerts")
                await server.publish_alerts([make_alert(1), make_alert(2)])
                await server.publish_telemetry("pump-1", {"rpm": 1200, "running": True})
                assert [a.alert_id for a in await alerts.receive()] == [1, 2]
                first = await pump.receive()
                assert isinstance(first, Telemetry)
                assert first.metrics == {"rpm": 1200, "running": True}

                assert await server.drop_connections() == 1
                await server.wait_until(
                    lambda s: (
                        len(s.connections) == 1
                        and set(s.connections[0].subscriptions)
                        == {("alerts", None), ("device", "pump-1")}
                    )
                )
                await manager.wait_connected()
                await server.publish_alerts([make_alert(3)])
                await server.publish_telemetry("pump-1", {"rpm": 900})
                assert [a.alert_id for a in await alerts.receive()] == [3]
                assert (await pump.receive()).metrics == {"rpm": 900}
                stats = manager.statistics()
                assert (stats.connections, stats.reconnects) == (2, 1)
                assert stats.status is ConnectionStatus.CONNECTED
            assert server.all_connections[-1].close_code == 1000
            assert server.max_concurrent_connections == 1
