"""How-to: report a manager's statistics through the OpenTelemetry SDK.

Run: python docs/examples/otel_metrics.py (needs the testing and otel extras
and opentelemetry-sdk). It runs in memory under Trio's mock clock and collects
with the SDK's in-memory reader, so it prints what an exporter would get.
"""

from __future__ import annotations

import trio
import trio.testing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    InMemoryMetricReader,
    MetricReader,
    NumberDataPoint,
    PeriodicExportingMetricReader,
)

import trio_ws_bus.otel
from trio_ws_bus import open_websocket_manager
from trio_ws_bus.testing import make_alert, open_reference_server


def service_reader() -> MetricReader:
    """What a service reads with: an export every 60 s (OTLP in production)."""
    return PeriodicExportingMetricReader(
        ConsoleMetricExporter(), export_interval_millis=60_000
    )


def meter_provider(reader: MetricReader) -> MeterProvider:
    """The SDK's MeterProvider, collected by ``reader``: set it up once."""
    return MeterProvider(metric_readers=[reader])


def print_metrics(reader: InMemoryMetricReader) -> None:
    """Print every data point ``reader`` collects now: what an exporter gets."""
    data = reader.get_metrics_data()
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in sorted(scope_metrics.metrics, key=lambda m: m.name):
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)  # no histograms
                    attributes = point.attributes or {}
                    labels = "".join(f" {k}={v!s}" for k, v in attributes.items())
                    print(f"{metric.name} [{metric.unit}]{labels} = {point.value}")


async def main() -> None:
    reader = InMemoryMetricReader()  # service_reader() in a service
    provider = meter_provider(reader)
    try:
        async with (
            open_reference_server(listen=False) as server,
            open_websocket_manager(
                "http://localhost",
                token=server.issue_token,
                transport=server.transport,
            ) as manager,
        ):
            # The one call: the manager's statistics become metrics.
            with trio_ws_bus.otel.instrument(manager, meter_provider=provider):
                async with manager.alerts() as alerts:
                    await server.wait_subscribed("alerts")
                    await server.publish_alerts([make_alert(1, summary="Overheat")])
                    await server.publish_alerts([make_alert(2, summary="Pressure")])
                    for _ in range(2):
                        (alert,) = await alerts.receive()
                        print(f"alert {alert.alert_id}: {alert.summary}")
                    print_metrics(reader)
    finally:
        provider.shutdown()


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
