"""A dashboard: the latest values of several devices, redrawn every second.

Each device has its own ``manager.telemetry(device_id)`` subscription, read by
its own task, as one widget per device would; one ``bus.subscribe("telemetry:*")``
subscription sees every reading and counts them for the "updates" column.

Run against an embedded reference server (needs ``pip install -e '.[testing]'``):

    python examples/dashboard.py --duration 5

or against a backend, with the token in the ``WS_TOKEN`` environment variable:

    WS_TOKEN=... python examples/dashboard.py --url https://ops.example.com --device d1
"""

from __future__ import annotations

import argparse
import os
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

import trio

from trio_ws_bus import Telemetry, WebSocketManager, open_websocket_manager

if TYPE_CHECKING:
    from trio_ws_bus.testing import ReferenceServer

DEFAULT_DEVICES = ("device-1", "device-2", "device-3")
TOKEN_VARIABLE = "WS_TOKEN"


async def publish_demo_feed(server: ReferenceServer, devices: Sequence[str]) -> None:
    """Stand in for a backend: telemetry for every device, four times a second."""
    rng = random.Random(1)
    while True:
        for device_id in devices:
            metrics = {
                "temperature": round(rng.uniform(35.0, 60.0), 1),
                "rpm": rng.randrange(900, 2500),
            }
            await server.publish_telemetry(device_id, metrics)
        await trio.sleep(0.25)


@asynccontextmanager
async def backend(
    url: str | None, devices: Sequence[str]
) -> AsyncIterator[tuple[str, Callable[[], str | None]]]:
    """Yield ``(url, token provider)``: the given backend, or an embedded one."""
    if url is not None:
        yield url, lambda: os.environ.get(TOKEN_VARIABLE)
        return
    from trio_ws_bus.testing import open_reference_server

    async with open_reference_server() as server, trio.open_nursery() as nursery:
        nursery.start_soon(publish_demo_feed, server, devices)
        yield server.url, server.issue_token
        nursery.cancel_scope.cancel()


def render(
    latest: dict[str, Telemetry], updates: Counter[str], title: str
) -> list[str]:
    """The dashboard as lines of text: one row per device, one column per metric."""
    metrics = sorted({name for reading in latest.values() for name in reading.metrics})
    width = max([8, *map(len, latest)])
    header = f"{'device':<{width}}  {'updates':>7}" + "".join(
        f"  {name:>12}" for name in metrics
    )
    rows = [title, header]
    for device_id in sorted(latest):
        values = latest[device_id].metrics
        row = f"{device_id:<{width}}  {updates[device_id]:>7}"
        row += "".join(f"  {values.get(name, '-')!s:>12}" for name in metrics)
        rows.append(row)
    return rows


async def follow_device(
    manager: WebSocketManager, device_id: str, latest: dict[str, Telemetry]
) -> None:
    """One widget: keep ``latest[device_id]`` up to date."""
    async with manager.telemetry(device_id) as readings:
        async for reading in readings:
            latest[device_id] = reading


async def count_updates(manager: WebSocketManager, updates: Counter[str]) -> None:
    """Count every telemetry reading, whatever the device."""
    async with manager.bus.subscribe("telemetry:*") as readings:
        async for reading in readings:
            updates[reading.device_id] += 1


async def main(
    url: str | None = None,
    devices: Sequence[str] = DEFAULT_DEVICES,
    duration: float = 5.0,
) -> None:
    """Show the dashboard for ``duration`` seconds."""
    latest: dict[str, Telemetry] = {}
    updates: Counter[str] = Counter()
    start = trio.current_time()
    async with (
        backend(url, devices) as (base_url, token),
        open_websocket_manager(base_url, token=token) as manager,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(count_updates, manager, updates)
        for device_id in devices:
            nursery.start_soon(follow_device, manager, device_id, latest)
        end = start + duration
        while trio.current_time() < end:
            await trio.sleep(min(1.0, end - trio.current_time()))
            elapsed = trio.current_time() - start
            title = f"--- {elapsed:.1f} s, {manager.status.value} ---"
            print("\n".join(render(latest, updates, title)), flush=True)
        nursery.cancel_scope.cancel()


def parse_args() -> argparse.Namespace:
    """The command line of this example."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", help=f"backend base URL (token from ${TOKEN_VARIABLE})"
    )
    parser.add_argument("--device", action="append", dest="devices", metavar="ID")
    parser.add_argument("--duration", type=float, default=5.0, metavar="SECONDS")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    with suppress(KeyboardInterrupt):  # Ctrl-C: stop without a traceback
        trio.run(main, args.url, tuple(args.devices or DEFAULT_DEVICES), args.duration)
