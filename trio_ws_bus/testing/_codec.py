"""The server's side of the wire codec, for the test kit and for tests.

The client decodes what servers send and encodes what it asks
(:mod:`trio_ws_bus._protocol`); a server does the opposite, and that half
lives here, next to the reference server, since the client never runs it.
:func:`encode_server_message` stays public as ``trio_ws_bus.encode_server_message``
for code that plays the server (a recorder, a test double).
"""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec

from .._protocol import (
    AlertsMessage,
    ServerMessage,
    SubscribeRequest,
    TelemetryMessage,
    _decode,
)

__all__ = ["decode_client_message", "encode_server_message"]

_client_decoder: Final = msgspec.json.Decoder(SubscribeRequest)
_encoder: Final = msgspec.json.Encoder()


def decode_client_message(
    data: str | bytes | bytearray | memoryview,
) -> SubscribeRequest:
    """Decode and validate one frame from a client (for servers and tests).

    Args:
        data: The frame: text, or UTF-8 bytes.

    Returns:
        The validated request.

    Raises:
        ProtocolError: The frame is not a valid :class:`SubscribeRequest`.
    """
    request: SubscribeRequest = _decode(_client_decoder, data)
    return request


def _check_finite(message: ServerMessage) -> None:
    # msgspec writes NaN and infinities as ``null``: refuse rather than send a
    # message that would not decode back to what was encoded.
    if isinstance(message, TelemetryMessage):
        values: list[Any] = list(message.data.metrics.values())
    elif isinstance(message, AlertsMessage):
        values = [alert.details for alert in message.alerts]
    else:
        return
    while values:
        value = values.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError("cannot encode a non-finite float as JSON")
        elif isinstance(value, dict):
            values.extend(value.values())
        elif isinstance(value, list | tuple):
            values.extend(value)


def encode_server_message(message: ServerMessage) -> str:
    """Encode a server message as compact JSON text (for servers and tests).

    ``decode_server_message(encode_server_message(m)) == m`` for every valid
    message ``m``.

    Args:
        message: The message to send.

    Returns:
        The JSON text, with the ``type`` tag first.

    Raises:
        ValueError: The message holds a non-finite float (in ``metrics`` or
            ``details``), or a string with a lone surrogate.
        TypeError: ``details`` holds a value that is not JSON.
    """
    _check_finite(message)
    return _encoder.encode(message).decode()
