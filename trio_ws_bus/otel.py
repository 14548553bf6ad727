"""OpenTelemetry metrics from a manager's and its bus's ``statistics()``.

Optional: ``pip install 'trio-ws-bus[otel]'`` installs the OpenTelemetry API,
and the application picks the SDK and exporter. ``import trio_ws_bus`` never
imports this module or OpenTelemetry.

Every instrument is observable: nothing runs on the connection's hot path, and
each callback reads one snapshot of the statistics when the application's
metric reader collects. A reader collecting from outside the Trio run (the
SDK's periodic exporter, in its own thread) gets the snapshot through
``trio.from_thread``, so the statistics are only ever read inside the run;
once that run has ended, the instruments observe nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final

import attrs
import trio
from opentelemetry.metrics import (
    CallbackOptions,
    MeterProvider,
    Observation,
    get_meter_provider,
)

from ._bus import BusStatistics
from ._events import ConnectionStatus
from ._manager import WebSocketManager
from ._statistics import ManagerStatistics
from ._version import __version__

__all__ = ["Instrumentation", "instrument"]

_Snapshot = tuple[ManagerStatistics, BusStatistics]


def _messages(m: ManagerStatistics, b: BusStatistics) -> Iterator[Observation]:
    yield Observation(m.alerts_messages, {"type": "alerts"})
    yield Observation(m.telemetry_messages, {"type": "telemetry"})
    yield Observation(m.acks, {"type": "ack"})
    yield Observation(m.server_errors, {"type": "error"})


#: (name after the prefix, unit, description, the observations of one snapshot)
_Reading = Callable[[ManagerStatistics, BusStatistics], Iterable[Observation]]
_COUNTERS: Final[tuple[tuple[str, str, str, _Reading], ...]] = (
    (
        "messages",
        "{message}",
        "Valid messages received, by type: alerts, telemetry, ack, error.",
        _messages,
    ),
    (
        "messages.invalid",
        "{message}",
        "Messages or items rejected as invalid (also published on INVALID_TOPIC).",
        lambda m, b: [Observation(m.invalid_messages)],
    ),
    (
        "connection.attempts",
        "{attempt}",
        "Connection attempts made.",
        lambda m, b: [Observation(m.attempts)],
    ),
    (
        "connection.reconnects",
        "{connection}",
        "Successful connections after the first one.",
        lambda m, b: [Observation(m.reconnects)],
    ),
    (
        "bus.published",
        "{message}",
        "Calls to MessageBus.publish().",
        lambda m, b: [Observation(b.published)],
    ),
    (
        "bus.delivered",
        "{message}",
        "Deliveries to subscriptions and handlers.",
        lambda m, b: [Observation(b.delivered)],
    ),
    (
        "bus.dropped",
        "{message}",
        "Messages lost to subscribers' overflow policies, by subscription topic.",
        lambda m, b: [
            Observation(count, {"topic": topic})
            for topic, count in b.dropped_by_topic.items()
        ],
    ),
    (
        "bus.handler_errors",
        "{error}",
        "Bus handler calls that raised.",
        lambda m, b: [Observation(b.handler_errors)],
    ),
)
_GAUGES: Final[tuple[tuple[str, str, str, _Reading], ...]] = (
    (
        "connection.connected",
        "1",
        "1 while the WebSocket is connected, else 0.",
        lambda m, b: [Observation(int(m.status is ConnectionStatus.CONNECTED))],
    ),
    (
        "subscriptions",
        "{subscription}",
        "Server subscriptions the manager keeps (replayed on reconnect).",
        lambda m, b: [Observation(m.subscriptions)],
    ),
    (
        "bus.subscriptions",
        "{subscription}",
        "Open bus subscriptions.",
        lambda m, b: [Observation(b.subscriptions)],
    ),
    (
        "bus.buffered",
        "{message}",
        "Messages waiting in open bus subscriptions, all together.",
        lambda m, b: [Observation(b.buffered)],
    ),
    (
        "bus.lag",
        "{message}",
        "Messages waiting in the fullest open bus subscription.",
        lambda m, b: [Observation(b.max_buffered)],
    ),
)


@attrs.define(eq=False)
class Instrumentation:
    """The instruments reporting one manager; made by :func:`instrument`.

    OpenTelemetry cannot unregister an instrument, so :meth:`close` makes them
    observe nothing from then on and lets go of the manager. Also a context
    manager that closes on exit.
    """

    _manager: WebSocketManager | None
    _trio_token: trio.lowlevel.TrioToken

    def close(self) -> None:
        """Stop reporting; the metrics get no more data points. Idempotent."""
        self._manager = None

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _snapshot(self) -> _Snapshot | None:
        manager = self._manager
        if manager is None:
            return None

        def read() -> _Snapshot:
            return manager.statistics(), manager.bus.statistics()

        try:
            in_run = trio.lowlevel.current_trio_token() is self._trio_token
        except RuntimeError:
            in_run = False
        if in_run:
            return read()
        try:
            return trio.from_thread.run_sync(read, trio_token=self._trio_token)
        except trio.RunFinishedError:
            return None

    def _callback(
        self, reading: _Reading
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            snapshot = self._snapshot()
            return [] if snapshot is None else list(reading(*snapshot))

        return observe


def instrument(
    manager: WebSocketManager,
    *,
    meter_provider: MeterProvider | None = None,
    prefix: str = "trio_ws_bus",
) -> Instrumentation:
    """Report ``manager.statistics()`` and its bus's as OpenTelemetry metrics.

    Call it in the Trio run that owns the manager, for example right after
    ``open_websocket_manager()``. The metrics (``prefix.`` plus the name):

    * counters ``messages`` (attribute ``type``: ``alerts``, ``telemetry``,
      ``ack``, ``error``), ``messages.invalid``, ``connection.attempts``,
      ``connection.reconnects``, ``bus.published``, ``bus.delivered``,
      ``bus.dropped`` (attribute ``topic``: the topic or pattern of the
      subscriptions that lost messages, one data point per topic, none
      before the first loss), ``bus.handler_errors``;
    * gauges ``connection.connected`` (1 or 0), ``subscriptions`` (server
      subscriptions), ``bus.subscriptions`` (open bus subscriptions),
      ``bus.buffered`` (messages waiting in them) and ``bus.lag`` (messages
      waiting in the fullest one: how far the slowest subscriber is behind).

    Args:
        manager: The manager to report.
        meter_provider: Where the instruments are made; the global one
            (``opentelemetry.metrics.get_meter_provider()``) by default.
        prefix: The metrics' name prefix. Instrument two managers on one meter
            provider with two prefixes: one name reports one manager.

    Returns:
        The handle that stops the reporting.

    Raises:
        RuntimeError: If called outside a Trio run.
    """
    handle = Instrumentation(manager, trio.lowlevel.current_trio_token())
    provider = get_meter_provider() if meter_provider is None else meter_provider
    meter = provider.get_meter("trio_ws_bus", __version__)
    for name, unit, description, reading in _COUNTERS:
        meter.create_observable_counter(
            f"{prefix}.{name}", [handle._callback(reading)], unit, description
        )
    for name, unit, description, reading in _GAUGES:
        meter.create_observable_gauge(
            f"{prefix}.{name}", [handle._callback(reading)], unit, description
        )
    return handle
