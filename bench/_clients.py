"""The clients the end-to-end benchmarks time: ours, the peers and the ceiling.

Each takes the URL of a push from the server process (``bench/_server_proc.py``)
and N, and returns the mean time per message, from the first message (or
first batch) to the N-th, in seconds. Every run is capped at :data:`LIMIT`.

Ours goes through ``open_websocket_manager`` end to end: telemetry to a
subscriber on ``telemetry:*`` (the server cycles through many device ids),
alerts on ``ALERTS_TOPIC``. Its subscriptions, and the ceiling's, buffer up to
N messages unless asked for the default settings: on 0.2.0 the reader
publishes a whole 64 KiB read before a consumer runs, and a smaller buffer
would lose messages instead of timing them. At default settings (a user's
``subscribe(topic)``) ours counts what arrived and what was dropped instead
of failing on a loss: see :class:`Delivery`.

The peers only a benchmark needs (picows, aiohttp, httpx-ws) are imported
inside their client, so a missing one costs only its own variants
(:func:`available`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import attrs
import msgspec
import trio
import trio_websocket

import trio_ws_bus
from trio_ws_bus import (
    ALERTS_TOPIC,
    AlertsMessage,
    MessageBus,
    ServerMessage,
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


def available(module: str) -> bool:
    """Whether ``module`` (e.g. ``"picows"``, ``"httpx_ws"``) can be imported."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing or broken
        return False


def has_receive_batch() -> bool:
    """Whether ``Subscription.receive_batch`` exists in the installed trio_ws_bus."""
    return hasattr(Subscription, "receive_batch")


def has_compression() -> bool:
    """Whether ``open_websocket_manager`` takes ``compression=``."""
    parameters = inspect.signature(trio_ws_bus.open_websocket_manager).parameters
    return "compression" in parameters


@attrs.define
class _Clock:
    """When the consumers started and finished, and what they got and lost.

    ``strict``: a loss is an error (the subscriptions were sized to hold N);
    otherwise losses are counted and reported through :class:`Delivery`.
    """

    strict: bool = True
    started: list[tuple[float, int]] = attrs.Factory(list)
    finished: list[float] = attrs.Factory(list)
    dropped: int = 0
    received: list[int] = attrs.Factory(list)

    def per_message(self, n: int) -> float:
        """Seconds per message of the burst, from the first to the N-th.

        With losses (not ``strict``) this is still the time the consumers took
        to get through the burst, divided by the N messages the server sent.
        """
        start, first = min(self.started)
        if self.dropped and self.strict:
            raise RuntimeError(f"the consumers lost {self.dropped} messages")
        # The first batch was read before the clock started (at tiny sizes
        # it can be all of them).
        return (max(self.finished) - start) / max(n - first, 1)


@attrs.define
class Delivery:
    """What ours delivered per run at default settings, for the tables.

    One entry per run, in run order: the delivered fraction of the subscriber
    that got the fewest messages (received / N), and the total dropped.
    """

    fractions: list[float] = attrs.Factory(list)
    dropped: list[int] = attrs.Factory(list)

    def last(self, runs: int) -> list[float]:
        """The fractions of the last ``runs`` runs (after any warm-up)."""
        return self.fractions[-runs:] if runs else []


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


#: msgspec's typed decoder into trio_ws_bus's own message structs.
_TYPED: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)


def picows_client(url: str, n: int, *, typed: bool = False) -> float:
    """The picows client (Cython, asyncio): a callback per frame, its own loop.

    Each text frame is decoded straight from picows' buffer with ``json.loads``,
    or with ``typed`` by msgspec into trio_ws_bus's ``ServerMessage`` structs.
    picows has no ``recv()``: the listener counts frames and resolves a future
    at the N-th.
    """
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    class Listener(WSListener):  # type: ignore[misc,unused-ignore]
        def __init__(self) -> None:
            self.count = 0
            self.start = 0.0
            self.done: asyncio.Future[float] = (
                asyncio.get_running_loop().create_future()
            )

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is not WSMsgType.TEXT or self.done.done():
                return
            try:
                if typed:  # msgspec reads picows' buffer in place
                    _TYPED.decode(frame.get_payload_as_memoryview())
                else:  # json.loads needs bytes or str: one copy
                    json.loads(frame.get_payload_as_bytes())
            except Exception as exc:  # fail the run now, not at LIMIT
                self.done.set_exception(exc)
                return
            self.count += 1
            if self.count == 1:
                self.start = time.perf_counter()
            if self.count == n and not self.done.done():
                elapsed = time.perf_counter() - self.start
                self.done.set_result(elapsed / max(n - 1, 1))

    async def main() -> float:
        transport, listener = await ws_connect(Listener, url, max_frame_size=1 << 20)
        try:
            transport.send(WSMsgType.TEXT, b"go")
            result: float = await listener.done
        finally:
            transport.send_close()
            transport.disconnect()
            await transport.wait_disconnected()
        return result

    return asyncio.run(asyncio.wait_for(main(), LIMIT))


def aiohttp_client(url: str, n: int) -> float:
    """The aiohttp client: a ``receive_str()`` loop + ``json.loads``, its own loop."""
    import aiohttp

    async def main() -> float:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, max_msg_size=1 << 20) as connection,
        ):
            await connection.send_str("go")
            return await _timed(connection.receive_str, n, json.loads)

    return asyncio.run(asyncio.wait_for(main(), LIMIT))


async def httpx_ws_client(url: str, n: int) -> float:
    """httpx-ws on Trio (through anyio): ``receive_text()`` + ``json.loads``."""
    import httpx
    from httpx_ws import aconnect_ws

    with trio.fail_after(LIMIT):
        async with (
            httpx.AsyncClient() as client,
            aconnect_ws(
                url.replace("ws://", "http://", 1),
                client,
                max_message_size_bytes=1 << 20,
            ) as connection,
        ):
            await connection.send_text("go")
            return await _timed(connection.receive_text, n, json.loads)


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
    default: bool = False,
    delivery: Delivery | None = None,
    **options: Any,
) -> float:
    """trio_ws_bus end to end: ``subscribers`` consumers of every message.

    Each consumer takes one item per ``receive()`` (``async for``), or with
    ``batched`` a tuple per ``receive_batch()``; it stops once what it received
    plus what its subscription dropped reaches N. The subscriptions buffer up
    to N messages and any loss is an error, unless ``default``: then they are
    opened as a user writes it, ``subscribe(topic)`` with the default buffer,
    losses are counted, and ``delivery`` (if given) records them.
    ``options`` go to ``open_websocket_manager``.
    """
    clock = _Clock(strict=not default)
    consume = _consume_batches if batched else _consume_each
    buffer: dict[str, int] = {} if default else {"max_buffer": n}
    with trio.fail_after(LIMIT):
        async with (
            trio_ws_bus.open_websocket_manager(
                url, token="bench", **options
            ) as manager,
            AsyncExitStack() as stack,
        ):
            subscriptions = [
                await stack.enter_async_context(
                    manager.bus.subscribe(TOPICS[kind], **buffer)
                )
                for _ in range(subscribers)
            ]
            async with trio.open_nursery() as nursery:
                for subscription in subscriptions:
                    nursery.start_soon(consume, subscription, n, clock)
                manager.subscribe(*_GO[kind])
    if delivery is not None:
        delivery.fractions.append(min(clock.received) / n)
        delivery.dropped.append(clock.dropped)
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
    clock.received.append(count)


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
    clock.received.append(count)
