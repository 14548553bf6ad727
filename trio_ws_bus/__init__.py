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
    Topic as Topic,
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
from ._failures import (
    ConnectionFailure as ConnectionFailure,
    FailureKind as FailureKind,
)
from ._manager import (
    NotAContextManager as NotAContextManager,
    WebSocketManager as WebSocketManager,
)
from ._open import open_websocket_manager as open_websocket_manager
from ._protocol import (
    INVALID_RAW_LIMIT as INVALID_RAW_LIMIT,
    Alert as Alert,
    AlertsMessage as AlertsMessage,
    ErrorMessage as ErrorMessage,
    InvalidItem as InvalidItem,
    ServerMessage as ServerMessage,
    SubscribedMessage as SubscribedMessage,
    SubscribeRequest as SubscribeRequest,
    SubscriptionKey as SubscriptionKey,
    SubscriptionKind as SubscriptionKind,
    Telemetry as Telemetry,
    TelemetryData as TelemetryData,
    TelemetryMessage as TelemetryMessage,
    UnsubscribedMessage as UnsubscribedMessage,
    decode_server_message as decode_server_message,
    encode_client_message as encode_client_message,
    invalid_binary_frame as invalid_binary_frame,
    salvage_server_message as salvage_server_message,
)
from ._proxy import (
    PROXY_FROM_ENV as PROXY_FROM_ENV,
    ProxyFromEnv as ProxyFromEnv,
    ProxyURL as ProxyURL,
)
from ._retry import (
    RetryPolicy as RetryPolicy,
    RetryRules as RetryRules,
    RetryVerdict as RetryVerdict,
    default_retry_policy as default_retry_policy,
    fatal_auth_policy as fatal_auth_policy,
    seed_retry_policy as seed_retry_policy,
)
from ._settings import (
    DEFAULT_SUBSCRIBER_WAIT as DEFAULT_SUBSCRIBER_WAIT,
    HandshakeHeaders as HandshakeHeaders,
    TokenLocation as TokenLocation,
    TokenProvider as TokenProvider,
)
from ._statistics import ManagerStatistics as ManagerStatistics
from ._subscription import (
    SCHEDULE_INTERVAL as SCHEDULE_INTERVAL,
)
from ._transport import (
    ProxyTransport as ProxyTransport,
    TcpTransport as TcpTransport,
    Transport as Transport,
)
from ._url import (
    redact_url as redact_url,
)
from ._util import fixup_module_metadata as _fixup_module_metadata
from ._version import (
    __version__ as __version__,
)
from .testing._codec import (
    encode_server_message as encode_server_message,
)

__all__ = [
    "ALERTS_TOPIC",
    "CONNECTION_TOPIC",
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_SUBSCRIBER_WAIT",
    "ERROR_TOPIC",
    "INVALID_RAW_LIMIT",
    "INVALID_TOPIC",
    "PROXY_FROM_ENV",
    "SCHEDULE_INTERVAL",
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
    "HandshakeHeaders",
    "InvalidItem",
    "ManagerStatistics",
    "MessageBus",
    "NotAContextManager",
    "Overflow",
    "ProtocolError",
    "ProxyError",
    "ProxyFromEnv",
    "ProxyTransport",
    "ProxyURL",
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
    "TokenLocation",
    "TokenProvider",
    "Topic",
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
    "invalid_binary_frame",
    "open_websocket_manager",
    "redact_url",
    "salvage_server_message",
    "seed_retry_policy",
    "telemetry_topic",
]

_fixup_module_metadata(__name__, globals())
