"""The frames every benchmark uses: the seed's message shapes, as compact JSON.

* telemetry: one reading of one device with six metrics, about 200 bytes;
* alerts: an ``alerts`` message carrying 10 alerts, about 2.7 KB.

``bench/decode.py`` and the end-to-end benchmarks time exactly these frames.
"""

from __future__ import annotations

import json
from collections.abc import Callable

DEVICE_ID = "sensor-0042"
ALERTS_PER_MESSAGE = 10
#: How many device ids the throughput benchmark's telemetry cycles through.
DEVICES = 10_000


def telemetry_frame(device_id: str = DEVICE_ID) -> str:
    """A ``telemetry`` message of about 200 bytes (six metrics)."""
    return json.dumps(
        {
            "type": "telemetry",
            "device_id": device_id,
            "data": {
                "timestamp": "2024-05-01T12:00:00.000Z",
                "metrics": {
                    "temperature": 21.5,
                    "humidity": 48.25,
                    "battery": 87,
                    "online": True,
                    "rssi": -67,
                    "voltage": 3.71,
                },
            },
        },
        separators=(",", ":"),
    )


def alerts_frame(count: int = ALERTS_PER_MESSAGE) -> str:
    """An ``alerts`` message with ``count`` alerts (about 2.7 KB for 10)."""
    alerts = [
        {
            "alert_id": 100_000 + i,
            "tenant_id": "acme",
            "device_id": f"dev-{i}",
            "alert_type": "temp",
            "severity": 1 + i % 5,
            "summary": "Temperature high",
            "status": "open",
            "created_at": "2024-05-01T12:00:00Z",
            "fingerprint": f"{i:016x}",
            "details": {"value": 41.2, "limit": 40},
            "closed_at": None if i % 2 else "2024-05-01T12:30:00Z",
        }
        for i in range(count)
    ]
    return json.dumps({"type": "alerts", "alerts": alerts}, separators=(",", ":"))


FRAMES: dict[str, Callable[[], str]] = {
    "telemetry": telemetry_frame,
    "alerts": alerts_frame,
}
"""Frame builders by the name the server process and the tables use."""


def stream(kind: str, count: int, devices: int = 1) -> list[str]:
    """``count`` frames of ``kind``; telemetry cycles through ``devices`` ids.

    With one device every reading is :data:`DEVICE_ID`'s; with more, the ids
    are ``sensor-0000``, ``sensor-0001``, ... (same length, same frame size).
    """
    if kind != "telemetry" or devices == 1:
        return [FRAMES[kind]()] * count
    frames = [telemetry_frame(f"sensor-{i:04d}") for i in range(devices)]
    return [frames[i % devices] for i in range(count)]
