"""How-to: buffer sizes and overflow policies, seen from a slow subscriber.

Run: python docs/examples/buffers.py
"""

from __future__ import annotations

import trio

from trio_ws_bus import (
    Alert,
    MessageBus,
    Overflow,
    SubscriberLagged,
    Subscription,
    WebSocketManager,
    open_websocket_manager,
)
from trio_ws_bus.testing import make_alert, open_reference_server

PUMP = "pump-1"


def drain(subscription: Subscription[int]) -> list[int | str]:
    """Receive what is buffered, noting a SubscriberLagged where it is raised."""
    received: list[int | str] = []
    while True:
        try:
            received.append(subscription.receive_nowait())
        except SubscriberLagged as exc:
            received.append(f"lagged({exc.missed})")
        except trio.WouldBlock:
            return received


async def three_policies() -> None:
    """Publish 1..5 to three subscribers that have room for 2 and never read."""
    bus = MessageBus()
    async with (
        bus.subscribe("n", max_buffer=2, overflow=Overflow.DROP_OLDEST) as oldest,
        bus.subscribe("n", max_buffer=2, overflow=Overflow.DROP_NEWEST) as newest,
        bus.subscribe("n", max_buffer=2, overflow=Overflow.ERROR) as error,
    ):
        delivered = [bus.publish("n", n) for n in range(1, 6)]
        print(f"publish() returned {delivered}")
        for subscription in (oldest, newest, error):
            name, dropped = subscription.overflow.name, subscription.dropped
            print(f"{name:<11} got {drain(subscription)}, dropped={dropped}")
        print(f"bus: {bus.statistics().dropped} dropped in all")


async def show_pressure(manager: WebSocketManager) -> None:
    """A display that only needs the newest reading: ``max_buffer=1``."""
    async with manager.telemetry(PUMP, max_buffer=1) as readings:
        async for reading in readings:
            print(f"display: {reading.metrics['pressure_bar']} bar")
            await trio.sleep(1)  # redraws at most once a second
        # (never reached: the demo cancels this task)


async def keep_alerts(manager: WebSocketManager) -> None:
    """Store every alert; after a loss, reload the open alerts instead."""
    async with manager.alerts(max_buffer=2, overflow=Overflow.ERROR) as alerts:
        while True:
            try:
                async for batch in alerts:
                    await store(batch)
            except SubscriberLagged as exc:
                print(f"missed {exc.missed} batches: reloading the open alerts")
                await reload_open_alerts()


async def store(batch: tuple[Alert, ...]) -> None:
    """Stand-in for a database write; the first one is slow."""
    print(f"stored alerts {[alert.alert_id for alert in batch]}")
    if batch[0].alert_id == 1:
        await trio.sleep(1)


async def reload_open_alerts() -> None:
    """Stand-in for fetching the current state from the backend's REST API."""
    await trio.lowlevel.checkpoint()


async def slow_consumers() -> None:
    """Both consumers fall behind a burst of 5 messages.

    ``subscriber_wait=0`` shows the policies at work at once: with the default,
    the reader would first wait half a second for each consumer.
    """
    async with (
        open_reference_server(listen=False) as server,
        open_websocket_manager(
            "http://localhost",
            token=server.issue_token(),
            transport=server.transport,
            subscriber_wait=0,
        ) as manager,
    ):
        with trio.move_on_after(2.5):  # the demo's length
            async with trio.open_nursery() as nursery:
                nursery.start_soon(show_pressure, manager)
                nursery.start_soon(keep_alerts, manager)
                await server.wait_subscribed("device", PUMP)
                await server.wait_subscribed("alerts")
                for n in range(1, 6):
                    await server.publish_alerts([make_alert(n)])
                    await server.publish_telemetry(PUMP, {"pressure_bar": n})
        print(f"bus: {manager.bus.statistics().dropped} dropped in all")


async def in_batches() -> None:
    """Take everything buffered at once: one checkpoint per batch."""
    bus = MessageBus()
    async with bus.subscribe("n") as numbers:
        for n in range(1, 7):
            bus.publish("n", n)
        bus.clear()  # nothing more will come: the loop ends after these
        async for batch in numbers.batches(max_items=4):
            print(f"got {batch}")


async def main() -> None:
    """The three demos."""
    print("-- the bus alone")
    await three_policies()
    print("-- behind a manager")
    await slow_consumers()
    print("-- in batches")
    await in_batches()


if __name__ == "__main__":
    trio.run(main)
