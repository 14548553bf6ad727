"""Topics: the names the bus routes on, typed by the payload they carry.

Pure (no Trio), so the sans-I/O routing core can name its topics without
importing the bus; :mod:`trio_ws_bus._bus` re-exports everything here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from ._events import ConnectionEvent
    from ._protocol import Alert, InvalidItem, Telemetry

__all__ = [
    "ALERTS_TOPIC",
    "CONNECTION_TOPIC",
    "ERROR_TOPIC",
    "INVALID_TOPIC",
    "TELEMETRY_PREFIX",
    "Topic",
    "telemetry_topic",
]

_P = TypeVar("_P")


class Topic(str, Generic[_P]):
    """A topic name that carries its payload type, for type checkers.

    A `str` in every way: equal and hash-equal to the plain string, so it
    routes exactly as the plain string does, at the same cost. Its type
    parameter lets `MessageBus.on`, `MessageBus.subscribe` and
    `MessageBus.publish` check handlers and payloads: with
    ``bus.on(CONNECTION_TOPIC, handler)``, mypy checks that ``handler`` takes
    a `ConnectionEvent`. A plain `str` topic is checked as ``Any``.

    Make your own with an annotation: ``ORDERS: Topic[Order] = Topic("orders")``.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        # Seen only by type checkers: an override that no plain `str` matches,
        # so a typed topic never falls through to the `_PlainTopic` overloads
        # (where a handler of the wrong type would be accepted as `Any`).
        def __getnewargs__(self) -> tuple[str, _P]: ...  # type: ignore[override]


class _PlainTopic(Protocol):
    """A `str` that is not a `Topic`, for the untyped overloads."""

    def __getnewargs__(self) -> tuple[str]: ...


ALERTS_TOPIC: Final[Topic[tuple[Alert, ...]]] = Topic("alerts")
"""Topic of alert batches (payload: ``tuple[Alert, ...]``)."""

CONNECTION_TOPIC: Final[Topic[ConnectionEvent]] = Topic("connection")
"""Topic of connection status changes (payload: ``ConnectionEvent``)."""

ERROR_TOPIC: Final[Topic[str]] = Topic("error")
"""Topic of error messages sent by the server (payload: ``str``)."""

INVALID_TOPIC: Final[Topic[InvalidItem]] = Topic("invalid")
"""Topic of what failed validation, one value per rejected item (payload:
``InvalidItem``)."""

TELEMETRY_PREFIX: Final = "telemetry:"
"""What every telemetry topic starts with: the one place the name is spelled."""


def telemetry_topic(device_id: str) -> Topic[Telemetry]:
    """Return the topic on which telemetry of one device is published.

    Subscribe to ``"telemetry:*"`` to get every device.

    Args:
        device_id: The device's id, as sent by the server.

    Returns:
        ``"telemetry:<device_id>"``.

    Raises:
        ValueError: If ``device_id`` is empty.
    """
    if not device_id:
        raise ValueError("device_id must be a non-empty string")
    return Topic(TELEMETRY_PREFIX + device_id)
