"""Reconnect latency: from a dropped connection back to subscriptions replayed.

The out-of-process server (``mode=reconnect``) acknowledges ``subscribe``
requests like the real backend. Once all S subscriptions of a connection have
arrived it waits a moment, then drops the TCP connection without a close
handshake; its listener stays open, so the server is listening again from the
instant of the drop (t_listening = t_drop). The manager (``Backoff(base=0.05)``,
no jitter) notices the drop, publishes ``disconnected`` with ``retry_in``,
waits that backoff delay, reconnects and replays its S subscriptions; the
server notes when the last one arrives (t_replayed). Both timestamps are taken
in the server process.

Result, per reconnect: (t_replayed - t_listening) - backoff delay, in
milliseconds: detecting the drop, the new TCP connection, the opening
handshake, the token call and the replay.
"""

from __future__ import annotations

import uuid

import trio

import trio_ws_bus
from trio_ws_bus import CONNECTION_TOPIC, Backoff, ConnectionEvent

from ._common import Config, Result, Row, at_most, quiet_logs
from ._server_proc import server_process

NAME = "reconnect"
BASE = 0.05
SETTLE = 0.05
SUBSCRIPTIONS = 10  # alerts + 9 devices
GOAL_MS = 10.0
#: Every reconnect waits ``BASE``: each connection stays up longer than
#: ``reset_after`` (SETTLE), which resets the retry count, and factor 1 keeps
#: the delay constant even if it did not.
BACKOFF = Backoff(base=BASE, factor=1.0, reset_after=SETTLE / 5)


async def _cycles(url: str, cycles: int) -> list[float]:
    """Let the server drop us ``cycles`` times; return the backoff delays used."""
    delays: list[float] = []

    def on_event(event: ConnectionEvent) -> None:
        if event.retry_in is not None:
            delays.append(event.retry_in)

    bus = trio_ws_bus.MessageBus()
    bus.on(CONNECTION_TOPIC, on_event)
    with trio.fail_after(30 + cycles * 2):
        async with trio_ws_bus.open_websocket_manager(
            url, token="bench", bus=bus, backoff=BACKOFF
        ) as manager:
            manager.subscribe("alerts")
            for index in range(SUBSCRIPTIONS - 1):
                manager.subscribe("device", f"dev-{index}")
            # Every connection's replay is acknowledged, the last one included.
            # Acks are not published on the bus: poll the manager's counters.
            expected = SUBSCRIPTIONS * (cycles + 1)
            while manager.statistics().acks < expected:  # noqa: ASYNC110
                await trio.sleep(0.005)
    return delays


def run(config: Config) -> Result:
    """Measure ``config.rounds`` x 4 reconnects (at least 2)."""
    cycles = config.pick(max(2, config.rounds * 4), max(2, config.rounds), 2)
    run_id = uuid.uuid4().hex[:8]
    with quiet_logs(), server_process() as server:
        url = server.url(
            "http",
            mode="reconnect",
            run=run_id,
            subs=SUBSCRIPTIONS,
            cycles=cycles,
            settle=SETTLE,
        )
        delays = trio.run(_cycles, url, cycles)
    took = [
        float(line.split()[2])
        for line in server.output
        if line.startswith(f"RECONNECT {run_id} ")
    ]
    if len(took) != cycles or len(delays) != cycles:
        raise RuntimeError(
            f"expected {cycles} reconnects, the server saw {len(took)} "
            f"and the manager waited {len(delays)} times"
        )
    overhead = [(t - d) * 1e3 for t, d in zip(took, delays, strict=True)]
    result = Result(
        NAME,
        "Reconnect latency: server listening again -> subscriptions replayed",
        "The server drops the TCP connection (listener still open) once a "
        f"connection's {SUBSCRIPTIONS} subscriptions arrived; the time to the "
        "last replayed subscription on the next connection, minus the backoff "
        f"delay the manager announced ({BACKOFF!r}); ms, per reconnect.",
        params={
            "reconnects": cycles,
            "subscriptions": SUBSCRIPTIONS,
            "backoff_base": BASE,
            "delays": sorted(set(delays)),
        },
    )
    result.rows.append(
        Row("reconnect", "t_replayed - t_listening", "ms", [t * 1e3 for t in took])
    )
    result.rows.append(Row("reconnect", "minus the backoff delay", "ms", overhead))
    median = result.row("reconnect", "minus the backoff delay").median
    result.goals.append(
        at_most(
            "reconnect + replay beyond the backoff delay (ms, median)",
            median,
            GOAL_MS,
            f"max {max(overhead):.1f} ms",
        )
    )
    return result
