"""Backpressure and ``async for``.

The bus's drain, pressure and lagging, and the iteration that takes buffered
items without a trip through the scheduler per item.
"""

from __future__ import annotations

import math

import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_ws_bus import SCHEDULE_INTERVAL, MessageBus, Overflow


async def test_a_subscription_is_congested_from_half_its_buffer() -> None:
    """Congested turns on at max_buffer // 2 and off at a quarter."""
    bus = MessageBus()
    async with bus.subscribe("t", max_buffer=8) as subscription:
        for n in range(3):
            bus.publish("t", n)
        assert not bus.congested
        bus.publish("t", 3)
        assert bus.congested
        assert subscription.buffered == 4
        subscription.receive_nowait()  # 3 left, above a quarter (2)
        assert bus.congested
        subscription.receive_nowait()  # 2 left: drained
        assert not bus.congested
        assert not subscription.lagging


async def test_drain_waits_until_the_subscriber_catches_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """drain() returns once the congested subscription drained, not before."""
    bus = MessageBus()
    async with bus.subscribe("t", max_buffer=8) as subscription:
        for n in range(4):
            bus.publish("t", n)
        got: list[int] = []

        async def consumer() -> None:
            await trio.sleep(3)
            got.extend(await subscription.receive_batch(max_items=2))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            await bus.drain(patience=10)
            assert trio.current_time() == pytest.approx(3.0)
        assert got == [0, 1]
        assert not bus.congested
        assert not subscription.lagging


async def test_a_subscriber_that_outlasts_the_patience_lags_until_it_drains(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After patience, a congested subscription lags until it drains.

    Meanwhile it does not hold publishers back and loses by its policy.
    """
    bus = MessageBus()
    async with bus.subscribe("t", max_buffer=4, overflow=Overflow.DROP_OLDEST) as sub:
        bus.publish("t", 0)
        bus.publish("t", 1)
        assert bus.congested
        await bus.drain(patience=2)
        assert trio.current_time() == pytest.approx(2.0)
        assert sub.lagging
        assert not bus.congested
        for n in range(2, 10):
            bus.publish("t", n)
        assert not bus.congested  # lagging: never congested again meanwhile
        assert (sub.buffered, sub.dropped) == (4, 6)
        assert [sub.receive_nowait() for _ in range(3)] == [6, 7, 8]  # 1 left
        assert not sub.lagging
        bus.publish("t", 10)
        assert bus.congested  # back in the group: the next burst waits again


async def test_drain_zero_never_waits_and_is_a_checkpoint() -> None:
    """patience=0: the congested subscriptions lag at once."""
    bus = MessageBus()
    async with bus.subscribe("t", max_buffer=2) as subscription:
        bus.publish("t", 1)
        assert bus.congested
        with trio.CancelScope() as scope:
            scope.cancel()
            await bus.drain(0)  # a checkpoint: the cancellation lands here
        assert scope.cancelled_caught
        await bus.drain(0)
        assert subscription.lagging


@pytest.mark.parametrize("patience", [-1.0, math.nan])
async def test_drain_refuses_a_negative_patience(patience: float) -> None:
    """A negative or NaN patience is a ValueError."""
    with pytest.raises(ValueError, match="patience"):
        await MessageBus().drain(patience)


async def test_closing_a_congested_subscription_releases_the_publisher(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A waiting drain() returns when the congested subscription closes."""
    bus = MessageBus()
    async with trio.open_nursery() as nursery:
        async with bus.subscribe("t", max_buffer=2) as subscription:
            bus.publish("t", 1)
            nursery.start_soon(bus.drain, 100.0)
            await trio.sleep(1)
            assert bus.congested
        await trio.lowlevel.checkpoint()  # the context exited: drain() can return
    assert trio.current_time() == pytest.approx(1.0)
    assert not bus.congested
    assert subscription.buffered == 0


# --- async for ---------------------------------------------------------------


class Ticker:
    """A task that counts its turns: how often the others let it run."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            self.ticks += 1
            await trio.lowlevel.checkpoint()


async def test_async_for_takes_buffered_items_without_a_trip_each() -> None:
    """A buffer of 100 items: the loop lets another task run far fewer times."""
    bus = MessageBus()
    ticker = Ticker()
    async with bus.subscribe("t") as subscription, trio.open_nursery() as nursery:
        for n in range(100):
            bus.publish("t", n)
        nursery.start_soon(ticker.run)
        await trio.lowlevel.checkpoint()
        before = ticker.ticks
        got = []
        async for item in subscription:
            got.append(item)
            if len(got) == 100:
                break
        during = ticker.ticks - before
        nursery.cancel_scope.cancel()
    assert got == list(range(100))
    assert during <= 2  # receive() would have let it run 100 times


async def test_async_for_yields_at_least_every_schedule_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A loop whose items take time passes through the scheduler as it goes."""
    bus = MessageBus()
    ticker = Ticker()
    async with bus.subscribe("t") as subscription, trio.open_nursery() as nursery:
        for n in range(160):
            bus.publish("t", n)
        nursery.start_soon(ticker.run)
        await trio.lowlevel.checkpoint()
        before = ticker.ticks
        count = 0
        async for _ in subscription:
            autojump_clock.jump(SCHEDULE_INTERVAL / 4)  # a quarter ms of work
            count += 1
            if count == 160:
                break
        nursery.cancel_scope.cancel()
    # 40 ms of work: the clock is read every 16 items (4 ms), so >= 9 turns.
    assert ticker.ticks - before >= 9


async def test_a_cancelled_async_for_loses_nothing() -> None:
    """Cancelled between items: the next item is still buffered.

    Leaving with break keeps what was not handed out.
    """
    bus = MessageBus()
    async with bus.subscribe("t") as subscription:
        for n in range(5):
            bus.publish("t", n)
        got = []
        with trio.CancelScope() as scope:
            async for item in subscription:
                got.append(item)
                if item == 1:
                    scope.cancel()  # the next __anext__ raises Cancelled
        assert scope.cancelled_caught
        assert got == [0, 1]
        async for item in subscription:
            got.append(item)
            break
        assert got == [0, 1, 2]
        assert [subscription.receive_nowait() for _ in range(2)] == [3, 4]


async def test_async_for_ends_after_clear_with_what_was_buffered() -> None:
    """bus.clear(): the loop gets the buffered items, then ends."""
    bus = MessageBus()
    async with bus.subscribe("t") as subscription:
        bus.publish("t", 1)
        bus.publish("t", 2)
        bus.clear()
        assert [item async for item in subscription] == [1, 2]
