"""The public names are a contract: this pins them."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import trio_ws_bus
import trio_ws_bus.otel

EXPECTED = {
    "ALERTS_TOPIC",
    "CONNECTION_TOPIC",
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_SUBSCRIBER_WAIT",
    "SCHEDULE_INTERVAL",
    "ERROR_TOPIC",
    "INVALID_RAW_LIMIT",
    "INVALID_TOPIC",
    "InvalidItem",
    "ProxyError",
    "PROXY_FROM_ENV",
    "ProxyFromEnv",
    "ProxyTransport",
    "ProxyURL",
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
    "NotAContextManager",
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
    "TokenLocation",
    "TokenProvider",
    "HandshakeHeaders",
    "Topic",
    "Transport",
    "TrioWsBusError",
    "UnsubscribedMessage",
    "WebSocketManager",
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


def test_public_names_belong_to_the_package() -> None:
    """Classes and functions say ``trio_ws_bus`` and keep a working signature."""
    for name in trio_ws_bus.__all__:
        obj = getattr(trio_ws_bus, name)
        if typing.get_origin(obj) is not None:
            continue  # a type alias (Python 3.10 calls list[int] a class)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            builtin_based = inspect.isclass(obj) and issubclass(
                obj, (BaseException, str)
            )
            if not builtin_based:  # exceptions and Topic (a str) have none
                inspect.signature(obj)  # annotations resolve in the module named
            struct = hasattr(obj, "__struct_fields__")  # msgspec: see _util.py
            assert obj.__module__ == (
                "trio_ws_bus._protocol" if struct else "trio_ws_bus"
            )


def test_otel_is_an_optional_submodule() -> None:
    """trio_ws_bus.otel exports the instrumentation; the package does not."""
    assert set(trio_ws_bus.otel.__all__) == {"Instrumentation", "instrument"}
    assert "otel" not in trio_ws_bus.__all__


def test_the_package_imports_with_docstrings_stripped() -> None:
    """``python -OO`` drops docstrings; importing must not depend on them."""
    code = "import trio_ws_bus, trio_ws_bus.testing; print(trio_ws_bus.__version__)"
    done = subprocess.run(
        [sys.executable, "-OO", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == trio_ws_bus.__version__
