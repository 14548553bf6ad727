"""The message bus on its own: two subscribers, a handler, and overflow.

Run: python examples/bus_basics.py
"""

from __future__ import annotations

import trio

from trio_ws_bus import MessageBus, Overflow, telemetry_topic


async def main() -> None:
    """Publish a few telemetry readings and show who got what."""
    bus = MessageBus()
    bus.on("telemetry:*", lambda reading: print("handler saw", reading))
    topic = telemetry_topic("pump-1")
    async with (
        bus.subscribe(topic) as everything,
        bus.subscribe(topic, max_buffer=2, overflow=Overflow.DROP_OLDEST) as latest_two,
    ):
        for rpm in (900, 1000, 1100, 1200):
            delivered = bus.publish(topic, {"rpm": rpm})
            print(f"published rpm={rpm} to {delivered} listeners")
        print("everything:", [everything.receive_nowait() for _ in range(4)])
        print("latest two:", [latest_two.receive_nowait() for _ in range(2)])
        print("dropped by the small buffer:", latest_two.dropped)


if __name__ == "__main__":
    trio.run(main)
