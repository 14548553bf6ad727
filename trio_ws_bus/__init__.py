"""trio_ws_bus: live alerts and device telemetry over a WebSocket, for Trio.

Open a :func:`open_websocket_manager` in your app: one task keeps the
connection alive (fresh token per attempt, exponential backoff, subscriptions
replayed after every reconnect) and publishes what arrives on a
:class:`MessageBus`, where every subscriber has its own bounded channel.
"""

from __future__ import annotations

from ._backoff import (
    Backoff as Backoff,
)
from ._bus import (
    ALERTS_TOPIC as ALERTS_TOPIC,
    CONNECTION_TOPIC as CONNECTION_TOPIC,
    DEFAULT_MAX_BUFFER as DEFAULT_MAX_BUFFER,
    ERROR_TOPIC as ERROR_TOPIC,
    INVALID_TOPIC as INVALID_TOPIC,
    BusStatistics as BusStatistics,
    MessageBus as MessageBus,
    Overflow as Overflow,
    Subscription as Subscription,
    telemetry_topic as telemetry_topic,
)
from ._errors import (
    ConnectionGaveUp as ConnectionGaveUp,
    ProtocolError as ProtocolError,
    ProxyError as ProxyError,
    SubscriberLagged as SubscriberLagged,
    TrioWsBusError as TrioWsBusError,
)
from ._events import (
    ConnectionEvent as ConnectionEvent,
    ConnectionStatus as ConnectionStatus,
)
from ._manager import (
    ManagerStatistics as ManagerStatistics,
    TokenProvider as TokenProvider,
    WebSocketManager as WebSocketManager,
    open_websocket_manager as open_websocket_manager,
)
from ._protocol import (
    Alert as Alert,
    AlertsMessage as AlertsMessage,
    ErrorMessage as ErrorMessage,
    InvalidItem as InvalidItem,
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
from ._reconnect import (
    ConnectionFailure as ConnectionFailure,
    FailureKind as FailureKind,
    RetryPolicy as RetryPolicy,
    RetryRules as RetryRules,
    RetryVerdict as RetryVerdict,
    SubscriptionKey as SubscriptionKey,
    default_retry_policy as default_retry_policy,
    fatal_auth_policy as fatal_auth_policy,
    seed_retry_policy as seed_retry_policy,
)
from ._transport import (
    TcpTransport as TcpTransport,
    Transport as Transport,
)
from ._url import (
    redact_url as redact_url,
)
from ._version import (
    __version__ as __version__,
)

__all__ = [
    "ALERTS_TOPIC",
    "CONNECTION_TOPIC",
    "DEFAULT_MAX_BUFFER",
    "ERROR_TOPIC",
    "INVALID_TOPIC",
    "Alert",
    "AlertsMessage",
    "Backoff",
    "BusStatistics",
    "ConnectionEvent",
    "ConnectionFailure",
    "ConnectionGaveUp",
    "ConnectionStatus",
    "ErrorMessage",
    "FailureKind",
    "InvalidItem",
    "ManagerStatistics",
    "MessageBus",
    "Overflow",
    "ProtocolError",
    "ProxyError",
    "RetryPolicy",
    "RetryRules",
    "RetryVerdict",
    "ServerMessage",
    "SubscribeRequest",
    "SubscribedMessage",
    "SubscriberLagged",
    "Subscription",
    "SubscriptionKey",
    "SubscriptionKind",
    "TcpTransport",
    "Telemetry",
    "TelemetryData",
    "TelemetryMessage",
    "TokenProvider",
    "Transport",
    "TrioWsBusError",
    "UnsubscribedMessage",
    "WebSocketManager",
    "__version__",
    "decode_server_message",
    "default_retry_policy",
    "encode_client_message",
    "encode_server_message",
    "fatal_auth_policy",
    "open_websocket_manager",
    "redact_url",
    "seed_retry_policy",
    "telemetry_topic",
]
