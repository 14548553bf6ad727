"""Helpers and constants shared by the tests (imported as ``helpers``)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from trio_ws_bus import (
    CONNECTION_TOPIC,
    Backoff,
    ConnectionEvent,
    ConnectionFailure,
    ConnectionStatus,
    MessageBus,
    RetryVerdict,
    SubscriptionKey,
    WebSocketManager,
    default_retry_policy,
    open_websocket_manager,
)
from trio_ws_bus.testing import ReferenceServer

#: The repository's root folder.
ROOT = Path(__file__).resolve().parent.parent

#: The memory transport ignores host and port; the URL still has to be valid.
MEMORY_URL = "http://127.0.0.1:8080"

#: Real seconds within which a scenario on the real clock (loopback sockets,
#: TLS, proxies, raw HTTP servers) must end.
SCENARIO_CAP = 10.0

#: The timestamp of the telemetry readings the tests make up.
TIMESTAMP = "2024-01-01T00:00:00Z"

CONNECTING = ConnectionEvent(ConnectionStatus.CONNECTING)
CONNECTED = ConnectionEvent(ConnectionStatus.CONNECTED)

#: Attempt times of the default schedule: 0, then gaps of 1, 2, 4, 8, 16, 30... s.
SEED_ATTEMPT_TIMES = list(itertools.accumulate([0.0, *Backoff().delays()]))

#: A backoff that never retries: one attempt, then give up.
NO_RETRY = Backoff(max_retries=0)

#: The subscriptions the stateful tests pick from.
SUBSCRIPTION_KEYS: list[SubscriptionKey] = [
    ("alerts", None),
    ("device", "d1"),
    ("device", "d2"),
]


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


class TokenLog:
    """A token provider that issues a fresh token per call and records each call.

    Tokens are JWTs the server accepts; or the given ``tokens`` in turn (made
    acceptable with ``accept_token``); or, with ``valid=False``, tokens the
    server refuses with 401.
    """

    def __init__(
        self,
        server: ReferenceServer,
        tokens: Sequence[str] | None = None,
        *,
        valid: bool = True,
    ) -> None:
        self._server = server
        self._valid = valid
        self._tokens = list(tokens) if tokens is not None else None
        self.times: list[float] = []
        self.issued: list[str] = []
        if self._tokens is not None:
            for token in self._tokens:
                server.accept_token(token)

    def __call__(self) -> str:
        self.times.append(trio.current_time())
        if not self._valid:
            token = f"not-a-jwt-{len(self.issued)}"  # the server answers 401
        elif self._tokens is not None:
            token = self._tokens[len(self.issued) % len(self._tokens)]
        else:
            token = self._server.issue_token(f"user-{len(self.issued)}")
        self.issued.append(token)
        return token

    def relative_times(self) -> list[float]:
        """Call times, from the first call."""
        return [t - self.times[0] for t in self.times]
