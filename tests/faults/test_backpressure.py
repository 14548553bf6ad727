"""Backpressure: a stalled subscriber costs only itself; leavers leave no trace.

Everything runs the real protocol (trio-websocket over in-memory streams) in
virtual time. The scenarios are plain functions so that the canary sweep
(``test_canary_sweep.py``) can run them again with a hostile token.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import ssl
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, ParamSpec, TypeVar

import pytest
import trio
import trio.testing
from helpers import CONNECTED, CONNECTING, MEMORY_URL, TIMESTAMP

from trio_ws_bus import (
    ALERTS_TOPIC,
    CONNECTION_TOPIC,
    ConnectionEvent,
    MessageBus,
    Overflow,
    SubscriberLagged,
    Subscription,
    TokenProvider,
    open_websocket_manager,
    telemetry_topic,
)
from trio_ws_bus.testing import ReferenceServer, make_alert, open_reference_server

Show = Callable[[object], None]
"""Receives every object a scenario could show a user (see the canary sweep)."""


def ignore(_: object) -> None:
    """The default :data:`Show`: look at nothing."""


P = ParamSpec("P")
R = TypeVar("R")


def within(
    seconds: float,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Fail a scenario still running after ``seconds``.

    In virtual time, so a scenario that hangs fails at once instead of
    heart-beating (and logging) through the test's seven-day cap.
    """

    def decorate(scenario: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(scenario)
        async def bounded(*args: P.args, **kwargs: P.kwargs) -> R:
            with trio.fail_after(seconds):
                return await scenario(*args, **kwargs)

        return bounded

    return decorate


class Progress:
    """A counter one task can wait on; it wakes only once the target is reached."""

    def __init__(self) -> None:
        self.count = 0
        self._target = math.inf
        self._reached = trio.Event()

    def add(self, n: int = 1) -> None:
        self.count += n
        if self.count >= self._target:
            self._reached.set()

    async def wait_for(self, target: int) -> None:
        if self.count >= target:
            await trio.lowlevel.checkpoint()
            return
        self._target, self._reached = target, trio.Event()
        await self._reached.wait()


class PingTap(trio.abc.Stream):
    """Forwards to a stream and counts the WebSocket ping frames sent on it."""

    def __init__(self, stream: trio.abc.Stream, counter: PingCountingTransport) -> None:
        self._stream = stream
        self._counter = counter

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # trio-websocket sends each frame with its own send_all; a client ping
        # frame starts with FIN + opcode 0x9.
        if bytes(data[:1]) == b"\x89":
            self._counter.pings += 1
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


class PingCountingTransport:
    """The reference server's memory transport, counting the client's pings."""

    def __init__(self, server: ReferenceServer) -> None:
        self._inner = server.transport
        self.pings = 0

    async def open_stream(
        self, host: str, port: int, *, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        stream = await self._inner.open_stream(host, port, ssl_context=ssl_context)
        return PingTap(stream, self)


def token_for(server: ReferenceServer, token: str | None) -> TokenProvider:
    """A fresh JWT per attempt, or a fixed token the server is told to accept."""
    if token is None:
        return server.issue_token
    server.accept_token(token)
    return token


def no_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every record at WARNING or above, formatted (expected: none)."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING
    ]


# --- 15: one stalled subscriber among readers -------------------------------------


@within(300)
async def stalled_subscriber_scenario(
    server: ReferenceServer,
    overflow: Overflow,
    *,
    messages: int = 10_000,
    token: str | None = None,
    show: Show = ignore,
) -> None:
    """Stream ``messages`` telemetry messages past a subscriber that never reads.

    Two readers (an exact topic and a ``telemetry:*`` pattern) read with small
    buffers while the producer and the readers let virtual time pass, so the
    heartbeat (0.5 s) runs all along. The producer waits for the readers after
    each chunk of 250 (their buffers hold 256), so they may lose nothing.
    """
    stalled_buffer = 4
    chunk = 250
    ping_interval = 0.5
    bus = MessageBus()
    events: list[ConnectionEvent] = []
    bus.on(CONNECTION_TOPIC, events.append)
    transport = PingCountingTransport(server)
    async with open_websocket_manager(
        MEMORY_URL,
        token=token_for(server, token),
        bus=bus,
        transport=transport,
        ping_interval=ping_interval,
        ping_timeout=ping_interval,
    ) as manager:
        got: dict[str, list[int]] = {"exact": [], "pattern": []}
        progress = {name: Progress() for name in got}

        async def read(name: str, subscription: Subscription[Any]) -> None:
            async for telemetry in subscription:
                got[name].append(telemetry.metrics["i"])
                progress[name].add()
                if len(got[name]) % 10 == 0:
                    await trio.sleep(0.01)  # a slowish reader: time passes

        async with (
            manager.telemetry(
                "d1", max_buffer=stalled_buffer, overflow=overflow
            ) as stalled,
            manager.telemetry("d1", max_buffer=256) as exact,
            bus.subscribe("telemetry:*", max_buffer=256) as pattern,
        ):
            async with trio.open_nursery() as readers:
                readers.start_soon(read, "exact", exact)
                readers.start_soon(read, "pattern", pattern)
                await server.wait_subscribed("device", "d1")
                started = trio.current_time()
                for i in range(messages):
                    await server.publish_telemetry("d1", {"i": i}, timestamp=TIMESTAMP)
                    if i % 5 == 4:
                        await trio.sleep(0.01)  # virtual time passes mid-stream
                    if i % chunk == chunk - 1 or i == messages - 1:
                        for name in got:
                            await progress[name].wait_for(i + 1)
                elapsed = trio.current_time() - started
                readers.cancel_scope.cancel()

            show(manager)
            show(stalled)
            show(bus.statistics())
            assert got == {
                "exact": list(range(messages)),
                "pattern": list(range(messages)),
            }
            assert (exact.dropped, pattern.dropped) == (0, 0)
            lost = messages - stalled_buffer
            assert stalled.dropped == lost
            assert bus.statistics().dropped == lost
            if overflow is Overflow.ERROR:
                with pytest.raises(SubscriberLagged) as lagged:
                    stalled.receive_nowait()
                show(lagged.value)
                assert lagged.value.missed == lost
            kept = [
                stalled.receive_nowait().metrics["i"] for _ in range(stalled_buffer)
            ]
            if overflow is Overflow.DROP_OLDEST:
                assert kept == list(range(messages - stalled_buffer, messages))
            else:
                assert kept == list(range(stalled_buffer))
            with pytest.raises(trio.WouldBlock):
                stalled.receive_nowait()
            # The stalled subscriber is usable again: delivery goes on.
            await server.publish_telemetry("d1", {"i": messages}, timestamp=TIMESTAMP)
            assert (await stalled.receive()).metrics["i"] == messages

            # The heartbeat ran all along and every pong came back in time.
            assert elapsed > 0.99 * messages / 5 * 0.01  # the producer paused so long
            assert transport.pings >= elapsed / ping_interval - 2
            assert manager.is_connected
            assert manager.statistics().connections == 1
            assert len(server.all_connections) == 1
            assert events == [CONNECTING, CONNECTED]
            show(events)
            show(manager.statistics())
            show(bus)


@pytest.mark.parametrize("overflow", list(Overflow), ids=lambda o: o.name)
async def test_stalled_subscriber_loses_exactly_by_its_policy(
    overflow: Overflow,
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """10,000 messages: readers get all; the stalled one keeps its policy's four."""
    caplog.set_level(logging.WARNING)
    async with open_reference_server(listen=False) as server:
        await stalled_subscriber_scenario(server, overflow)
    assert no_warnings(caplog) == []


# --- 16: subscribers that leave by cancellation while messages flow --------------

DEVICES = ["d0", "d1", "d2", "d3"]


@within(300)
async def cancelled_subscribers_scenario(
    server: ReferenceServer,
    leave: str,
    *,
    seed: int = 16,
    token: str | None = None,
    show: Show = ignore,
) -> None:
    """24 subscribers (alerts and 4 devices) leave by cancellation mid-stream.

    ``leave="one by one"`` cancels them in a random order at random moments,
    some while blocked in ``receive()`` and some inside their loop body;
    ``leave="all at once"`` cancels every one in the same instant.
    """
    rng = random.Random(seed)
    bus = MessageBus()
    events: list[ConnectionEvent] = []
    bus.on(CONNECTION_TOPIC, events.append)
    async with open_websocket_manager(
        MEMORY_URL,
        token=token_for(server, token),
        bus=bus,
        transport=server.transport,
        ping_interval=1.0,
    ) as manager:
        await manager.wait_connected()
        received = [0] * 24
        scopes: list[trio.CancelScope] = []

        async def subscriber(
            j: int, *, task_status: trio.TaskStatus[trio.CancelScope]
        ) -> None:
            with trio.CancelScope() as scope:
                async with AsyncExitStack() as stack:
                    if j % 3 == 0:
                        sub: Subscription[Any] = await stack.enter_async_context(
                            manager.alerts()
                        )
                    else:
                        sub = await stack.enter_async_context(
                            manager.telemetry(DEVICES[j % 4])
                        )
                    show(sub)
                    task_status.started(scope)
                    async for _ in sub:
                        received[j] += 1
                        if received[j] % 3 == 0:
                            await trio.sleep(0.001)  # cancelled here, sometimes

        async def produce(stop: trio.Event) -> None:
            for n in range(100_000):  # bounded; stopped long before
                if stop.is_set():
                    return
                if n % 5 == 0:
                    await server.publish_alerts([make_alert(n + 1)])
                else:
                    await server.publish_telemetry(
                        DEVICES[n % 4], {"n": n}, timestamp=TIMESTAMP
                    )
                if n % 4 == 3:
                    await trio.sleep(0.005)

        stop = trio.Event()
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as subscribers:
                for j in range(24):
                    scopes.append(await subscribers.start(subscriber, j))
                await server.wait_until(
                    lambda s: (
                        len(s.connections) == 1
                        and len(s.connections[0].subscriptions) == 5
                    )
                )
                outer.start_soon(produce, stop)
                await trio.sleep(0.5)
                if leave == "all at once":
                    for scope in scopes:
                        scope.cancel()
                else:
                    for scope in rng.sample(scopes, len(scopes)):
                        scope.cancel()
                        await trio.sleep(rng.uniform(0.0, 0.1))
            assert all(scope.cancelled_caught for scope in scopes)
            await trio.sleep(0.5)  # messages keep coming for a moment
            stop.set()

        await server.wait_until(
            lambda s: len(s.connections) == 1 and not s.connections[0].subscriptions
        )
        conn = server.connections[0]
        show(manager)
        show(bus.statistics())
        show(manager.statistics())
        assert all(received), "every subscriber was in the flow when it left"
        assert manager.subscriptions == []
        assert bus.statistics().subscriptions == 0
        assert bus.listener_count(ALERTS_TOPIC) == 0
        assert all(bus.listener_count(telemetry_topic(d)) == 0 for d in DEVICES)
        unsubscribed = [
            json.loads(m)
            for m in conn.received
            if isinstance(m, str) and '"unsubscribe"' in m
        ]
        assert sorted((u["type"], u.get("device_id")) for u in unsubscribed) == [
            ("alerts", None),
            *(("device", d) for d in DEVICES),
        ]
        stats = manager.statistics()
        assert (stats.connections, stats.invalid_messages) == (1, 0)
        assert bus.statistics().handler_errors == 0
        assert manager.is_connected
        assert events == [CONNECTING, CONNECTED]
        show(events)


@pytest.mark.parametrize(
    "leave", ["one by one", "all at once"], ids=lambda s: s.replace(" ", "-")
)
async def test_subscribers_leaving_by_cancellation_leave_no_trace(
    leave: str,
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cancelled subscribers unsubscribe and unregister; the reader logs nothing."""
    caplog.set_level(logging.DEBUG)
    async with open_reference_server(listen=False) as server:
        await cancelled_subscribers_scenario(server, leave)
    assert no_warnings(caplog) == []
