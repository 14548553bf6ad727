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
(i) aiohttp's client, ``receive_str()`` + ``json.loads`` (its own asyncio loop).
(j) picows (Cython, asyncio), a frame callback + ``json.loads``.
(k) picows + msgspec's typed decode into trio_ws_bus's ``ServerMessage``
    structs: the fastest Python client we know.
(l) httpx-ws on Trio (through anyio), ``receive_text()`` + ``json.loads``.
(m) trio_ws_bus as a user writes it: ``async for`` over ``subscribe(topic)``
    with the default settings (no ``max_buffer``), 1 subscriber.
(n) (m) with 3 subscribers.
(o) ``receive_batch()`` at the default settings, 1 subscriber.

(a)-(h) buffer N messages per subscription and fail on any loss. (m)-(o)
count what arrived instead: each consumer stops once what it received plus
its subscription's ``dropped`` reaches N, its time is the burst's wall time
over N, and the "delivered" group shows received / N per round (for (n) the
subscriber that got the fewest).

A variant the installed code cannot run (no ``receive_batch()`` yet, no
websockets, picows, aiohttp or httpx-ws) is shown as n/a with what it needs,
and so are its goals.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Iterable

import trio

from . import _clients
from ._common import (
    Config,
    Goal,
    Result,
    Row,
    at_least,
    faster,
    interleave,
    not_measured,
    quiet_logs,
)
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
I = "(i) aiohttp receive_str + json.loads"  # noqa: E741
J = "(j) picows + json.loads"
K = "(k) picows + msgspec typed decode"
L = "(l) httpx-ws (Trio) + json.loads"
M = "(m) trio_ws_bus default, 1 subscriber, async for"
N = "(n) trio_ws_bus default, 3 subscribers, async for"
O = "(o) trio_ws_bus default, 1 subscriber, receive_batch"  # noqa: E741
VARIANTS = (A, B, C, D, I, J, K, L, E, F, G, H, M, N, O)
#: Ours at the default settings: losses are counted, not an error.
DEFAULTS = (M, N, O)
#: The peers that decode with ``json.loads``, for "the fastest json.loads peer".
JSON_PEERS = (B, C, D, I, J, L)

#: The goals, per message kind: (name, faster variant, slower variant, target).
GOALS = (
    ("(f) async for / (c) websockets.trio", F, C, 1.1),
    ("(g) receive_batch / (d) websockets.asyncio", G, D, 1.25),
    ("(g) receive_batch / (e) ceiling", G, E, 0.7),
    ("(h) 10 subscribers / (g) 1 subscriber", H, G, 0.6),
    ("(f) async for / (a) trio-websocket get_message (0.1.0)", F, A, 0.85),
    ("(m) default async for / (o) default receive_batch", M, O, 0.8),
    ("(g) receive_batch / (k) picows + msgspec typed", G, K, 0.7),
)
#: Ours at default settings that must deliver every message of the burst.
DELIVERS = (M, N)


def delivered_group(kind: str) -> str:
    """The table group of the delivered fractions of ``kind``."""
    return f"{kind} delivered"


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
        needs.update(
            dict.fromkeys((G, H, O), not_measured("Subscription.receive_batch"))
        )
    for module, variants in (("aiohttp", (I,)), ("picows", (J, K))):
        if not _clients.available(module):
            needs.update(dict.fromkeys(variants, not_measured(module)))
    if not (_clients.available("httpx") and _clients.available("httpx_ws")):
        needs[L] = not_measured("httpx and httpx-ws")
    return needs


def _variants(
    server: ServerProcess,
    kind: str,
    n: int,
    skip: dict[str, str],
    deliveries: dict[str, _clients.Delivery],
) -> dict[str, Callable[[], float]]:
    url = server.url(mode="push", kind=kind, n=n, devices=DEVICES)
    ours = functools.partial(_clients.ours, url.replace("ws://", "http://", 1), kind, n)

    def default(variant: str, **options: object) -> Callable[[], float]:
        run = functools.partial(
            ours, default=True, delivery=deliveries[variant], **options
        )
        return functools.partial(trio.run, run)

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
        I: functools.partial(_clients.aiohttp_client, url, n),
        J: functools.partial(_clients.picows_client, url, n),
        K: functools.partial(_clients.picows_client, url, n, typed=True),
        L: functools.partial(trio.run, _clients.httpx_ws_client, url, n),
        M: default(M),
        N: default(N, subscribers=3),
        O: default(O, batched=True),
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
            deliveries = {variant: _clients.Delivery() for variant in DEFAULTS}
            variants = _variants(server, kind, n, skip, deliveries)
            samples = interleave(variants, config.rounds)
            add_rows(result, kind, VARIANTS, samples, skip)
            for variant in DEFAULTS:
                result.rows.append(
                    Row(
                        delivered_group(kind),
                        variant,
                        "fraction",
                        deliveries[variant].last(len(samples.get(variant, []))),
                        skip.get(variant, ""),
                    )
                )
            result.goals.extend(_delivery_goal(result, kind, v, n) for v in DELIVERS)
            result.goals.append(_fastest_json_peer_goal(result, kind))
            for name, fast, slow, target in GOALS:
                goal = faster(
                    f"{kind}: {name}",
                    result.row(kind, fast),
                    result.row(kind, slow),
                    target,
                )
                result.goals.append(_flag_losses(result, kind, goal, (fast, slow)))
    return result


def _flag_losses(
    result: Result, kind: str, goal: Goal, variants: Iterable[str]
) -> Goal:
    """Say so in a speed goal's detail when a default variant in it lost messages.

    Its time per message is then the burst's wall time over N, which skipped
    the consumer's work for what was dropped: not like for like with a peer.
    """
    for variant in variants:
        if variant not in DEFAULTS or goal.value is None:
            continue
        fractions = result.row(delivered_group(kind), variant).samples
        if fractions and min(fractions) < 1:
            label = variant.split(" ", 1)[0]
            goal.detail += f"; {label} delivered only {min(fractions):.0%}"
    return goal


def _delivery_goal(result: Result, kind: str, variant: str, n: int) -> Goal:
    """Every message of the burst delivered, in every round (the worst round)."""
    name = f"{kind}: {variant.split(' ', 1)[0]} default delivers all of {n:,}"
    row = result.row(delivered_group(kind), variant)
    if not row.samples:
        return Goal(name, None, ">= 1", None, row.note)
    return at_least(name, min(row.samples), 1.0, "delivered fraction, worst round")


def _fastest_json_peer_goal(result: Result, kind: str) -> Goal:
    """(m) against the json.loads peer with the lowest median time per message."""
    measured = [result.row(kind, peer) for peer in JSON_PEERS]
    measured = [row for row in measured if row.samples]
    ours = result.row(kind, M)
    name = f"{kind}: (m) default async for / fastest json.loads peer"
    if not measured:
        return Goal(name, None, ">= 1.25", None, not_measured("a json.loads peer"))
    best = min(measured, key=lambda row: row.median)
    goal = faster(name, ours, best, 1.25)
    if goal.value is not None:
        goal.detail = f"{best.variant.split(' ', 1)[0]}, {goal.detail}"
    return _flag_losses(result, kind, goal, (M,))
