"""What the manager hands out ends with it, and no verb has a hidden side effect.

Against the reference server over in-memory streams, under ``MockClock``
autojump: a consumer that would hang shows up as a ``TooSlowError``.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing
from helpers import MEMORY_URL, manager_on

from trio_ws_bus import (
    ALERTS_TOPIC,
    Telemetry,
    WebSocketManager,
    telemetry_topic,
)
from trio_ws_bus.testing import make_alert, open_reference_server


@pytest.mark.parametrize("kind", ["alerts", "telemetry"])
async def test_closing_the_manager_ends_a_waiting_consumer(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    """A task waiting in ``async for`` gets what was buffered, then its loop ends."""
    received: list[object] = []
    ended = trio.Event()

    async with (
        open_reference_server(listen=False) as server,
        trio.open_nursery() as nursery,
    ):
        async with manager_on(server) as (manager, _):

            async def consume(*, task_status: trio.TaskStatus[None]) -> None:
                opened = (
                    manager.alerts() if kind == "alerts" else manager.telemetry("d1")
                )
                async with opened as subscription:
                    task_status.started()
                    async for item in subscription:
                        received.append(item)
                ended.set()

            await manager.wait_connected()
            await nursery.start(consume)
            if kind == "alerts":
                await server.wait_subscribed("alerts")
                await server.publish_alerts([make_alert(1)])
            else:
                await server.wait_subscribed("device", "d1")
                await server.publish_telemetry("d1", {"t": 1.0})
            await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(1):
            await ended.wait()
    assert len(received) == 1
    assert isinstance(received[0], tuple if kind == "alerts" else Telemetry)


async def test_a_receive_on_an_ended_subscription_raises_end_of_channel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After the context exits, ``receive()`` raises ``EndOfChannel``, not a hang."""
    async with open_reference_server(listen=False) as server, AsyncExitStack() as stack:
        async with manager_on(server) as (manager, _):
            # Entered inside the manager's context, left after it: outlives it.
            subscription = await stack.enter_async_context(manager.alerts())
        with trio.fail_after(1), pytest.raises(trio.EndOfChannel):
            await subscription.receive()


@pytest.mark.parametrize("kind", ["alerts", "telemetry"])
async def test_a_closed_manager_refuses_subscriptions_before_any_side_effect(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    """alerts()/telemetry()/subscribe() on a closed manager raise; nothing changes."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, _):
            await manager.wait_connected()
    topic = ALERTS_TOPIC if kind == "alerts" else telemetry_topic("d1")
    opened = manager.alerts() if kind == "alerts" else manager.telemetry("d1")
    with pytest.raises(trio.ClosedResourceError, match="context has exited"):
        async with opened:
            pytest.fail(
                "a closed manager handed out a subscription"
            )  # pragma: no cover
    with pytest.raises(trio.ClosedResourceError, match="context has exited"):
        manager.subscribe(
            "alerts" if kind == "alerts" else "device",
            None if kind == "alerts" else "d1",
        )
    assert manager.subscriptions == []
    assert manager.bus.listener_count(topic) == 0
    assert manager.bus.statistics().subscriptions == 0


async def test_async_with_subscribe_fails_naming_alerts_and_subscribes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``async with manager.subscribe(...)``: a TypeError that names the right verbs."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, _):
            await manager.wait_connected()
            with pytest.raises(
                TypeError, match=r"manager\.alerts\(\).*telemetry\(device_id\)"
            ):
                async with manager.subscribe("alerts"):
                    pytest.fail(
                        "subscribe() worked as a context manager"
                    )  # pragma: no cover
            assert manager.subscriptions == []
            # A subscription that already existed is left as it was.
            manager.subscribe("device", "d1")
            with pytest.raises(TypeError):
                async with manager.subscribe("device", "d1"):
                    pass  # pragma: no cover
            assert manager.subscriptions == [("device", "d1")]
            await server.wait_subscribed("device", "d1")
            await trio.testing.wait_all_tasks_blocked()
            sent = [m for m in server.connections[0].received if isinstance(m, str)]
            assert sent == ['{"action":"subscribe","type":"device","device_id":"d1"}']


def test_constructing_a_manager_directly_names_the_factory() -> None:
    """``WebSocketManager(url, token=...)`` points to ``open_websocket_manager``."""
    with pytest.raises(TypeError, match=r"open_websocket_manager\(url, token=\.\.\.\)"):
        WebSocketManager(MEMORY_URL, token="t")  # type: ignore[call-arg, arg-type]
