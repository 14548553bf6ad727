"""Builders for valid wire payloads, with deterministic defaults."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["ALERT_FIELDS", "make_alert"]

ALERT_FIELDS = (
    "alert_id",
    "tenant_id",
    "device_id",
    "alert_type",
    "severity",
    "summary",
    "status",
    "created_at",
    "fingerprint",
    "details",
    "closed_at",
)
"""The 11 fields of an alert on the wire, in the seed's order."""

_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


def make_alert(alert_id: int = 1, **overrides: Any) -> dict[str, Any]:
    """Build a valid alert dict with all 11 fields of the wire protocol.

    The defaults depend only on ``alert_id``, so ``[make_alert(i) for i in
    range(1, 4)]`` gives three distinct, reproducible alerts.

    Args:
        alert_id: The alert's id; ``summary``, ``fingerprint`` and
            ``created_at`` are derived from it.
        **overrides: Field values replacing the defaults (``severity=5``,
            ``details=None``, ``closed_at="2024-01-02T00:00:00Z"``...).

    Returns:
        A new dict, safe to mutate.

    Raises:
        TypeError: If an override is not one of the 11 alert fields (build the
            dict yourself to test unknown fields).
    """
    unknown = sorted(set(overrides) - set(ALERT_FIELDS))
    if unknown:
        raise TypeError(f"not alert fields: {', '.join(unknown)}")
    created_at = _EPOCH + timedelta(seconds=alert_id)
    alert: dict[str, Any] = {
        "alert_id": alert_id,
        "tenant_id": "tenant-1",
        "device_id": "device-1",
        "alert_type": "NO_HEARTBEAT",
        "severity": 3,
        "summary": f"Alert {alert_id}",
        "status": "OPEN",
        "created_at": created_at.isoformat().replace("+00:00", "Z"),
        "fingerprint": f"fp-{alert_id}",
        "details": {"source": "reference-server"},
        "closed_at": None,
    }
    alert.update(overrides)
    return alert
