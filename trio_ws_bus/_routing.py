"""Routing: from one received WebSocket message to topics on the bus.

Pure and synchronous: the pump hands each complete message the session
returned to a :class:`Router`, which decodes it and publishes it at once (no
channel hop, no task switch), counting as it goes. The table (the seed's
``handleMessage``):

==================  =====================================================
``alerts``          ``ALERTS_TOPIC``, a ``tuple[Alert, ...]``
``telemetry``       ``telemetry:<device_id>``, a ``Telemetry``
``subscribed`` ...  counted as acknowledgements
``error``           ``ERROR_TOPIC`` (scrubbed of the token) and a log line
anything invalid    ``INVALID_TOPIC``, one ``InvalidItem`` per rejected item
==================  =====================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from ._errors import ProtocolError
from ._logs import LogLimiter, get_logger
from ._protocol import (
    AlertsMessage,
    ErrorMessage,
    InvalidItem,
    ServerMessage,
    Telemetry,
    TelemetryMessage,
    decode_server_message,
    invalid_binary_frame,
    invalid_item,
    salvage_server_message,
    server_text_decoder,
)
from ._topics import ALERTS_TOPIC, ERROR_TOPIC, INVALID_TOPIC, TELEMETRY_PREFIX

__all__ = ["MessageCounters", "Router"]

Publish = Callable[[str, object], int]

_logger = get_logger("trio_ws_bus.routing")


@attrs.define
class MessageCounters:
    """What arrived, across every connection of one manager."""

    messages_received: int = 0
    alerts_messages: int = 0
    telemetry_messages: int = 0
    acks: int = 0
    server_errors: int = 0
    invalid_messages: int = 0
    other_metrics: int = 0


class Router:
    """Decodes messages and publishes them; counts every one.

    Args:
        publish: The bus's ``publish``.
        counters: Where to count (kept by the manager across connections).
        scrub: Removes the live token from server-provided text.
        logger: Where rejected items and server errors are logged, a few per
            connection (see :class:`LogLimiter`); ``trio_ws_bus.routing`` by
            default.
    """

    def __init__(
        self,
        publish: Publish,
        counters: MessageCounters,
        scrub: Callable[[str], str],
        logger: logging.Logger | None = None,
    ) -> None:
        self._publish = publish
        self.counters = counters
        self._scrub = scrub
        self._decode = server_text_decoder.decode
        logger = logger or _logger
        self._invalid_log = LogLimiter(logger, "ignored an invalid message")
        self._error_log = LogLimiter(logger, "server error")

    def text(self, text: str, now: float) -> None:
        """Route one complete text message; what fails validation, item by item."""
        counters = self.counters
        counters.messages_received += 1
        try:
            message = self._decode(text)
        except Exception:  # msgspec's errors: salvage what is valid
            self._salvage(text, now)
            return
        if type(message) is TelemetryMessage and message.device_id:
            # The common case, inlined: about a fifth of a message's cost.
            counters.telemetry_messages += 1
            data = message.data
            self._publish(
                TELEMETRY_PREFIX + message.device_id,
                Telemetry(message.device_id, data.timestamp, data.metrics),
            )
            return
        self._dispatch(message, text, now)

    def _salvage(self, text: str, now: float) -> None:
        try:
            message: ServerMessage | None = decode_server_message(text)
        except ProtocolError as exc:
            message, rejected = salvage_server_message(
                text, exc.reason, scrub=self._scrub
            )
            for item in rejected:
                self.reject(item, now)
            if type(message) is not AlertsMessage and message is not None:
                assert isinstance(message, TelemetryMessage)
                self.counters.other_metrics += len(message.telemetry.other_metrics)
        if message is not None:
            self._dispatch(message, text, now)

    def binary(self, data: bytes, now: float) -> None:
        """Route one complete binary message: the protocol has none."""
        self.counters.messages_received += 1
        self.reject(invalid_binary_frame(data, scrub=self._scrub), now)

    def refused(self, reason: str, raw: bytes, now: float) -> None:
        """Count a message the wire refused (too big, not UTF-8, cut short)."""
        self.counters.messages_received += 1
        self.reject(invalid_item(reason, raw, scrub=self._scrub), now)

    def reject(self, item: InvalidItem, now: float) -> None:
        """Count, log and publish one rejected item."""
        self.counters.invalid_messages += 1
        self._invalid_log.log(now, item.reason)
        self._publish(INVALID_TOPIC, item)

    def end_connection(self, now: float) -> None:
        """Summarise what was only counted on the connection that ended."""
        self._invalid_log.end_connection(now)
        self._error_log.end_connection(now)

    def _dispatch(self, message: ServerMessage, text: str, now: float) -> None:
        counters = self.counters
        kind = type(message)
        if isinstance(message, TelemetryMessage):  # a salvaged reading: a subclass
            if not message.device_id:
                item = invalid_item(
                    "telemetry without a device_id", text.encode(), scrub=self._scrub
                )
                self.reject(item, now)
                return
            counters.telemetry_messages += 1
            self._publish(TELEMETRY_PREFIX + message.device_id, message.telemetry)
        elif kind is AlertsMessage:
            assert isinstance(message, AlertsMessage)
            counters.alerts_messages += 1
            self._publish(ALERTS_TOPIC, message.alerts)
        elif kind is ErrorMessage:
            assert isinstance(message, ErrorMessage)
            counters.server_errors += 1
            text = self._scrub(message.message)
            self._error_log.log(now, text)
            self._publish(ERROR_TOPIC, text)
        else:  # subscribed / unsubscribed
            counters.acks += 1
