"""The public names are a contract: this pins them."""

from __future__ import annotations

import inspect

import trio_ws_bus

EXPECTED = {
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
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, name
