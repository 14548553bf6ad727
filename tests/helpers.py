"""Helpers shared by the manager tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from trio_ws_bus import (
    CONNECTION_TOPIC,
    ConnectionEvent,
    ConnectionFailure,
    MessageBus,
    RetryVerdict,
    WebSocketManager,
    default_retry_policy,
    open_websocket_manager,
)
from trio_ws_bus.testing import ReferenceServer

#: The memory transport ignores host and port; the URL still has to be valid.
MEMORY_URL = "http://127.0.0.1:8080"


class SpyPolicy:
    """The default retry policy, recording every failure it classifies."""

    def __init__(self) -> None:
        self.failures: list[ConnectionFailure] = []

    def __call__(self, failure: ConnectionFailure) -> RetryVerdict:
        self.failures.append(failure)
        return default_retry_policy(failure)


@asynccontextmanager
async def manager_on(
    server: ReferenceServer, **options: Any
) -> AsyncIterator[tuple[WebSocketManager, list[ConnectionEvent]]]:
    """A manager on ``server``'s memory transport, with its connection events."""
    bus = options.pop("bus", None) or MessageBus()
    events: list[ConnectionEvent] = []
    bus.on(CONNECTION_TOPIC, events.append)
    options.setdefault("token", server.issue_token)
    async with open_websocket_manager(
        MEMORY_URL, bus=bus, transport=server.transport, **options
    ) as manager:
        yield manager, events
