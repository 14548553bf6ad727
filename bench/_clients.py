"""The clients the end-to-end benchmarks time: ours, the peers and the ceiling.

Each takes the URL of a push from the server process (``bench/_server_proc.py``)
and N, and returns the mean time per message, from the first message (or
first batch) to the N-th, in seconds. Every run is capped at :data:`LIMIT`.

Ours goes through ``open_websocket_manager`` end to end: telemetry to a
subscriber on ``telemetry:*`` (the server cycles through many device ids),
alerts on ``ALERTS_TOPIC``. Its subscriptions, and the ceiling's, buffer up to
N messages: the reader publishes a whole 64 KiB read before a consumer runs,
and a smaller buffer would lose messages instead of timing them.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import attrs
import trio
import trio_websocket

import trio_ws_bus
from trio_ws_bus import (
    ALERTS_TOPIC,
    AlertsMessage,
    MessageBus,
    Subscription,
    TelemetryMessage,
    decode_server_message,
)

from ._frames import DEVICE_ID

#: No run of one client may take longer than this (seconds).
LIMIT = 120.0
RECEIVE_BUFFER = 64 * 1024
TOPICS = {"telemetry": "telemetry:*", "alerts": ALERTS_TOPIC}
#: The server subscription whose request starts the server's push.
_GO: dict[str, tuple[Any, str | None]] = {
    "telemetry": ("device", DEVICE_ID),
    "alerts": ("alerts", None),
}


def has_receive_batch() -> bool:
    """Whether ``Subscription.receive_batch`` exists in the installed trio_ws_bus."""
    return hasattr(Subscription, "receive_batch")


def has_compression() -> bool:
    """Whether ``open_websocket_manager`` takes ``compression=``."""
    parameters = inspect.signature(trio_ws_bus.open_websocket_manager).parameters
    return "compression" in parameters


@attrs.define
class _Clock:
    """When the consumers started and finished, and what they lost."""

    started: list[tuple[float, int]] = attrs.Factory(list)
    finished: list[float] = attrs.Factory(list)
    dropped: int = 0

    def per_message(self, n: int) -> float:
        start, first = min(self.started)
        if self.dropped:
            raise RuntimeError(f"the consumers lost {self.dropped} messages")
        # The first batch was read before the clock started (at tiny sizes
        # it can be all of them).
        return (max(self.finished) - start) / max(n - first, 1)


async def _timed(
    receive: Callable[[], Awaitable[Any]], n: int, decode: Callable[[Any], Any] | None
) -> float:
    if decode is None:
        await receive()
        start = time.perf_counter()
        for _ in range(n - 1):
            await receive()
    else:
        decode(await receive())
        start = time.perf_counter()
        for _ in range(n - 1):
            decode(await receive())
    return (time.perf_counter() - start) / (n - 1)


async def trio_websocket_client(
    url: str, n: int, decode: Callable[[Any], Any] | None = json.loads
) -> float:
    """trio-websocket's ``get_message()`` loop (64 KiB reads), ``decode`` each."""
    with trio.fail_after(LIMIT):
        async with trio_websocket.open_websocket_url(
            url, receive_buffer_size=RECEIVE_BUFFER, max_message_size=1 << 20
        ) as connection:
            await connection.send_message("go")
            return await _timed(connection.get_message, n, decode)


async def websockets_trio_client(url: str, n: int) -> float:
    """The websockets Trio client: a ``recv()`` loop + ``json.loads``."""
    from websockets.trio.client import connect

    with trio.fail_after(LIMIT):
        async with connect(url, max_size=1 << 20) as connection:
            await connection.send("go")
            return await _timed(connection.recv, n, json.loads)


def websockets_asyncio_client(
    url: str, n: int, compression: str | None = "deflate"
) -> float:
    """The websockets asyncio client: ``recv()`` + ``json.loads``, in its own loop."""
    from websockets.asyncio.client import connect

    async def main() -> float:
        async with connect(
            url, max_size=1 << 20, compression=compression
        ) as connection:
            await connection.send("go")
            return await _timed(connection.recv, n, json.loads)

    return asyncio.run(asyncio.wait_for(main(), LIMIT))


async def ceiling(url: str, kind: str, n: int) -> float:
    """The ceiling: websockets' sans-I/O protocol + msgspec + a plain publish.

    One task reads 64 KiB at a time into ``ClientProtocol``, decodes each frame
    with ``decode_server_message`` and publishes it on a bare `MessageBus`;
    the subscriber drains its subscription in batches (one ``receive()``, then
    ``receive_nowait()`` until it would block).
    """
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri

    uri = parse_uri(url)
    protocol = ClientProtocol(uri, max_size=1 << 20)
    bus, clock = MessageBus(), _Clock()
    with trio.fail_after(LIMIT):
        stream = await trio.open_tcp_stream(uri.host, uri.port)
        async with stream, bus.subscribe(TOPICS[kind], max_buffer=n) as subscription:
            protocol.send_request(protocol.connect())
            await stream.send_all(b"".join(protocol.data_to_send()))
            while not protocol.events_received():  # the handshake's response
                protocol.receive_data(await stream.receive_some(RECEIVE_BUFFER))
            if protocol.handshake_exc is not None:
                raise protocol.handshake_exc
            protocol.send_text(b"go")
            await stream.send_all(b"".join(protocol.data_to_send()))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_ceiling_reader, protocol, stream, bus.publish)
                await _drain(subscription, n, clock)
                nursery.cancel_scope.cancel()
            protocol.send_close(1000)
            await stream.send_all(b"".join(protocol.data_to_send()))
    return clock.per_message(n)


async def _ceiling_reader(
    protocol: Any, stream: trio.SocketStream, publish: Callable[[str, object], int]
) -> None:
    receive_some, receive_data = stream.receive_some, protocol.receive_data
    events_received = protocol.events_received
    while data := await receive_some(RECEIVE_BUFFER):  # until EOF or cancelled
        receive_data(data)
        for frame in events_received():
            message = decode_server_message(frame.data)
            if type(message) is TelemetryMessage:
                publish("telemetry:" + message.device_id, message.telemetry)
            elif type(message) is AlertsMessage:
                publish(ALERTS_TOPIC, message.alerts)


async def _drain(subscription: Subscription[Any], n: int, clock: _Clock) -> None:
    count = 0
    while count < n:
        await subscription.receive()
        got = 1
        for _ in range(n - count - 1):
            try:
                subscription.receive_nowait()
            except trio.WouldBlock:
                break
            got += 1
        if not count:
            clock.started.append((time.perf_counter(), got))
        count += got
    clock.finished.append(time.perf_counter())


async def ours(
    url: str,
    kind: str,
    n: int,
    *,
    subscribers: int = 1,
    batched: bool = False,
    **options: Any,
) -> float:
    """trio_ws_bus end to end: ``subscribers`` consumers of every message.

    Each consumer takes one item per ``receive()`` (``async for``), or with
    ``batched`` a tuple per ``receive_batch()``. ``options`` go to
    ``open_websocket_manager``.
    """
    clock = _Clock()
    consume = _consume_batches if batched else _consume_each
    with trio.fail_after(LIMIT):
        async with (
            trio_ws_bus.open_websocket_manager(
                url, token="bench", **options
            ) as manager,
            AsyncExitStack() as stack,
        ):
            subscriptions = [
                await stack.enter_async_context(
                    manager.bus.subscribe(TOPICS[kind], max_buffer=n)
                )
                for _ in range(subscribers)
            ]
            async with trio.open_nursery() as nursery:
                for subscription in subscriptions:
                    nursery.start_soon(consume, subscription, n, clock)
                manager.subscribe(*_GO[kind])
    return clock.per_message(n)


async def _consume_each(subscription: Subscription[Any], n: int, clock: _Clock) -> None:
    count = 0
    async for _ in subscription:
        count += 1
        if count == 1:
            clock.started.append((time.perf_counter(), 1))
        if count + subscription.dropped >= n:
            break
    clock.finished.append(time.perf_counter())
    clock.dropped += subscription.dropped


async def _consume_batches(
    subscription: Subscription[Any], n: int, clock: _Clock
) -> None:
    receive_batch = subscription.receive_batch  # type: ignore[attr-defined,unused-ignore]
    count = 0
    while count + subscription.dropped < n:
        got = len(await receive_batch())
        if not count:
            clock.started.append((time.perf_counter(), got))
        count += got
    clock.finished.append(time.perf_counter())
    clock.dropped += subscription.dropped
