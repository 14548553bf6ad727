"""Routing scale: what one ``publish()`` costs as topics and patterns pile up.

Every variant publishes the same telemetry payload on ``telemetry:sensor-0042``,
which has one subscriber; between batches of 256 publishes (the buffer size)
that subscriber is drained with ``receive_nowait()`` outside the timed part, so
every publish is a plain delivery (no overflow), as in a steady state.

Variants, interleaved round by round:

1 topic
    the target topic is the only one on the bus.
10,000 topics
    9,999 other topics (``telemetry:dev-<i>``) each have an idle subscriber
    (registered, never published to, nobody receiving).
10 patterns
    1 topic plus 10 prefix patterns that do not match it (``alerts:<i>:*``),
    each with an idle subscriber: every publish checks them.

Result: nanoseconds per ``publish()`` call.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

import trio

from trio_ws_bus import MessageBus
from trio_ws_bus._bus import DEFAULT_MAX_BUFFER

from ._common import Config, Result, Row, at_most, interleave, ratio

NAME = "routing"
TOPIC = "telemetry:sensor-0042"
BATCH = DEFAULT_MAX_BUFFER
GOAL = 1.1

ONE = "1 topic"
MANY = "10,000 topics"
PATTERNS = "1 topic + 10 patterns (no match)"


async def _run(other_topics: int, patterns: int, batches: int) -> float:
    bus = MessageBus()
    payload = object()
    async with AsyncExitStack() as stack:
        target = await stack.enter_async_context(bus.subscribe(TOPIC))
        for index in range(other_topics):
            await stack.enter_async_context(bus.subscribe(f"telemetry:dev-{index}"))
        for index in range(patterns):
            await stack.enter_async_context(bus.subscribe(f"alerts:{index}:*"))
        publish = bus.publish
        drain = target.receive_nowait
        inner = range(BATCH)
        elapsed = 0
        for _ in range(batches):
            start = time.perf_counter_ns()
            for _ in inner:
                publish(TOPIC, payload)
            elapsed += time.perf_counter_ns() - start
            for _ in inner:
                drain()
    return elapsed / (batches * BATCH)


def run(config: Config) -> Result:
    """Measure publish cost with 1 vs 10,000 topics and 0 vs 10 patterns."""
    batches = config.pick(2_000, 200, 4)
    topics = config.pick(10_000, 10_000, 100)
    result = Result(
        NAME,
        "Routing scale: publish cost as topics and patterns pile up",
        f"{batches * BATCH:,} publishes per sample on a topic with one subscriber, "
        f"drained between batches of {BATCH} outside the timing; the other "
        "topics and patterns each hold an idle subscriber; ns per publish().",
        params={
            "publishes": batches * BATCH,
            "topics": topics,
            "rounds": config.rounds,
        },
    )
    many = MANY if topics == 10_000 else f"{topics:,} topics"
    variants: dict[str, Callable[[], float]] = {
        ONE: functools.partial(trio.run, _run, 0, 0, batches),
        many: functools.partial(trio.run, _run, topics - 1, 0, batches),
        PATTERNS: functools.partial(trio.run, _run, 0, 10, batches),
    }
    samples = interleave(variants, config.rounds)
    for name, values in samples.items():
        result.rows.append(Row("publish", name, "ns/publish", values))
    value, low, high = ratio(result.row("publish", many), result.row("publish", ONE))
    result.goals.append(
        at_most(
            f"publish with {topics:,} topics / with 1 topic",
            value,
            GOAL,
            f"per-round {low:.2f}-{high:.2f}",
        )
    )
    value, low, high = ratio(
        result.row("publish", PATTERNS), result.row("publish", ONE)
    )
    result.notes.append(
        f"10 non-matching patterns cost {value:.2f}x of 0 patterns "
        f"(per-round {low:.2f}-{high:.2f}); no goal."
    )
    return result
