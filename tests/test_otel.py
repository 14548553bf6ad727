"""trio_ws_bus.otel: statistics() as OpenTelemetry metrics, read by the SDK."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import trio
import trio.testing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from trio_ws_bus import Overflow, WebSocketManager, open_websocket_manager
from trio_ws_bus.otel import instrument
from trio_ws_bus.testing import ReferenceServer, make_alert, open_reference_server


def collect(reader: InMemoryMetricReader) -> dict[str, float]:
    """Every data point as ``name`` or ``name{key=value}`` -> value."""
    points: dict[str, float] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    labels = "".join(
                        f"{{{k}={v}}}" for k, v in point.attributes.items()
                    )
                    points[metric.name + labels] = point.value
    return points


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
async def server() -> AsyncIterator[ReferenceServer]:
    async with open_reference_server(listen=False) as server:
        yield server


def connect(server: ReferenceServer) -> AbstractAsyncContextManager[WebSocketManager]:
    return open_websocket_manager(
        "http://localhost", token=server.issue_token(), transport=server.transport
    )


async def busy_manager(server: ReferenceServer, manager: WebSocketManager) -> None:
    """Three alerts into a one-slot subscription, one invalid frame, one drop."""
    await server.wait_subscribed("alerts")
    for number in (1, 2, 3):
        await server.publish_alerts([make_alert(number)])
    await server.send_raw("not json")
    await server.drop_connections()
    await server.wait_handshakes(2)
    await manager.wait_connected()
    await trio.testing.wait_all_tasks_blocked()


async def test_metrics_report_the_statistics(
    server: ReferenceServer, reader: InMemoryMetricReader, autojump_clock: object
) -> None:
    """Messages, invalid, drops, attempts, reconnects and state become metrics."""
    async with connect(server) as manager:
        instrument(manager, meter_provider=MeterProvider(metric_readers=[reader]))
        async with manager.alerts(max_buffer=1):
            await busy_manager(server, manager)
            bus = manager.bus.statistics()
            assert collect(reader) == {
                "trio_ws_bus.messages{type=alerts}": 3,
                "trio_ws_bus.messages{type=telemetry}": 0,
                "trio_ws_bus.messages{type=ack}": manager.statistics().acks,
                "trio_ws_bus.messages{type=error}": 0,
                "trio_ws_bus.messages.invalid": 1,
                "trio_ws_bus.connection.attempts": 2,
                "trio_ws_bus.connection.reconnects": 1,
                "trio_ws_bus.bus.published": bus.published,
                "trio_ws_bus.bus.delivered": bus.delivered,
                "trio_ws_bus.bus.dropped{topic=alerts}": 2,
                "trio_ws_bus.bus.handler_errors": 0,
                "trio_ws_bus.connection.connected": 1,
                "trio_ws_bus.subscriptions": 1,
                "trio_ws_bus.bus.subscriptions": 1,
                "trio_ws_bus.bus.buffered": 1,
                "trio_ws_bus.bus.lag": 1,
            }
            assert bus.published > bus.delivered > 0


async def test_drops_per_topic_and_the_lag(
    server: ReferenceServer, reader: InMemoryMetricReader
) -> None:
    """bus.dropped has a point per subscription topic; buffered and lag the backlog."""
    async with connect(server) as manager:
        instrument(manager, meter_provider=MeterProvider(metric_readers=[reader]))
        bus = manager.bus
        async with (
            bus.subscribe("a", max_buffer=2) as stalled,
            bus.subscribe("b:*", max_buffer=3, overflow=Overflow.DROP_NEWEST),
            bus.subscribe("a") as reading,
        ):
            for number in range(5):
                bus.publish("a", number)
                assert reading.receive_nowait() == number
            for number in range(7):
                bus.publish("b:x", number)
            assert stalled.dropped == 3
            names = ("dropped", "buffered", "lag")
            assert {
                name: value
                for name, value in collect(reader).items()
                if name.removeprefix("trio_ws_bus.bus.").startswith(names)
            } == {
                "trio_ws_bus.bus.dropped{topic=a}": 3,
                "trio_ws_bus.bus.dropped{topic=b:*}": 4,
                "trio_ws_bus.bus.buffered": 2 + 3,
                "trio_ws_bus.bus.lag": 3,
            }


async def test_a_reader_in_another_thread_gets_the_same_values(
    server: ReferenceServer, reader: InMemoryMetricReader
) -> None:
    """The SDK's exporter thread reads the statistics through the Trio thread."""
    async with connect(server) as manager:
        instrument(
            manager,
            meter_provider=MeterProvider(metric_readers=[reader]),
            prefix="app.ws",
        )
        await manager.wait_connected()
        in_thread = await trio.to_thread.run_sync(collect, reader)
        assert in_thread["app.ws.connection.connected"] == 1
        assert in_thread == collect(reader)


async def test_close_stops_the_data_points(
    server: ReferenceServer, reader: InMemoryMetricReader, autojump_clock: object
) -> None:
    """After close(), a collection has no data point of the manager."""
    async with connect(server) as manager:
        await manager.wait_connected()
        provider = MeterProvider(metric_readers=[reader])
        with instrument(manager, meter_provider=provider):
            assert collect(reader)["trio_ws_bus.connection.attempts"] == 1
        assert collect(reader) == {}


def test_after_the_trio_run_the_metrics_are_empty(
    reader: InMemoryMetricReader,
) -> None:
    """Collecting once the manager's Trio run has ended observes nothing."""

    async def main() -> None:
        async with open_reference_server(listen=False) as server:
            async with connect(server) as manager:
                instrument(
                    manager, meter_provider=MeterProvider(metric_readers=[reader])
                )
                await manager.wait_connected()
                assert collect(reader)["trio_ws_bus.connection.connected"] == 1

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert collect(reader) == {}


def test_importing_the_library_does_not_import_opentelemetry() -> None:
    """Only ``import trio_ws_bus.otel`` brings OpenTelemetry in."""
    code = (
        "import sys, trio_ws_bus, trio_ws_bus.testing;"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_reference_page_lists_every_metric_with_its_unit() -> None:
    """The reference lists each metric, kind and unit as otel.py makes them."""
    from trio_ws_bus import otel

    page = Path(__file__).resolve().parent.parent / "docs" / "reference" / "otel.rst"
    rows = re.findall(
        r"^``([\w.]+)``\s+(counter|gauge)\s+``([^`]+)``\s+\S",
        page.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    made = [(name, "counter", unit) for name, unit, _, _ in otel._COUNTERS]
    made += [(name, "gauge", unit) for name, unit, _, _ in otel._GAUGES]
    assert rows == made
