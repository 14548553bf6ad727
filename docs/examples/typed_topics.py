"""How-to: define your own typed topics on the bus.

Run: python docs/examples/typed_topics.py. No server: the bus alone.
"""

from __future__ import annotations

import attrs
import trio

from trio_ws_bus import MessageBus, Topic


@attrs.frozen
class Order:
    """The payload of the ``orders`` topic: frozen, so subscribers may share it."""

    order_id: int
    device_id: str
    quantity: int


#: A typed topic: a str at run time, ``Topic[Order]`` for the type checker.
ORDERS: Topic[Order] = Topic("orders")


def order_topic(device_id: str) -> Topic[Order]:
    """One topic per device, typed as well: ``orders:<device_id>``."""
    return Topic(f"orders:{device_id}")


def log_order(order: Order) -> None:
    """A handler mypy checks against the topic: it must take an Order."""
    print(f"handler: order {order.order_id} x{order.quantity}")


async def main() -> None:
    bus = MessageBus()
    bus.on(ORDERS, log_order)
    async with bus.subscribe(order_topic("pump-1")) as pump_orders:
        bus.publish(ORDERS, Order(1, "pump-1", 3))
        bus.publish(order_topic("pump-1"), Order(2, "pump-1", 5))
        order = await pump_orders.receive()  # mypy knows: an Order
        print(f"pump-1: order {order.order_id} x{order.quantity}")
    print("orders is a str:", ORDERS == "orders", isinstance(ORDERS, str))


if __name__ == "__main__":
    trio.run(main)
