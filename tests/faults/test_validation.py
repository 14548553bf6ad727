"""Data: what the server sends is validated item by item, end to end.

Issue 10's "Data" scenarios through ``open_websocket_manager`` and the
reference server's memory transport: a bad alert costs only itself, a
reading keeps its numeric metrics, and everything rejected lands on
``INVALID_TOPIC`` with its raw text, scrubbed of the live token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing
from helpers import TIMESTAMP, manager_on

from trio_ws_bus import (
    ALERTS_TOPIC,
    INVALID_TOPIC,
    Alert,
    InvalidItem,
    Telemetry,
    WebSocketManager,
)
from trio_ws_bus.testing import ReferenceServer, make_alert, open_reference_server

TOKEN = "live-token-Zq8xW3"

#: Index in the batch of ten -> the override that makes that alert invalid.
BROKEN = {
    2: {"severity": "critical"},
    4: {"summary": None},
    6: {"alert_id": "A-17"},
    8: {"created_at": 1700000000},
}


@asynccontextmanager
async def received() -> AsyncIterator[
    tuple[ReferenceServer, WebSocketManager, list[Any], list[InvalidItem]]
]:
    """A connected manager with every alert batch and invalid item it publishes."""
    async with open_reference_server(listen=False) as server:
        server.accept_token(TOKEN)
        async with manager_on(server, token=TOKEN) as (manager, _):
            batches: list[Any] = []
            invalid: list[InvalidItem] = []
            manager.bus.on(ALERTS_TOPIC, batches.append)
            manager.bus.on(INVALID_TOPIC, invalid.append)
            await manager.wait_connected()
            yield server, manager, batches, invalid


async def send(server: ReferenceServer, message: str | bytes) -> None:
    """Send one raw frame and let the client route it."""
    assert await server.send_raw(message) == 1
    await trio.testing.wait_all_tasks_blocked()


def broken_alert(index: int) -> dict[str, Any]:
    return {**make_alert(index), **BROKEN.get(index, {})}


def alerts_frame(alerts: list[dict[str, Any]]) -> str:
    return json.dumps({"type": "alerts", "alerts": alerts})


async def test_a_batch_keeps_its_valid_alerts_and_rejects_each_bad_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Ten alerts, four broken: six arrive in order as one tuple, four InvalidItems."""
    alerts = [broken_alert(i) for i in range(10)]
    async with received() as (server, manager, batches, invalid):
        await send(server, alerts_frame(alerts))
        assert len(batches) == 1
        assert type(batches[0]) is tuple
        assert all(type(alert) is Alert for alert in batches[0])
        assert [a.alert_id for a in batches[0]] == [0, 1, 3, 5, 7, 9]
        assert [item.reason.split(":")[0] for item in invalid] == [
            f"invalid alert {i}" for i in BROKEN
        ]
        for item, (index, override) in zip(invalid, BROKEN.items(), strict=True):
            (field,) = override
            assert f"$.{field}" in item.reason
            assert json.loads(item.raw) == alerts[index]
        stats = manager.statistics()
        assert stats.invalid_messages == 4
        assert stats.alerts_messages == 1


async def test_a_batch_without_a_valid_alert_publishes_no_alerts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Only broken alerts: nothing on ALERTS_TOPIC, one InvalidItem each."""
    alerts = [broken_alert(i) for i in BROKEN]
    async with received() as (server, manager, batches, invalid):
        await send(server, alerts_frame(alerts))
        assert batches == []
        assert len(invalid) == 4
        assert manager.statistics().alerts_messages == 0


async def test_a_reading_keeps_numeric_metrics_and_shows_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A string, a null and an object go to other_metrics, counted; numbers stay."""
    metrics = {"t": 21.5, "n": 3, "ok": True, "fw": "1.4.2", "gone": None}
    metrics["pos"] = {"lat": 1.0, "lon": 2.0}
    data = {"timestamp": TIMESTAMP, "metrics": metrics}
    reading = {"type": "telemetry", "device_id": "d1", "data": data}
    async with received() as (server, manager, _, invalid):
        async with manager.telemetry("d1") as d1:
            await server.wait_subscribed("device", "d1")
            await send(server, json.dumps(reading))
            telemetry = await d1.receive()
        assert type(telemetry) is Telemetry
        assert telemetry.metrics == {"t": 21.5, "n": 3, "ok": True}
        assert telemetry.other_metrics == {
            "fw": "1.4.2",
            "gone": None,
            "pos": {"lat": 1.0, "lon": 2.0},
        }
        assert invalid == []
        stats = manager.statistics()
        assert (stats.other_metrics, stats.telemetry_messages) == (3, 1)


async def test_unknown_fields_count_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Fields the protocol does not define are ignored: no invalid, no other metric."""
    alert = {**make_alert(1), "priority": "high"}
    data = {"timestamp": "ts", "metrics": {"t": 1}, "unit": "C"}
    reading = {"type": "telemetry", "device_id": "d1", "data": data, "extra": [1]}
    async with received() as (server, manager, batches, invalid):
        async with manager.telemetry("d1") as d1:
            await server.wait_subscribed("device", "d1")
            await send(server, json.dumps({"type": "alerts", "alerts": [alert]}))
            await send(server, json.dumps(reading))
            assert d1.receive_nowait().other_metrics == {}
        assert [a.alert_id for a in batches[0]] == [1]
        assert invalid == []
        stats = manager.statistics()
        assert (stats.invalid_messages, stats.other_metrics) == (0, 0)


async def test_whole_frames_that_are_no_message_land_on_invalid(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Bad JSON, an unknown type and a binary frame: one InvalidItem each, raw kept."""
    frames: list[str | bytes] = ['{"type": "alerts", ', '{"type": "nope"}', b"\x00b"]
    async with received() as (server, manager, batches, invalid):
        for frame in frames:
            await send(server, frame)
        assert [item.raw for item in invalid] == [
            '{"type": "alerts", ',
            '{"type": "nope"}',
            "\x00b",
        ]
        assert invalid[0].reason.startswith("malformed JSON")
        assert invalid[1].reason == "unknown message type"
        assert invalid[2].reason == "binary frame"
        assert manager.statistics().invalid_messages == 3
        assert manager.is_connected
        assert batches == []


async def test_raw_text_on_invalid_never_holds_the_live_token(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The server echoes the token in an invalid alert: the raw text shows ***."""
    encoded = json.dumps(TOKEN + "/")[1:-1]
    alert = {**make_alert(1), "summary": TOKEN, "severity": f"token={TOKEN}"}
    async with received() as (server, _, _batches, invalid):
        await send(server, alerts_frame([alert]))
        await send(server, f'{{"type":"nope","echo":"{encoded}"}}')
        await send(server, f"binary {TOKEN}".encode())
        assert len(invalid) == 3
        for item in invalid:
            assert TOKEN not in item.raw
            assert "***" in item.raw
