"""A synthetic feed for the reference server: devices with drifting metrics.

Two layers, as everywhere in trio_ws_bus:

* :class:`FeedModel` is pure: seeded with an integer, it says what the next
  telemetry readings and the next alert are. No clock, no I/O, so the same
  seed always gives the same sequence.
* :class:`SyntheticFeed` drives a model on a :class:`ReferenceServer` with
  Trio's clock: a round of telemetry every ``telemetry_interval``, an alert
  now and then, and optionally a simulated connection drop (all connections
  vanish, clients see 1006) so reconnect and replay are visible. It reads only
  :func:`trio.current_time`, so it runs under ``MockClock`` too.

The ``trio-ws-bus demo`` and ``serve`` commands use it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, Final, NoReturn

import attrs
import trio

from ._factories import make_alert
from ._server import ReferenceServer

__all__ = [
    "MAX_DEVICES",
    "FeedModel",
    "FeedSchedule",
    "SyntheticFeed",
    "device_ids",
]

MAX_DEVICES: Final = 100
"""The most devices a feed simulates."""

#: Alert kinds the model raises, with their severity.
_HIGH_TEMPERATURE: Final = ("HIGH_TEMPERATURE", 4)
_LOW_BATTERY: Final = ("LOW_BATTERY", 2)
_RPM_OUT_OF_RANGE: Final = ("RPM_OUT_OF_RANGE", 3)
_NO_HEARTBEAT: Final = ("NO_HEARTBEAT", 5)


def device_ids(count: int) -> tuple[str, ...]:
    """Return the ids of ``count`` simulated devices: ``device-1``, ``device-2``...

    Raises:
        ValueError: If ``count`` is not between 1 and :data:`MAX_DEVICES`.
    """
    if isinstance(count, bool) or not 1 <= count <= MAX_DEVICES:
        raise ValueError(f"count must be between 1 and {MAX_DEVICES}, got {count!r}")
    return tuple(f"device-{i}" for i in range(1, count + 1))


@attrs.define
class _Device:
    """The simulated state of one device."""

    device_id: str
    setpoint: float  # the temperature it drifts around, in degrees C
    temperature: float
    nominal_rpm: int
    rpm: int
    battery: float  # percent


class FeedModel:
    """What the feed publishes next: seeded, with no clock and no I/O.

    Each device has a temperature that drifts around its own set point, a
    fan speed around its nominal value and a battery that drains and
    recharges. Alerts are about a random device and describe its current
    state.

    Args:
        devices: The device ids to simulate, in publishing order.
        seed: Seed of the random source; the same seed gives the same
            readings and alerts.

    Raises:
        ValueError: If ``devices`` is empty.
    """

    def __init__(self, devices: Sequence[str], *, seed: int | None = None) -> None:
        if not devices:
            raise ValueError("a feed needs at least one device")
        self._rng = random.Random(seed)
        self._devices = [self._new_device(device_id) for device_id in devices]
        self._next_alert_id = 1

    def _new_device(self, device_id: str) -> _Device:
        rng = self._rng
        setpoint = round(rng.uniform(35.0, 60.0), 1)
        nominal_rpm = rng.randrange(1000, 2400, 100)
        return _Device(
            device_id=device_id,
            setpoint=setpoint,
            temperature=setpoint,
            nominal_rpm=nominal_rpm,
            rpm=nominal_rpm,
            battery=float(rng.randrange(60, 101)),
        )

    @property
    def device_ids(self) -> tuple[str, ...]:
        """The simulated devices, in publishing order."""
        return tuple(device.device_id for device in self._devices)

    def readings(self) -> list[tuple[str, dict[str, float | int | bool]]]:
        """Advance every device one step; return ``(device_id, metrics)`` pairs.

        Metrics: ``temperature`` (degrees C, one decimal), ``rpm`` (int) and
        ``battery`` (percent, int).
        """
        rng = self._rng
        result: list[tuple[str, dict[str, float | int | bool]]] = []
        for device in self._devices:
            # Mean-reverting random walk, with an occasional heat spike.
            pull = 0.2 * (device.setpoint - device.temperature)
            spike = rng.uniform(8.0, 15.0) if rng.random() < 0.03 else 0.0
            device.temperature += pull + rng.gauss(0.0, 1.2) + spike
            device.rpm = max(0, device.nominal_rpm + round(rng.gauss(0.0, 60.0)))
            device.battery -= rng.uniform(0.1, 0.6)
            if device.battery < 15.0:
                device.battery = 100.0  # swapped for a charged one
            result.append(
                (
                    device.device_id,
                    {
                        "temperature": round(device.temperature, 1),
                        "rpm": device.rpm,
                        "battery": math.floor(device.battery),
                    },
                )
            )
        return result

    def next_alert(self, created_at: datetime) -> dict[str, Any]:
        """Return the next alert (a wire dict), about a random device.

        Args:
            created_at: The alert's ``created_at`` (timezone-aware).
        """
        rng = self._rng
        device = rng.choice(self._devices)
        kind = rng.choices(
            (_HIGH_TEMPERATURE, _LOW_BATTERY, _RPM_OUT_OF_RANGE, _NO_HEARTBEAT),
            weights=(4, 2, 2, 1),
        )[0]
        alert_type, severity = kind
        limit: float | int
        if kind is _HIGH_TEMPERATURE:
            limit = round(device.setpoint + 10.0)
            value: float | int = round(max(device.temperature, limit + 0.1), 1)
            summary = f"Temperature {value} C above {limit} C"
        elif kind is _LOW_BATTERY:
            limit = 30
            value = min(math.floor(device.battery), limit - 1)
            summary = f"Battery at {value} %"
        elif kind is _RPM_OUT_OF_RANGE:
            limit = device.nominal_rpm - 500
            value = limit - rng.randrange(10, 300)
            summary = f"Fan at {value} rpm, below {limit} rpm"
        else:
            limit = 30
            value = rng.randrange(31, 90)
            summary = f"No heartbeat for {value} s"
        alert_id = self._next_alert_id
        self._next_alert_id += 1
        return make_alert(
            alert_id,
            tenant_id="tenant-demo",
            device_id=device.device_id,
            alert_type=alert_type,
            severity=severity,
            summary=summary,
            status="OPEN",
            created_at=_iso(created_at),
            fingerprint=f"{device.device_id}:{alert_type}",
            details={"value": value, "limit": limit},
        )

    def alert_gap(self, mean: float) -> float:
        """Seconds until the alert after this one: between 0.5 and 1.5 x ``mean``."""
        return mean * self._rng.uniform(0.5, 1.5)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _positive_or_none(
    instance: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be > 0 or None, got {value!r}")


def _positive(
    instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class FeedSchedule:
    """When a :class:`SyntheticFeed` publishes, in seconds from its start.

    Attributes:
        telemetry_interval: Seconds between two rounds of telemetry (one
            reading per device per round); the first round comes after half
            an interval.
        alert_interval: Mean seconds between two alerts.
        first_alert_after: Seconds until the first alert.
        drop_at: Drop every connection once, this many seconds after the
            start (``None``: never).
        drop_every: Drop every connection periodically (``None``: never).
    """

    telemetry_interval: float = attrs.field(default=0.5, validator=_positive)
    alert_interval: float = attrs.field(default=2.0, validator=_positive)
    first_alert_after: float = attrs.field(default=0.6, validator=_positive)
    drop_at: float | None = attrs.field(default=None, validator=_positive_or_none)
    drop_every: float | None = attrs.field(default=None, validator=_positive_or_none)


@attrs.define(eq=False)
class SyntheticFeed:
    """Publishes a :class:`FeedModel` on a reference server on a schedule.

    Telemetry and alerts reach only the connections subscribed to them, as
    with a real backend: what is published while a client is disconnected is
    lost to it.

    Attributes:
        server: The server to publish on.
        model: What to publish.
        schedule: When to publish.
        on_drop: Called with the number of connections dropped, after each
            simulated drop.
        readings_published: Readings published so far (per device).
        alerts_published: Alerts published so far.
        drops: Simulated drops so far.
    """

    server: ReferenceServer
    model: FeedModel
    schedule: FeedSchedule = attrs.field(factory=FeedSchedule)
    on_drop: Callable[[int], None] | None = None
    readings_published: int = attrs.field(default=0, init=False)
    alerts_published: int = attrs.field(default=0, init=False)
    drops: int = attrs.field(default=0, init=False)

    async def run(self) -> NoReturn:
        """Publish until cancelled."""
        schedule = self.schedule
        start = trio.current_time()
        next_telemetry = start + schedule.telemetry_interval / 2
        next_alert = start + schedule.first_alert_after
        next_drop = math.inf
        if schedule.drop_at is not None:
            next_drop = start + schedule.drop_at
        elif schedule.drop_every is not None:
            next_drop = start + schedule.drop_every
        while True:
            await trio.sleep_until(min(next_telemetry, next_alert, next_drop))
            now = trio.current_time()
            if now >= next_drop:
                await self._drop()
                next_drop = (
                    next_drop + schedule.drop_every
                    if schedule.drop_every is not None
                    else math.inf
                )
            if now >= next_telemetry:
                await self._publish_readings()
                next_telemetry += schedule.telemetry_interval
            if now >= next_alert:
                await self._publish_alert()
                next_alert += self.model.alert_gap(schedule.alert_interval)

    async def _publish_readings(self) -> None:
        for device_id, metrics in self.model.readings():
            await self.server.publish_telemetry(device_id, metrics)
            self.readings_published += 1

    async def _publish_alert(self) -> None:
        alert = self.model.next_alert(datetime.now(timezone.utc))
        await self.server.publish_alerts([alert])
        self.alerts_published += 1

    async def _drop(self) -> None:
        dropped = await self.server.drop_connections()
        self.drops += 1
        if self.on_drop is not None:
            self.on_drop(dropped)
