"""permessage-deflate: what compression costs a client, on and off.

The server process's second listener negotiates permessage-deflate
(websockets' sans-I/O server, default settings) and pushes N frames that it
compressed in advance, so its own cost is never timed; a client that offers no
compression gets the same frames uncompressed. Variants, interleaved round by
round (``bench/_clients.py``): trio_ws_bus with ``compression="deflate"`` (the
default) and with ``compression=None``, consuming with ``receive_batch()`` when
the installed trio_ws_bus has it (else ``async for``), and websockets' asyncio
client both ways, for comparison. Microseconds per message; no goal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import trio

from . import _clients
from ._common import Config, Result, interleave, not_measured, quiet_logs, ratio
from ._frames import DEVICES
from ._server_proc import server_process
from .throughput import add_rows, message_counts, websockets_available

NAME = "deflate"

OURS_DEFLATE = 'trio_ws_bus, compression="deflate"'
OURS_PLAIN = "trio_ws_bus, compression=None"
PEER_DEFLATE = 'websockets.asyncio, compression="deflate"'
PEER_PLAIN = "websockets.asyncio, compression=None"
PAIRS = ((OURS_DEFLATE, OURS_PLAIN), (PEER_DEFLATE, PEER_PLAIN))


def missing() -> dict[str, str]:
    """The variants this installation cannot run, with what they need."""
    needs: dict[str, str] = {}
    if not _clients.has_compression():
        needs.update(
            dict.fromkeys(
                PAIRS[0], not_measured("open_websocket_manager(compression=)")
            )
        )
    if not websockets_available():
        needs.update(dict.fromkeys(PAIRS[1], not_measured("websockets")))
    return needs


def _variants(
    url: str, kind: str, n: int, skip: dict[str, str]
) -> dict[str, Callable[[], float]]:
    ours = functools.partial(
        _clients.ours,
        url.replace("ws://", "http://", 1),
        kind,
        n,
        batched=_clients.has_receive_batch(),
    )
    peer = functools.partial(_clients.websockets_asyncio_client, url, n)
    variants: dict[str, Callable[[], float]] = {
        OURS_DEFLATE: functools.partial(
            trio.run, functools.partial(ours, compression="deflate")
        ),
        OURS_PLAIN: functools.partial(
            trio.run, functools.partial(ours, compression=None)
        ),
        PEER_DEFLATE: functools.partial(peer, compression="deflate"),
        PEER_PLAIN: functools.partial(peer, compression=None),
    }
    return {name: run for name, run in variants.items() if name not in skip}


def run(config: Config) -> Result:
    """Measure both clients with and without compression, on both message kinds."""
    counts = message_counts(config)
    skip = missing()
    result = Result(
        NAME,
        "permessage-deflate: the client's cost, compressed and not",
        "The server's deflate listener pushes N frames compressed in advance "
        "(plain frames to a client that does not offer compression); the "
        "client times the first to the N-th message. Interleaved per round; "
        "us per message.",
        params={
            "n": counts,
            "rounds": config.rounds,
            "devices": DEVICES,
            "ours_receive_batch": _clients.has_receive_batch(),
            "not_measured": skip,
        },
    )
    with quiet_logs(), server_process() as server:
        for kind, n in counts.items():
            url = server.url(deflate=True, mode="push", kind=kind, n=n, devices=DEVICES)
            samples = interleave(_variants(url, kind, n, skip), config.rounds)
            add_rows(
                result, kind, (name for pair in PAIRS for name in pair), samples, skip
            )
            for compressed, plain in PAIRS:
                rows = result.row(kind, compressed), result.row(kind, plain)
                if all(row.samples for row in rows):
                    value, low, high = ratio(*rows)
                    result.notes.append(
                        f"{kind}: {compressed} takes {value:.2f}x the time of "
                        f"compression=None (per-round {low:.2f}-{high:.2f})"
                    )
    return result
