"""End-to-end throughput: a loopback server pushes N messages as fast as it can.

The server (``bench/_server_proc.py``, its own process) writes N identical
pre-encoded frames in one go after the client's first message; the client
measures from the first message it gets to the N-th, and reports the mean cost
per message (microseconds). Variants, interleaved round by round:

(a) raw trio-websocket: a ``get_message()`` loop, no decoding: the transport's
    limit. It uses the manager's trio-websocket settings (receive buffer and
    message queue), so (c) / (a) is what trio_ws_bus adds on the same transport.
(a4) (a) with trio-websocket's defaults (4 KiB receive buffer, queue of 1),
    for context: what a plain trio-websocket user gets.
(b) (a) + ``json.loads`` of each message.
(c) trio_ws_bus: manager -> bus -> one subscriber task that receives until the
    N-th message (decoded, validated, routed, delivered).
(d) the ``websockets`` library's Trio client: a ``recv()`` loop +
    ``json.loads``, the peer a user would otherwise pick (skipped when
    ``websockets.trio`` is not installed).
"""

from __future__ import annotations

import functools
import importlib
import json
import time
from collections.abc import Callable
from typing import Any

import trio
import trio_websocket

import trio_ws_bus
from trio_ws_bus import _manager

from ._common import Config, Result, Row, at_least, interleave, quiet_logs, ratio
from ._frames import DEVICE_ID, FRAMES
from ._server_proc import ServerProcess, server_process

NAME = "throughput"

#: The manager's trio-websocket settings, read from the manager so that (a)
#: follows them if they change.
MANAGER_RECEIVE_BUFFER: int = getattr(_manager, "_RECEIVE_BUFFER_SIZE", 64 * 1024)
MANAGER_QUEUE_SIZE: int = getattr(_manager, "_TRANSPORT_QUEUE_SIZE", 1)
DEFAULT_RECEIVE_BUFFER: int = trio_websocket._impl.RECEIVE_BYTES  # 4 KiB
DEFAULT_QUEUE_SIZE: int = trio_websocket._impl.MESSAGE_QUEUE_SIZE  # 1

A = "(a) trio-websocket get_message"
A4 = "(a4) same, trio-websocket defaults"
B = "(b) (a) + json.loads"
C = "(c) trio_ws_bus manager -> bus -> 1 subscriber"
D = "(d) websockets.trio recv + json.loads"

GOAL = 0.85


def websockets_trio_available() -> bool:
    """Whether ``websockets`` is installed with its Trio client."""
    try:
        importlib.import_module("websockets.trio.client")
    except Exception:  # not installed, too old, or broken with this Trio
        return False
    return True


async def _raw(
    url: str, n: int, buffer: int, queue: int, decode: Callable[[Any], Any] | None
) -> float:
    async with trio_websocket.open_websocket_url(
        url,
        message_queue_size=queue,
        receive_buffer_size=buffer,
        max_message_size=1 << 20,
    ) as connection:
        await connection.send_message("go")
        get = connection.get_message
        rest = range(n - 1)
        if decode is None:
            await get()
            start = time.perf_counter()
            for _ in rest:
                await get()
        else:
            decode(await get())
            start = time.perf_counter()
            for _ in rest:
                decode(await get())
        elapsed = time.perf_counter() - start
    return elapsed / (n - 1)


async def _trio_ws_bus(url: str, kind: str, n: int, dropped: list[int]) -> float:
    async with trio_ws_bus.open_websocket_manager(url, token="bench") as manager:
        context = manager.alerts() if kind == "alerts" else manager.telemetry(DEVICE_ID)
        async with context as subscription:
            receive = subscription.receive
            await receive()
            start = time.perf_counter()
            count = 1
            # With the default DROP_OLDEST policy the last message always
            # arrives; count what a slow subscriber would have lost.
            while count + subscription.dropped < n:
                await receive()
                count += 1
            elapsed = time.perf_counter() - start
            dropped.append(subscription.dropped)
    return elapsed / (n - 1)


async def _websockets(url: str, n: int) -> float:
    from websockets.trio.client import connect

    async with connect(url, max_size=1 << 20) as connection:
        await connection.send("go")
        recv = connection.recv
        loads = json.loads
        loads(await recv())
        start = time.perf_counter()
        for _ in range(n - 1):
            loads(await recv())
        elapsed = time.perf_counter() - start
    return elapsed / (n - 1)


def _variants(
    server: ServerProcess, kind: str, n: int, dropped: list[int], with_websockets: bool
) -> dict[str, Callable[[], float]]:
    url = server.url(mode="push", kind=kind, n=n)
    variants: dict[str, Callable[[], float]] = {
        A: functools.partial(
            trio.run, _raw, url, n, MANAGER_RECEIVE_BUFFER, MANAGER_QUEUE_SIZE, None
        ),
        A4: functools.partial(
            trio.run, _raw, url, n, DEFAULT_RECEIVE_BUFFER, DEFAULT_QUEUE_SIZE, None
        ),
        B: functools.partial(
            trio.run,
            _raw,
            url,
            n,
            MANAGER_RECEIVE_BUFFER,
            MANAGER_QUEUE_SIZE,
            json.loads,
        ),
        C: functools.partial(
            trio.run,
            _trio_ws_bus,
            url.replace("ws://", "http://", 1),
            kind,
            n,
            dropped,
        ),
    }
    if with_websockets:
        variants[D] = functools.partial(trio.run, _websockets, url, n)
    return variants


def run(config: Config) -> Result:
    """Measure every variant on telemetry and on alerts messages."""
    counts = {
        "telemetry": config.pick(50_000, 5_000, 200),
        "alerts": config.pick(10_000, 1_000, 50),
    }
    with_websockets = websockets_trio_available()
    result = Result(
        NAME,
        "End-to-end throughput (loopback, server in its own process)",
        "The server writes N pre-encoded frames after the client's first "
        "message; the client times the first to the N-th message. Variants "
        "interleaved per round with a rotating order; us per message.",
        params={
            "n": counts,
            "rounds": config.rounds,
            "frame_bytes": {k: len(FRAMES[k]().encode()) for k in counts},
            "manager_receive_buffer": MANAGER_RECEIVE_BUFFER,
            "manager_queue_size": MANAGER_QUEUE_SIZE,
            "default_receive_buffer": DEFAULT_RECEIVE_BUFFER,
            "default_queue_size": DEFAULT_QUEUE_SIZE,
        },
    )
    if not with_websockets:
        result.notes.append(
            "(d) skipped: websockets is not installed, or is a release "
            "without its Trio client (websockets.trio.client)."
        )
    with quiet_logs(), server_process() as server:
        for kind, n in counts.items():
            dropped: list[int] = []
            samples = interleave(
                _variants(server, kind, n, dropped, with_websockets), config.rounds
            )
            for variant, values in samples.items():
                note = ""
                if variant == C and any(dropped):
                    note = f"subscriber dropped {max(dropped)} of {n}"
                result.rows.append(
                    Row(kind, variant, "us/msg", [v * 1e6 for v in values], note)
                )
            value, low, high = ratio(result.row(kind, A), result.row(kind, C))
            result.goals.append(
                at_least(
                    f"{kind}: (c) throughput / (a) throughput",
                    value,
                    GOAL,
                    f"per-round {low:.2f}-{high:.2f}",
                )
            )
    return result
