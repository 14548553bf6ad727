"""Latency at a steady rate: from the server's write to the application.

The server (``bench/_server_proc.py``, ``mode=paced``) writes telemetry at a
steady 1k, 10k and 50k messages per second, each message stamped with its
write time on ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every
process on Linux). Each client subscribes as a user would, takes every message
in turn and records ``time.monotonic() - sent`` when the message reaches the
application (after decoding, before any work on it). A run lasts N = rate x
duration messages; it reports p50, p99 and p99.9 of those latencies in
microseconds, and delivered / sent. Clients, interleaved per round in rotated
order, each against the same server process:

* trio_ws_bus at default settings: ``async for`` over
  ``manager.bus.subscribe("telemetry:*")``, and ``receive_batch()`` (each item
  of a batch timed when the loop reaches it);
* aiohttp (``receive_str()``), websockets asyncio and Trio (``recv()``) and
  picows (a frame callback), each with ``json.loads``.

A trio_ws_bus run stops once received + dropped reaches N; every run is
bounded by its duration plus :data:`GRACE`, and what has not arrived by then
counts as not delivered. A client whose package is missing is n/a.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

import trio_ws_bus

from . import _clients, throughput
from ._common import (
    Config,
    Goal,
    Result,
    Row,
    at_least,
    at_most,
    interleave,
    not_measured,
    quiet_logs,
    ratio,
)
from ._frames import DEVICE_ID
from ._server_proc import server_process

NAME = "latency"

RATES = (1_000, 10_000, 50_000)
#: Seconds a run may last beyond its N / rate.
GRACE = 5.0
QUANTILES = (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999))

OURS_EACH = "trio_ws_bus default, async for"
OURS_BATCH = "trio_ws_bus default, receive_batch"
AIOHTTP = "aiohttp + json.loads"
WS_ASYNCIO = "websockets.asyncio + json.loads"
WS_TRIO = "websockets.trio + json.loads"
PICOWS = "picows + json.loads"
CLIENTS = (OURS_EACH, OURS_BATCH, AIOHTTP, WS_ASYNCIO, WS_TRIO, PICOWS)
OURS = (OURS_EACH, OURS_BATCH)
PEERS = (AIOHTTP, WS_ASYNCIO, WS_TRIO, PICOWS)
#: The rate of the goal on p99.
GOAL_RATE = 10_000


def missing() -> dict[str, str]:
    """The clients this installation cannot run, with what they need."""
    needs: dict[str, str] = {}
    if not _clients.has_receive_batch():
        needs[OURS_BATCH] = not_measured("Subscription.receive_batch")
    if not throughput.websockets_available():
        needs.update(dict.fromkeys((WS_ASYNCIO, WS_TRIO), not_measured("websockets")))
    for module, client in (("aiohttp", AIOHTTP), ("picows", PICOWS)):
        if not _clients.available(module):
            needs[client] = not_measured(module)
    return needs


# ---------------------------------------------------------------------------
# The clients: each appends one latency (seconds) per message it delivers.


def _sent(text: str | bytes) -> float:
    value: float = json.loads(text)["data"]["metrics"]["sent"]
    return value


async def _ours(url: str, n: int, latencies: list[float], *, batched: bool) -> None:
    monotonic = time.monotonic
    async with (
        trio_ws_bus.open_websocket_manager(url, token="bench") as manager,
        manager.bus.subscribe("telemetry:*") as subscription,
    ):
        manager.subscribe("device", DEVICE_ID)
        count = 0
        if batched:
            receive_batch = subscription.receive_batch  # type: ignore[attr-defined,unused-ignore]
            while count + subscription.dropped < n:
                batch = await receive_batch()
                for item in batch:
                    latencies.append(monotonic() - item.metrics["sent"])
                count += len(batch)
        else:
            async for item in subscription:
                latencies.append(monotonic() - item.metrics["sent"])
                count += 1
                if count + subscription.dropped >= n:
                    break


async def _receive_all(
    receive: Callable[[], Awaitable[str | bytes]], n: int, latencies: list[float]
) -> None:
    monotonic = time.monotonic
    for _ in range(n):
        text = await receive()
        latencies.append(monotonic() - _sent(text))


async def _websockets_trio(url: str, n: int, latencies: list[float]) -> None:
    from websockets.trio.client import connect

    async with connect(url, max_size=1 << 20) as connection:
        await connection.send("go")
        await _receive_all(connection.recv, n, latencies)


async def _websockets_asyncio(url: str, n: int, latencies: list[float]) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=1 << 20, compression=None) as connection:
        await connection.send("go")
        await _receive_all(connection.recv, n, latencies)


async def _aiohttp(url: str, n: int, latencies: list[float]) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, max_msg_size=1 << 20) as connection,
    ):
        await connection.send_str("go")
        await _receive_all(connection.receive_str, n, latencies)


async def _picows(url: str, n: int, latencies: list[float]) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    monotonic = time.monotonic

    class Listener(WSListener):  # type: ignore[misc,unused-ignore]
        def __init__(self) -> None:
            self.done = asyncio.get_running_loop().create_future()

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is not WSMsgType.TEXT or self.done.done():
                return
            try:
                latencies.append(monotonic() - _sent(frame.get_payload_as_bytes()))
            except Exception as exc:  # fail the run now, not at its limit
                self.done.set_exception(exc)
                return
            if len(latencies) >= n:
                self.done.set_result(None)

    transport, listener = await ws_connect(Listener, url, max_frame_size=1 << 20)
    try:
        transport.send(WSMsgType.TEXT, b"go")
        await listener.done
    finally:
        transport.send_close()
        transport.disconnect()
        await transport.wait_disconnected()


def _on_trio(client: Callable[..., Any], limit: float, *args: Any) -> None:
    async def main() -> None:
        with trio.move_on_after(limit):
            await client(*args)

    trio.run(main)


def _on_asyncio(client: Callable[..., Any], limit: float, *args: Any) -> None:
    async def main() -> None:
        # What arrived by the limit is what was delivered.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(client(*args), limit)

    asyncio.run(main())


# ---------------------------------------------------------------------------
# Runs and statistics


@attrs.define
class Stats:
    """One run of one client: latency quantiles (us) and delivered / sent."""

    quantiles: dict[str, float]
    delivered: float


def stats(latencies: list[float], n: int, limit: float) -> Stats:
    """Quantiles of ``latencies`` (seconds) in us; ``limit`` if none arrived."""
    ordered = sorted(latencies) or [limit]
    last = len(ordered) - 1
    quantiles = {
        label: ordered[min(last, int(q * len(ordered)))] * 1e6 for label, q in QUANTILES
    }
    return Stats(quantiles, len(latencies) / n)


def _runner(
    client: str, url: str, n: int, limit: float, record: list[Stats]
) -> Callable[[], float]:
    """One run of ``client``, its stats appended to ``record``; returns p50."""
    http = url.replace("ws://", "http://", 1)
    calls: dict[str, Callable[[list[float]], None]] = {
        OURS_EACH: lambda out: _on_trio(
            functools.partial(_ours, batched=False), limit, http, n, out
        ),
        OURS_BATCH: lambda out: _on_trio(
            functools.partial(_ours, batched=True), limit, http, n, out
        ),
        AIOHTTP: lambda out: _on_asyncio(_aiohttp, limit, url, n, out),
        WS_ASYNCIO: lambda out: _on_asyncio(_websockets_asyncio, limit, url, n, out),
        WS_TRIO: lambda out: _on_trio(_websockets_trio, limit, url, n, out),
        PICOWS: lambda out: _on_asyncio(_picows, limit, url, n, out),
    }
    call = calls[client]

    def run() -> float:
        latencies: list[float] = []
        call(latencies)
        record.append(stats(latencies, n, limit))
        return record[-1].quantiles["p50"]

    return run


def rate_label(rate: int) -> str:
    """``10k msg/s`` for 10,000."""
    return f"{rate // 1000}k msg/s" if rate % 1000 == 0 else f"{rate} msg/s"


def groups(rate: int) -> list[str]:
    """The table groups of one rate: one per quantile, then delivered."""
    label = rate_label(rate)
    return [f"{label} {q}" for q, _ in QUANTILES] + [f"{label} delivered"]


def run(config: Config) -> Result:
    """Every client at every rate; rows per rate and statistic."""
    duration = config.pick(2.0, 0.5, 0.1)
    skip = missing()
    result = Result(
        NAME,
        "Latency at a steady rate (loopback, server in its own process)",
        "The server writes telemetry at a steady rate, each message stamped "
        "with its write time on the monotonic clock; the client records the "
        "time until the message reaches the application. Per rate: p50, p99 "
        "and p99.9 (us) and delivered / sent, one sample per round, clients "
        "interleaved per round with a rotating order.",
        params={
            "rates": list(RATES),
            "seconds_per_run": duration,
            "n": {rate_label(rate): int(rate * duration) for rate in RATES},
            "rounds": config.rounds,
            "not_measured": skip,
        },
    )
    with quiet_logs(), server_process() as server:
        for rate in RATES:
            n = max(int(rate * duration), 1)
            limit = n / rate + GRACE
            url = server.url(mode="paced", rate=rate, n=n)
            records: dict[str, list[Stats]] = {client: [] for client in CLIENTS}
            runners = {
                client: _runner(client, url, n, limit, records[client])
                for client in CLIENTS
                if client not in skip
            }
            interleave(runners, config.rounds, warmup=0)
            _add_rows(result, rate, records, skip)
    result.goals.append(_p99_goal(result))
    result.goals.extend(_nothing_lost_goal(result, client) for client in OURS)
    return result


def _add_rows(
    result: Result, rate: int, records: dict[str, list[Stats]], skip: dict[str, str]
) -> None:
    labels = [q for q, _ in QUANTILES]
    for group, label in zip(groups(rate), [*labels, "delivered"], strict=True):
        for client in CLIENTS:
            runs = records[client]
            if label == "delivered":
                samples, unit = [s.delivered for s in runs], "fraction"
            else:
                samples, unit = [s.quantiles[label] for s in runs], "us"
            result.rows.append(Row(group, client, unit, samples, skip.get(client, "")))


def _p99_goal(result: Result) -> Goal:
    """p99 of default ``async for`` at 10k msg/s over the best peer's p99."""
    group = f"{rate_label(GOAL_RATE)} p99"
    name = f"{group}: trio_ws_bus default async for / best peer"
    ours = result.row(group, OURS_EACH)
    peers = [result.row(group, peer) for peer in PEERS]
    peers = [row for row in peers if row.samples]
    if not peers:
        return Goal(name, None, "<= 1", None, not_measured("a peer"))
    best = min(peers, key=lambda row: row.median)
    value, low, high = ratio(ours, best)
    return at_most(name, value, 1.0, f"{best.variant}, per-round {low:.2f}-{high:.2f}")


def _nothing_lost_goal(result: Result, client: str) -> Goal:
    """Delivered / sent at every rate, the worst run of all."""
    name = f"{client}: delivers everything at every rate"
    fractions = [
        value
        for rate in RATES
        for value in result.row(f"{rate_label(rate)} delivered", client).samples
    ]
    if not fractions:
        note = result.row(f"{rate_label(RATES[0])} delivered", client).note
        return Goal(name, None, ">= 1", None, note)
    worst = min(fractions)
    rates = [
        rate_label(rate)
        for rate in RATES
        if min(result.row(f"{rate_label(rate)} delivered", client).samples) < 1
    ]
    detail = f"worst run; short at {', '.join(rates)}" if rates else "worst run"
    return at_least(name, worst, 1.0, detail)
