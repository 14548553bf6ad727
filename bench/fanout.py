"""Fan-out: one publisher, S subscribers on one topic, consumers draining.

Both variants deliver K messages to each of S consumer tasks and are timed
together, publishing and draining:

* the publisher sends K messages in batches of B (B = the subscription buffer,
  256, so nothing overflows), and after each batch waits until every consumer
  has received the whole batch (the last one to finish sets an event);
* each consumer task receives B messages per batch, with ``await receive()``
  (one checkpoint per message) or ``await receive_batch()`` (one per call).

Variants, interleaved round by round:

bus
    ``MessageBus.publish(topic, payload)`` to S ``Subscription`` objects made
    by ``bus.subscribe(topic)`` (default options); consumers await
    ``Subscription.receive()``.
bus, receive_batch()
    The same, consumers await ``Subscription.receive_batch()`` until they have
    the batch (the first message wakes them, the rest is buffered by then).
bare
    The floor: a loop of ``send_nowait(payload)`` over S Trio memory channels
    of the same buffer size; consumers await ``MemoryReceiveChannel.receive()``.

The result is nanoseconds per delivery (elapsed / (K * S)); the goals compare
throughputs: bare time / bus time, and, at one subscriber, receive() time /
receive_batch() time (what a consumer saves by taking the buffer at once).
K is chosen so that K * S is about the same for every S.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import trio
import trio.testing

from trio_ws_bus import MessageBus, Subscription
from trio_ws_bus._bus import DEFAULT_MAX_BUFFER

from ._common import Config, Result, Row, at_least, interleave, ratio

NAME = "fanout"
TOPIC = "telemetry:sensor-0042"
GOAL_SUBSCRIBERS = 100
GOAL = 0.7
BATCH_GOAL = 3.0
BUS = "bus"
BUS_BATCH = "bus, receive_batch()"
BATCH = DEFAULT_MAX_BUFFER


class _Batches:
    """What the publisher and the consumers share: the current batch's event."""

    def __init__(self, consumers: int) -> None:
        self.consumers = consumers
        self.pending = consumers
        self.done = trio.Event()

    def next_batch(self) -> None:
        self.pending = self.consumers
        self.done = trio.Event()

    def finish_batch(self) -> None:
        self.pending -= 1
        if not self.pending:
            self.done.set()


async def _consume(
    receive: Callable[[], Awaitable[Any]], batches: int, shared: _Batches
) -> None:
    for _ in range(batches):
        for _ in range(BATCH):
            await receive()
        shared.finish_batch()


async def _consume_batches(
    subscription: Subscription[Any], batches: int, shared: _Batches
) -> None:
    receive_batch = subscription.receive_batch
    for _ in range(batches):
        received = 0
        while received < BATCH:
            received += len(await receive_batch())
        shared.finish_batch()


async def _run(variant: str, subscribers: int, batches: int) -> float:
    """One timed run; returns seconds per delivery."""
    shared = _Batches(subscribers)
    payload = object()
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        if variant != "bare":
            bus = MessageBus()
            for _ in range(subscribers):
                subscription = await stack.enter_async_context(bus.subscribe(TOPIC))
                if variant == BUS:
                    nursery.start_soon(_consume, subscription.receive, batches, shared)
                else:
                    nursery.start_soon(_consume_batches, subscription, batches, shared)
            publish = bus.publish

            def send_batch() -> None:
                for _ in range(BATCH):
                    publish(TOPIC, payload)

        else:
            sends = []
            for _ in range(subscribers):
                send, receive = trio.open_memory_channel[object](BATCH)
                stack.enter_context(send)
                stack.enter_context(receive)
                sends.append(send.send_nowait)
                nursery.start_soon(_consume, receive.receive, batches, shared)

            def send_batch() -> None:
                for _ in range(BATCH):
                    for send_nowait in sends:
                        send_nowait(payload)

        # Every consumer is waiting in receive() before the clock starts.
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        for _ in range(batches):
            shared.next_batch()
            send_batch()
            await shared.done.wait()
        elapsed = time.perf_counter() - start
    return elapsed / (batches * BATCH * subscribers)


def run(config: Config) -> Result:
    """Measure the three variants at 1, 10, 100 and 1000 subscribers."""
    deliveries = config.pick(200_000, 30_000, 1_000)
    counts = config.pick((1, 10, 100, 1000), (1, 10, 100, 1000), (1, 10))
    result = Result(
        NAME,
        "Fan-out: one publisher, S subscribers on one topic, consumers draining",
        f"K messages per subscriber, published in batches of {BATCH} (the buffer "
        "size), each batch drained by every consumer task before the next; "
        "publishing and draining timed together; ns per delivery (K x S).",
        params={"deliveries": deliveries, "batch": BATCH, "rounds": config.rounds},
    )
    for subscribers in counts:
        batches = max(1, deliveries // (subscribers * BATCH))
        variants: dict[str, Callable[[], float]] = {
            name: functools.partial(trio.run, _run, name, subscribers, batches)
            for name in ("bare", BUS, BUS_BATCH)
        }
        samples = interleave(variants, config.rounds)
        group = f"S={subscribers} (K={batches * BATCH})"
        for name, values in samples.items():
            result.rows.append(
                Row(group, name, "ns/delivery", [v * 1e9 for v in values])
            )
        value, low, high = ratio(result.row(group, BUS), result.row(group, BUS_BATCH))
        if subscribers == 1:
            result.goals.append(
                at_least(
                    "per item at 1 subscriber: receive() / receive_batch()",
                    value,
                    BATCH_GOAL,
                    f"per-round {low:.2f}-{high:.2f}",
                )
            )
        else:
            result.notes.append(
                f"{group}: receive() costs {value:.2f}x receive_batch() per item "
                f"(per-round {low:.2f}-{high:.2f})."
            )
        if subscribers == GOAL_SUBSCRIBERS:
            value, low, high = ratio(
                result.row(group, "bare"), result.row(group, "bus")
            )
            result.goals.append(
                at_least(
                    f"fan-out at {subscribers} subscribers: bus / bare send_nowait",
                    value,
                    GOAL,
                    f"per-round {low:.2f}-{high:.2f}",
                )
            )
    return result
