"""The data path with default settings: every message a consumer keeps up with.

A server writes a burst as fast as the socket takes it; subscribers with
default buffers, consuming with a plain ``async for``, receive every message
(nothing in ``dropped``), with one and with three subscribers, for both
message kinds. A subscriber slower than the feed loses messages by its
overflow policy, counted, and never stalls a fast one or the heartbeat.
"""

from __future__ import annotations

import itertools
import json
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
import trio.testing
from helpers import manager_on

from trio_ws_bus import (
    ALERTS_TOPIC,
    ERROR_TOPIC,
    ConnectionStatus,
    MessageBus,
    Subscription,
    open_websocket_manager,
)
from trio_ws_bus.testing import (
    Opcode,
    ReferenceServer,
    encode_frame,
    make_alert,
    open_reference_server,
)

TELEMETRY_BURST = 30_000
ALERTS_BURST = 10_000


def telemetry_frames(n: int, devices: int = 100, first: int = 0) -> bytes:
    """``n`` telemetry messages from ``devices`` devices, numbered from ``first``."""
    return b"".join(
        encode_frame(
            Opcode.TEXT,
            json.dumps(
                {
                    "type": "telemetry",
                    "device_id": f"dev-{i % devices}",
                    "data": {
                        "timestamp": "2026-12-07T03:00:00Z",
                        "metrics": {"seq": i, "temp_c": 21.5, "rpm": 1200},
                    },
                }
            ).encode(),
        )
        for i in range(first, first + n)
    )


def alerts_frames(n: int) -> bytes:
    """``n`` alerts messages of two alerts each, as server frames."""
    return b"".join(
        encode_frame(
            Opcode.TEXT,
            json.dumps(
                {"type": "alerts", "alerts": [make_alert(2 * i), make_alert(2 * i + 1)]}
            ).encode(),
        )
        for i in range(n)
    )


BURSTS = {
    "telemetry": ("telemetry:*", TELEMETRY_BURST, telemetry_frames),
    "alerts": (ALERTS_TOPIC, ALERTS_BURST, alerts_frames),
}


async def consume(
    subscription: Subscription[Any], expected: int, seen: list[int]
) -> None:
    """A plain ``async for``, a few microseconds of work per item."""
    count = 0
    async for item in subscription:
        count += 1
        _ = repr(item)[:16]  # a little work per item
        if count + subscription.dropped >= expected:
            break
    seen.append(count)


async def burst(server: ReferenceServer, data: bytes) -> None:
    """Write ``data`` to the one connection as fast as the socket takes it."""
    await server.wait_until(lambda s: len(s.connections) == 1)
    assert await server.connections[0].write_raw(data)


@pytest.mark.parametrize("subscribers", [1, 3])
@pytest.mark.parametrize("kind", ["telemetry", "alerts"])
async def test_a_burst_at_wire_speed_loses_nothing_with_default_settings(
    kind: str, subscribers: int
) -> None:
    """Default buffers, plain async for: every message of the burst arrives."""
    topic, n, frames = BURSTS[kind]
    data = frames(n)
    seen: list[int] = []
    with trio.fail_after(120):
        async with (
            open_reference_server() as server,
            open_websocket_manager(server.url, token=server.issue_token) as manager,
            AsyncExitStack() as stack,
        ):
            subscriptions = [
                await stack.enter_async_context(manager.bus.subscribe(topic))
                for _ in range(subscribers)
            ]
            await manager.wait_connected()
            async with trio.open_nursery() as nursery:
                for subscription in subscriptions:
                    nursery.start_soon(consume, subscription, n, seen)
                nursery.start_soon(burst, server, data)
            assert seen == [n] * subscribers
            assert [s.dropped for s in subscriptions] == [0] * subscribers
            assert manager.bus.statistics().dropped == 0
            stats = manager.statistics()
            assert (stats.connections, stats.invalid_messages) == (1, 0)


async def test_manager_alerts_with_default_settings_keeps_up_with_a_burst() -> None:
    """``manager.alerts()`` as the README shows it: the whole burst, in order."""
    n = ALERTS_BURST
    data = alerts_frames(n)
    with trio.fail_after(120):
        async with (
            open_reference_server() as server,
            open_websocket_manager(server.url, token=server.issue_token) as manager,
            manager.alerts() as alerts,
        ):
            await server.wait_subscribed("alerts")
            ids: list[int] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(burst, server, data)
                async for batch in alerts:
                    ids.extend(alert.alert_id for alert in batch)
                    if len(ids) >= 2 * n:
                        break
            assert ids == list(range(2 * n))
            assert alerts.dropped == 0


async def test_a_slow_subscriber_never_stalls_a_fast_one_or_the_heartbeat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """10 ms per item beside a fast one: the fast one gets every message.

    The connection stays up across heartbeats; the slow one's losses are counted.
    """
    chunks, per_chunk = 60, 500
    total = chunks * per_chunk
    slow_got: list[int] = []
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, events):
            bus: MessageBus = manager.bus
            async with (
                bus.subscribe("telemetry:*") as fast,
                bus.subscribe("telemetry:*") as slow,
            ):
                await manager.wait_connected()
                start = trio.current_time()
                was_lagging = False

                async def feed() -> None:
                    # One chunk a second for a minute: three heartbeat pings.
                    for chunk in range(chunks):
                        frames = telemetry_frames(per_chunk, 7, chunk * per_chunk)
                        await burst(server, frames)
                        await trio.sleep(1.0)

                async def slow_consumer() -> None:
                    nonlocal was_lagging
                    async for item in slow:
                        slow_got.append(item.metrics["seq"])
                        was_lagging = was_lagging or slow.lagging
                        await trio.sleep(0.01)
                        if len(slow_got) + slow.dropped >= total:
                            break

                fast_seen: list[int] = []
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(feed)
                    nursery.start_soon(slow_consumer)
                    nursery.start_soon(consume, fast, total, fast_seen)
                assert fast_seen == [total]
                assert fast.dropped == 0
                assert slow.dropped > 0
                assert len(slow_got) + slow.dropped == total
                assert slow_got == sorted(slow_got)  # oldest dropped, order kept
                assert was_lagging
                assert bus.statistics().dropped_by_topic == {
                    "telemetry:*": slow.dropped
                }
                # The minute passed with pings answered: one connection, no 1006.
                assert trio.current_time() - start >= chunks
                assert manager.statistics().connections == 1
                assert [e.code for e in events if e.code is not None] == []
                assert manager.status is ConnectionStatus.CONNECTED


async def test_the_reader_waits_at_most_subscriber_wait_for_a_stalled_subscriber(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A subscriber that never reads holds the feed back once, then lags.

    The reader waits subscriber_wait for it; the others get the rest at once.
    """
    n = 2_000
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, subscriber_wait=2.0) as (manager, _):
            async with (
                manager.bus.subscribe("telemetry:*") as stalled,
                manager.bus.subscribe("telemetry:*") as fast,
            ):
                await manager.wait_connected()
                start = trio.current_time()
                seen: list[int] = []
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(burst, server, telemetry_frames(n))
                    nursery.start_soon(consume, fast, n, seen)
                assert seen == [n]
                assert trio.current_time() - start == pytest.approx(2.0)
                assert stalled.lagging
                assert stalled.buffered == stalled.max_buffer
                assert stalled.dropped == n - stalled.max_buffer


async def test_subscriber_wait_zero_is_the_old_never_wait_rule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """subscriber_wait=0: the reader never waits; a burst overflows, counted."""
    n = 2_000
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, subscriber_wait=0) as (manager, _):
            async with (
                manager.bus.subscribe("telemetry:*") as subscription,
                manager.bus.subscribe(ERROR_TOPIC) as errors,
            ):
                await manager.wait_connected()
                await burst(server, telemetry_frames(n))
                await server.send_error("end of burst")  # routed after the burst
                assert await errors.receive() == "end of burst"
                assert subscription.dropped > 0
                assert subscription.buffered + subscription.dropped == n


@pytest.mark.parametrize("value", [-1.0, float("nan"), "1", True])
async def test_subscriber_wait_is_checked(value: object) -> None:
    """A negative, NaN or non-number subscriber_wait is refused up front."""
    with pytest.raises(ValueError, match="subscriber_wait"):
        async with open_websocket_manager(
            "http://127.0.0.1:1",
            token="t",
            subscriber_wait=value,  # type: ignore[arg-type]
        ):
            pass  # pragma: no cover


class _LockstepTransport:
    """Hands the client one end of a lockstep pair (a write waits for a read)."""

    def __init__(self) -> None:
        self.server_side: trio.abc.Stream | None = None
        self.opened = trio.Event()

    async def open_stream(
        self, host: str, port: int, *, ssl_context: object
    ) -> trio.abc.Stream:
        client, self.server_side = trio.testing.lockstep_stream_pair()
        self.opened.set()
        return client


async def test_a_peer_flooding_pings_but_never_reading_cannot_grow_the_outbox(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The reader stops reading while the writer is stuck.

    The server's flood stalls after about OUTBOX_LIMIT bytes of pongs, then the
    peer is dropped.
    """
    from trio_ws_bus._connection import OUTBOX_LIMIT
    from trio_ws_bus.testing import upgrade_response

    transport = _LockstepTransport()
    chunk = encode_frame(Opcode.PING, b"") * 1000  # 1,000 pings, 6,000 bytes of pongs
    written = 0

    async def flood() -> None:
        nonlocal written
        await transport.opened.wait()
        stream = transport.server_side
        assert stream is not None
        request = await stream.receive_some()
        await stream.send_all(upgrade_response(bytes(request)))
        with trio.move_on_after(60):
            for _ in range(10_000):  # 60 MB of pongs if nothing stopped it
                try:
                    await stream.send_all(chunk)
                except trio.BrokenResourceError:  # the client dropped us
                    return
                written += 1

    events: list[Any] = []
    lost = trio.Event()
    bus = MessageBus()
    bus.on("connection", events.append)
    bus.on("connection", lambda event: event.code == 1006 and lost.set())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood)
        async with open_websocket_manager(
            "http://127.0.0.1:1",
            token="flood-token",  # "t" would be scrubbed from every reason
            bus=bus,
            transport=transport,  # type: ignore[arg-type]
            ping_timeout=2.0,
            close_timeout=1.0,
        ) as manager:
            await manager.wait_connected()
            with trio.move_on_after(30):
                await lost.wait()
        nursery.cancel_scope.cancel()
    # A stuck peer is a lost peer, and the reason says it was the write.
    assert [(e.code, e.reason) for e in events if e.code == 1006][:1] == [
        (1006, "Write stalled")
    ]
    # Pongs for at most the outbox limit plus a read (64 KiB of pings) were queued.
    assert written * 6000 <= OUTBOX_LIMIT + 6 * 64 * 1024


async def test_a_large_replay_goes_out_a_slice_at_a_time(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5,000 persisted subscriptions replay in order, a slice at a time.

    Other tasks run between two slices: the writer never holds the event loop
    for the whole set.
    """
    from trio_ws_bus._connection import REPLAY_SLICE
    from trio_ws_bus._session import ClientSession

    n = 5_000
    turns = 0
    slices: list[tuple[int, int]] = []  # (requests, the ticker's turns by then)
    send_requests = ClientSession.send_requests

    def recording(self: ClientSession, requests: Any) -> None:
        requests = list(requests)
        slices.append((len(requests), turns))
        send_requests(self, requests)

    monkeypatch.setattr(ClientSession, "send_requests", recording)

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    async with open_reference_server(listen=False) as server:
        async with manager_on(server, autoconnect=False) as (manager, _):
            for i in range(n):
                manager.subscribe("device", f"d{i:05d}")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker)
                manager.connect()
                await server.wait_until(
                    lambda s: (
                        len(s.connections) == 1
                        and len(s.connections[0].subscriptions) == n
                    )
                )
                nursery.cancel_scope.cancel()
            keys = server.connections[0].subscriptions
            assert keys == [("device", f"d{i:05d}") for i in range(n)]
    assert sum(size for size, _ in slices) == n
    assert max(size for size, _ in slices) == REPLAY_SLICE
    seen = [turn for _, turn in slices]
    assert all(later > earlier for earlier, later in itertools.pairwise(seen))
