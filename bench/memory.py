"""Memory: what an idle subscriber costs, and what a stalled one can hold.

Idle subscribers (tracemalloc)
    10,000 subscriber tasks, each entering ``bus.subscribe(topic)`` and waiting
    in ``async for`` on its subscription: the bytes allocated per subscriber
    while all of them wait (subscription, its channel, the task and its
    coroutine frames, the bus's routing entries). Variants: all on one topic
    (fan-out), each on its own topic (one per device; the topic strings are
    made before measuring), and the floor: a task waiting on a bare Trio memory
    channel of the same buffer size.

Stalled subscriber (tracemalloc, end to end)
    The out-of-process server pushes N telemetry messages through the manager
    to two subscribers of the device's topic: one never receives (stalled, the
    default buffer of 256 and ``Overflow.DROP_OLDEST``), the other counts to N.
    Peak traced memory above the level at the first message, for N and N/10:
    the peak must not grow with N, since the stalled subscriber holds at most
    its buffer.
"""

from __future__ import annotations

import functools
import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

import trio_ws_bus
from trio_ws_bus import MessageBus
from trio_ws_bus._bus import DEFAULT_MAX_BUFFER

from ._common import Config, Result, Row, at_most, interleave, quiet_logs, tracing
from ._frames import DEVICE_ID
from ._server_proc import server_process

NAME = "memory"
TOPIC = "telemetry:sensor-0042"
IDLE_GOAL = 4096
PEAK_GROWTH_GOAL = 1.2

ONE_TOPIC = "bus, one topic"
OWN_TOPIC = "bus, one topic each"
BARE = "bare memory channel + task"


async def _bus_subscriber(bus: MessageBus, topic: str) -> None:
    async with bus.subscribe(topic) as subscription:
        async for _ in subscription:
            pass


async def _bare_subscriber(receive: trio.MemoryReceiveChannel[Any]) -> None:
    async with receive:
        async for _ in receive:
            pass


async def _idle(variant: str, count: int) -> float:
    """Bytes allocated per idle subscriber."""
    topics = [f"telemetry:dev-{i}" for i in range(count)]
    bus = MessageBus()
    sends = []
    gc.collect()
    with tracing():
        before = tracemalloc.get_traced_memory()[0]
        async with trio.open_nursery() as nursery:
            for index in range(count):
                if variant == BARE:
                    send, receive = trio.open_memory_channel[Any](DEFAULT_MAX_BUFFER)
                    sends.append(send)
                    nursery.start_soon(_bare_subscriber, receive)
                else:
                    topic = TOPIC if variant == ONE_TOPIC else topics[index]
                    nursery.start_soon(_bus_subscriber, bus, topic)
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            nursery.cancel_scope.cancel()
    return (after - before) / count


async def _stalled(url: str, n: int) -> tuple[int, int, int]:
    """Peak and retained bytes above the first message; what the stalled one lost."""
    async with trio_ws_bus.open_websocket_manager(url, token="bench") as manager:
        topic = trio_ws_bus.telemetry_topic(DEVICE_ID)
        async with (
            manager.bus.subscribe(topic) as stalled,
            manager.telemetry(DEVICE_ID) as counting,
        ):
            await counting.receive()
            gc.collect()
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            count = 1
            while count + counting.dropped < n:
                await counting.receive()
                count += 1
            current, peak = tracemalloc.get_traced_memory()
            return peak - base, current - base, stalled.dropped


def _stalled_run(url: str, n: int) -> tuple[int, int, int]:
    gc.collect()
    with tracing():
        return trio.run(_stalled, url, n)


def run(config: Config) -> Result:
    """Measure idle subscribers and the stalled subscriber's peak."""
    count = config.pick(10_000, 10_000, 200)
    flow = config.pick(100_000, 20_000, 500)
    result = Result(
        NAME,
        "Memory: idle subscribers and a stalled subscriber",
        "tracemalloc. Idle: bytes allocated per subscriber task waiting in "
        f"'async for' on its subscription, {count:,} of them. Stalled: peak "
        "traced memory above the level at the first message while N telemetry "
        "messages flow end to end, one subscriber never receiving.",
        params={"idle_subscribers": count, "flow": flow, "buffer": DEFAULT_MAX_BUFFER},
    )
    rounds = min(config.rounds, 3)  # allocation counts barely vary
    variants: dict[str, Callable[[], float]] = {
        name: functools.partial(trio.run, _idle, name, count)
        for name in (ONE_TOPIC, OWN_TOPIC, BARE)
    }
    samples = interleave(variants, rounds, warmup=0)
    for name, values in samples.items():
        result.rows.append(Row("idle subscriber", name, "bytes", values))
    for name in (ONE_TOPIC, OWN_TOPIC):
        result.goals.append(
            at_most(
                f"bytes per idle subscriber ({name})",
                result.row("idle subscriber", name).median,
                IDLE_GOAL,
            )
        )

    with quiet_logs(), server_process() as server:
        peaks: dict[int, int] = {}
        for n in (flow // 10, flow):
            url = server.url("http", mode="push", kind="telemetry", n=n)
            peak, retained, dropped = _stalled_run(url, n)
            peaks[n] = peak
            group = f"stalled subscriber, N={n:,}"
            result.rows.append(Row(group, "peak above first message", "bytes", [peak]))
            result.rows.append(
                Row(
                    group,
                    "retained at the end",
                    "bytes",
                    [retained],
                    f"the stalled subscriber dropped {dropped:,} "
                    f"(buffer {DEFAULT_MAX_BUFFER})",
                )
            )
    small, large = peaks[flow // 10], peaks[flow]
    result.goals.append(
        at_most(
            f"stalled subscriber: peak at N={flow:,} / peak at N={flow // 10:,}",
            large / small,
            PEAK_GROWTH_GOAL,
        )
    )
    return result
