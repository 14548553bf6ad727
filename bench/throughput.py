"""End-to-end throughput: a loopback server pushes N messages as fast as it can.

The server (``bench/_server_proc.py``, its own process) writes N pre-encoded
frames in one go after the client's first message; telemetry cycles through
10,000 device ids. Each client times the first message to the N-th and reports
the mean cost per message (microseconds). Variants, all against the same server
process, interleaved round by round in rotated order (``bench/_clients.py``):

(a) trio-websocket's ``get_message()`` loop (64 KiB reads), no decoding: the
    transport 0.1.0 was built on, the reference of the "vs 1st" column.
(b) (a) + ``json.loads``.
(c) websockets' Trio client, ``recv()`` + ``json.loads``.
(d) websockets' asyncio client, ``recv()`` + ``json.loads`` (its own loop).
(e) the ceiling: websockets' sans-I/O protocol in one task + msgspec + a plain
    ``publish()``, the subscriber draining in batches.
(f) trio_ws_bus through ``open_websocket_manager``, one subscriber on
    ``telemetry:*`` (or alerts), one item per ``receive()`` (``async for``).
(g) (f) consuming with ``receive_batch()``.
(h) (g) with 10 subscribers on the topic, all of them getting every message.

A variant the installed code cannot run (no ``receive_batch()`` yet, no
websockets) is shown as n/a with what it needs, and so are its goals.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Iterable

import trio

from . import _clients
from ._common import Config, Result, Row, faster, interleave, not_measured, quiet_logs
from ._frames import DEVICES, FRAMES
from ._server_proc import ServerProcess, server_process

NAME = "throughput"

A = "(a) trio-websocket get_message"
B = "(b) trio-websocket + json.loads"
C = "(c) websockets.trio recv + json.loads"
D = "(d) websockets.asyncio recv + json.loads"
E = "(e) ceiling: sans-I/O + msgspec + publish, batches"
F = "(f) trio_ws_bus, 1 subscriber, async for"
G = "(g) trio_ws_bus, 1 subscriber, receive_batch"
H = "(h) trio_ws_bus, 10 subscribers, receive_batch"
VARIANTS = (A, B, C, D, E, F, G, H)

#: The goals, per message kind: (name, faster variant, slower variant, target).
GOALS = (
    ("(f) async for / (c) websockets.trio", F, C, 1.1),
    ("(g) receive_batch / (d) websockets.asyncio", G, D, 1.25),
    ("(g) receive_batch / (e) ceiling", G, E, 0.7),
    ("(h) 10 subscribers / (g) 1 subscriber", H, G, 0.6),
    ("(f) async for / (a) trio-websocket get_message (0.1.0)", F, A, 0.85),
)


def websockets_available() -> bool:
    """Whether ``websockets`` is installed with its Trio client."""
    return importlib.util.find_spec("websockets") is not None and (
        importlib.util.find_spec("websockets.trio") is not None
    )


def missing() -> dict[str, str]:
    """The variants this installation cannot run, with what they need."""
    needs: dict[str, str] = {}
    if not websockets_available():
        needs.update(dict.fromkeys((C, D, E), not_measured("websockets with .trio")))
    if not _clients.has_receive_batch():
        needs.update(dict.fromkeys((G, H), not_measured("Subscription.receive_batch")))
    return needs


def _variants(
    server: ServerProcess, kind: str, n: int, skip: dict[str, str]
) -> dict[str, Callable[[], float]]:
    url = server.url(mode="push", kind=kind, n=n, devices=DEVICES)
    ours = functools.partial(_clients.ours, url.replace("ws://", "http://", 1), kind, n)
    variants: dict[str, Callable[[], float]] = {
        A: functools.partial(trio.run, _clients.trio_websocket_client, url, n, None),
        B: functools.partial(trio.run, _clients.trio_websocket_client, url, n),
        C: functools.partial(trio.run, _clients.websockets_trio_client, url, n),
        D: functools.partial(_clients.websockets_asyncio_client, url, n),
        E: functools.partial(trio.run, _clients.ceiling, url, kind, n),
        F: functools.partial(trio.run, ours),
        G: functools.partial(trio.run, functools.partial(ours, batched=True)),
        H: functools.partial(
            trio.run, functools.partial(ours, subscribers=10, batched=True)
        ),
    }
    return {name: run for name, run in variants.items() if name not in skip}


def message_counts(config: Config) -> dict[str, int]:
    """N per message kind for this run's size."""
    return {
        "telemetry": config.pick(50_000, 5_000, 200),
        "alerts": config.pick(10_000, 1_000, 50),
    }


def add_rows(
    result: Result,
    kind: str,
    variants: Iterable[str],
    samples: dict[str, list[float]],
    skip: dict[str, str],
) -> None:
    """One row per variant in order, in us/msg; n/a with its need if skipped."""
    for variant in variants:
        values = [v * 1e6 for v in samples.get(variant, [])]
        result.rows.append(Row(kind, variant, "us/msg", values, skip.get(variant, "")))


def run(config: Config) -> Result:
    """Measure every variant on telemetry and on alerts messages."""
    counts = message_counts(config)
    skip = missing()
    result = Result(
        NAME,
        "End-to-end throughput (loopback, server in its own process)",
        "The server writes N pre-encoded frames after the client's first "
        f"message (telemetry from {DEVICES:,} devices, the subscriber on "
        "telemetry:*); the client times the first to the N-th message. "
        "Variants interleaved per round with a rotating order; us per message.",
        params={
            "n": counts,
            "rounds": config.rounds,
            "devices": DEVICES,
            "frame_bytes": {k: len(FRAMES[k]().encode()) for k in counts},
            "receive_buffer": _clients.RECEIVE_BUFFER,
            "not_measured": skip,
        },
    )
    with quiet_logs(), server_process() as server:
        for kind, n in counts.items():
            samples = interleave(_variants(server, kind, n, skip), config.rounds)
            add_rows(result, kind, VARIANTS, samples, skip)
            for name, fast, slow, target in GOALS:
                result.goals.append(
                    faster(
                        f"{kind}: {name}",
                        result.row(kind, fast),
                        result.row(kind, slow),
                        target,
                    )
                )
    return result
