"""The public names are a contract: this pins them."""

from __future__ import annotations

import inspect

import trio_ws_bus

EXPECTED = {
    "ALERTS_TOPIC",
    "CONNECTION_TOPIC",
    "DEFAULT_MAX_BUFFER",
    "ERROR_TOPIC",
    "INVALID_TOPIC",
    "InvalidItem",
    "ProxyError",
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
    "ManagerStatistics",
    "MessageBus",
    "Overflow",
    "ProtocolError",
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
    "decode_server_message",
    "default_retry_policy",
    "encode_client_message",
    "encode_server_message",
    "fatal_auth_policy",
    "open_websocket_manager",
    "redact_url",
    "seed_retry_policy",
    "telemetry_topic",
    "__version__",
}


def test_all_is_exactly_the_public_api() -> None:
    """__all__ lists exactly the documented names, and each one imports."""
    assert set(trio_ws_bus.__all__) == EXPECTED
    for name in trio_ws_bus.__all__:
        assert getattr(trio_ws_bus, name) is not None


def test_every_public_class_and_function_is_documented() -> None:
    """Every public class and function has a docstring."""
    for name in trio_ws_bus.__all__:
        obj = getattr(trio_ws_bus, name)
        ours = getattr(obj, "__module__", "").startswith("trio_ws_bus")
        if ours and (inspect.isclass(obj) or inspect.isfunction(obj)):
            assert obj.__doc__, name
