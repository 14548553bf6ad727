"""The I/O-free core of the connection task: subscriptions and retry decisions.

The connection task in ``_manager.py`` moves bytes; the two objects here decide
*what* to send and *whether and when* to try again. Neither touches trio, a
clock or a socket (the caller passes ``now``), so both are tested
synchronously and with Hypothesis state machines.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable

import attrs

from ._backoff import Backoff
from ._protocol import SubscribeRequest, SubscriptionKind

__all__ = [
    "ConnectionFailure",
    "FailureKind",
    "RetryBudget",
    "RetryDecision",
    "RetryPolicy",
    "RetryVerdict",
    "SubscriptionKey",
    "SubscriptionLedger",
    "default_retry_policy",
]

SubscriptionKey = tuple[SubscriptionKind, "str | None"]
"""A server subscription: ``("alerts", None)`` or ``("device", device_id)``."""


class FailureKind(str, enum.Enum):
    """How an attempt or a connection ended, for the retry policy."""

    TOKEN_ERROR = "token_error"
    """The token provider raised (or hung past ``open_timeout``)."""
    UNREACHABLE = "unreachable"
    """No connection: refused, DNS failure, TLS failure, closed mid-handshake."""
    TIMEOUT = "timeout"
    """The opening handshake did not finish within ``open_timeout``."""
    REJECTED = "rejected"
    """The server answered the handshake with an HTTP status (401, 503, ...)."""
    CLOSED = "closed"
    """An open connection ended: close frame, vanished peer (1006), heartbeat."""

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class ConnectionFailure:
    """One failed attempt or lost connection, as the retry policy sees it.

    Attributes:
        kind: What went wrong.
        status_code: The HTTP status of a rejected handshake, else ``None``.
        close_code: The WebSocket close code of a closed connection (1006 when
            it vanished without a close frame), else ``None``.
        reason: A short, token-free description for events and logs.
        connected_for: Seconds the connection had been open (``CLOSED`` only).
    """

    kind: FailureKind
    status_code: int | None = None
    close_code: int | None = None
    reason: str | None = None
    connected_for: float | None = None


class RetryVerdict(str, enum.Enum):
    """What a retry policy says about a failure."""

    RETRY = "retry"
    """Wait the backoff delay and try again; counts against the budget."""
    RETRY_NOW = "retry_now"
    """Try again at once with a fresh token; still counts against the budget."""
    GIVE_UP = "give_up"
    """Stop: publish an error and wait for ``connect()``."""

    def __str__(self) -> str:
        return self.value


RetryPolicy = Callable[[ConnectionFailure], RetryVerdict]
"""Classifies a failure; the manager asks it after every failure."""


def default_retry_policy(failure: ConnectionFailure) -> RetryVerdict:
    """The browser client's policy: every failure is retried within the budget."""
    return RetryVerdict.RETRY


@attrs.frozen
class RetryDecision:
    """The budget's answer to a failure.

    Attributes:
        delay: Seconds to wait before the next attempt, or ``None`` to give up.
        retry_count: Which retry comes next (1 for the first), when retrying.
        give_up_message: Why the manager gives up, when ``delay`` is ``None``.
    """

    delay: float | None
    retry_count: int = 0
    give_up_message: str | None = None


MAX_RETRIES_MESSAGE = "Max reconnection attempts reached"


@attrs.define
class RetryBudget:
    """Counts retries and turns each failure into a :class:`RetryDecision`.

    Rules:

    * A failure uses one retry; at ``backoff.max_retries`` used, the next
      failure gives up with :data:`MAX_RETRIES_MESSAGE`.
    * A connection resets the count: at once when ``backoff.reset_after`` is
      0, else only when it ends after staying up at least ``reset_after``
      seconds (a server that accepts and drops at once cannot refill it).
    * ``reset()`` (an intentional disconnect) empties the count.
    """

    backoff: Backoff
    policy: RetryPolicy = default_retry_policy
    retries_used: int = 0
    _connected_at: float | None = None

    def on_connected(self, now: float) -> None:
        """Record a successful handshake at time ``now``."""
        self._connected_at = now
        if self.backoff.reset_after == 0:
            self.retries_used = 0

    def on_failure(self, failure: ConnectionFailure, now: float) -> RetryDecision:
        """Decide what follows ``failure``, which happened at time ``now``."""
        connected_at, self._connected_at = self._connected_at, None
        reset_after = self.backoff.reset_after
        if (
            connected_at is not None
            and reset_after
            and now - connected_at >= reset_after
        ):
            self.retries_used = 0
        verdict = self.policy(failure)
        if verdict is RetryVerdict.GIVE_UP:
            return RetryDecision(None, give_up_message=_fatal_message(failure))
        if self.retries_used >= self.backoff.max_retries:
            return RetryDecision(None, give_up_message=MAX_RETRIES_MESSAGE)
        delay = (
            0.0
            if verdict is RetryVerdict.RETRY_NOW
            else self.backoff.delay(self.retries_used)
        )
        self.retries_used += 1
        return RetryDecision(delay, retry_count=self.retries_used)

    def reset(self) -> None:
        """Forget all failures (after an intentional disconnect)."""
        self.retries_used = 0
        self._connected_at = None


def _fatal_message(failure: ConnectionFailure) -> str:
    if failure.kind is FailureKind.REJECTED:
        return f"Connection rejected with HTTP {failure.status_code} (not retried)"
    if failure.kind is FailureKind.CLOSED:
        return f"Connection closed with code {failure.close_code} (not retried)"
    return f"Connection failed: {failure.reason or failure.kind} (not retried)"


@attrs.define
class SubscriptionLedger:
    """Which server subscriptions are wanted, and what the server was told.

    A subscription is wanted while it is *pinned* (``subscribe()``) or
    *referenced* (an open ``manager.alerts()`` / ``manager.telemetry()``
    context). Wanted subscriptions keep the order in which they became wanted.
    While connected, :meth:`pending` lists the requests that make the server's
    view equal to the wanted list: unsubscribes first, then subscribes in
    order. After :meth:`connection_opened` the server knows nothing, so the
    first :meth:`pending` is the full replay.
    """

    _pinned: set[SubscriptionKey] = attrs.field(factory=set)
    _references: Counter[SubscriptionKey] = attrs.field(factory=Counter)
    _wanted: dict[SubscriptionKey, None] = attrs.field(factory=dict)
    _on_server: dict[SubscriptionKey, None] | None = None
    acknowledged: set[SubscriptionKey] = attrs.field(factory=set)
    """Subscriptions the server has confirmed on the current connection."""

    @property
    def wanted(self) -> list[SubscriptionKey]:
        """The persisted subscriptions, in the order they became wanted."""
        return list(self._wanted)

    def pin(self, key: SubscriptionKey) -> None:
        """Want ``key`` until :meth:`unpin` (explicit ``subscribe()``)."""
        self._pinned.add(key)
        self._refresh(key)

    def unpin(self, key: SubscriptionKey) -> None:
        """Drop the pin on ``key``; it stays wanted while referenced."""
        self._pinned.discard(key)
        self._refresh(key)

    def acquire(self, key: SubscriptionKey) -> None:
        """Add one reference to ``key`` (entering a subscription context)."""
        self._references[key] += 1
        self._refresh(key)

    def release(self, key: SubscriptionKey) -> None:
        """Remove one reference to ``key`` (leaving a subscription context)."""
        if self._references[key] <= 1:
            del self._references[key]
        else:
            self._references[key] -= 1
        self._refresh(key)

    def _refresh(self, key: SubscriptionKey) -> None:
        if key in self._pinned or key in self._references:
            self._wanted.setdefault(key, None)
        else:
            self._wanted.pop(key, None)

    def connection_opened(self) -> None:
        """A new connection: the server holds nothing yet."""
        self._on_server = {}
        self.acknowledged.clear()

    def connection_lost(self) -> None:
        """No connection: nothing is pending until the next one opens."""
        self._on_server = None
        self.acknowledged.clear()

    def pending(self) -> list[SubscribeRequest]:
        """The requests to send now, in order (empty while disconnected)."""
        on_server = self._on_server
        if on_server is None:
            return []
        requests = [
            SubscribeRequest.unsubscribe(*key)
            for key in on_server
            if key not in self._wanted
        ]
        requests.extend(
            SubscribeRequest.subscribe(*key)
            for key in self._wanted
            if key not in on_server
        )
        return requests

    def mark_sent(self, request: SubscribeRequest) -> None:
        """Record that ``request`` went out on the current connection."""
        if self._on_server is None:
            return
        if request.action == "subscribe":
            self._on_server[request.key] = None
        else:
            self._on_server.pop(request.key, None)
            self.acknowledged.discard(request.key)

    def record_ack(self, key: SubscriptionKey, *, subscribed: bool) -> None:
        """Record the server's ``subscribed`` / ``unsubscribed`` answer."""
        if subscribed:
            self.acknowledged.add(key)
        else:
            self.acknowledged.discard(key)
