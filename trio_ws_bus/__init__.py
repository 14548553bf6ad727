"""trio_ws_bus: live alerts and device telemetry over a WebSocket, for Trio.

The pure core: typed wire messages and their codec, the reconnect schedule,
and a :class:`MessageBus` where every subscriber has its own bounded channel.
"""

from __future__ import annotations

from ._backoff import (
    Backoff as Backoff,
)
from ._bus import (
    ALERTS_TOPIC as ALERTS_TOPIC,
    CONNECTION_TOPIC as CONNECTION_TOPIC,
    ERROR_TOPIC as ERROR_TOPIC,
    BusStatistics as BusStatistics,
    MessageBus as MessageBus,
    Overflow as Overflow,
    Subscription as Subscription,
    telemetry_topic as telemetry_topic,
)
from ._errors import (
    ProtocolError as ProtocolError,
    SubscriberLagged as SubscriberLagged,
    TrioWsBusError as TrioWsBusError,
)
from ._protocol import (
    Alert as Alert,
    AlertsMessage as AlertsMessage,
    ErrorMessage as ErrorMessage,
    ServerMessage as ServerMessage,
    SubscribedMessage as SubscribedMessage,
    SubscribeRequest as SubscribeRequest,
    SubscriptionKind as SubscriptionKind,
    Telemetry as Telemetry,
    TelemetryData as TelemetryData,
    TelemetryMessage as TelemetryMessage,
    UnsubscribedMessage as UnsubscribedMessage,
    decode_server_message as decode_server_message,
    encode_client_message as encode_client_message,
    encode_server_message as encode_server_message,
)
from ._version import __version__ as __version__

__all__ = [
    "ALERTS_TOPIC",
    "CONNECTION_TOPIC",
    "ERROR_TOPIC",
    "Alert",
    "AlertsMessage",
    "Backoff",
    "BusStatistics",
    "ErrorMessage",
    "MessageBus",
    "Overflow",
    "ProtocolError",
    "ServerMessage",
    "SubscribeRequest",
    "SubscribedMessage",
    "SubscriberLagged",
    "Subscription",
    "SubscriptionKind",
    "Telemetry",
    "TelemetryData",
    "TelemetryMessage",
    "TrioWsBusError",
    "UnsubscribedMessage",
    "__version__",
    "decode_server_message",
    "encode_client_message",
    "encode_server_message",
    "telemetry_topic",
]
