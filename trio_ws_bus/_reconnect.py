"""The I/O-free core of the connection task: subscriptions and retry decisions.

The connection task in ``_manager.py`` moves bytes; the two objects here decide
*what* to send and *whether and when* to try again. Neither touches trio, a
clock or a socket (the caller passes ``now``), so both are tested
synchronously and with Hypothesis state machines.
"""

from __future__ import annotations

import email.utils
import enum
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Final

import attrs

from ._backoff import Backoff
from ._protocol import SubscribeRequest, SubscriptionKind

__all__ = [
    "ConnectionFailure",
    "FailureKind",
    "RetryBudget",
    "RetryDecision",
    "RetryPolicy",
    "RetryRules",
    "RetryVerdict",
    "SubscriptionKey",
    "SubscriptionLedger",
    "default_retry_policy",
    "fatal_auth_policy",
    "parse_retry_after",
    "seed_retry_policy",
]

SubscriptionKey = tuple[SubscriptionKind, "str | None"]
"""A server subscription: ``("alerts", None)`` or ``("device", device_id)``."""


class FailureKind(str, enum.Enum):
    """How an attempt or a connection ended, for the retry policy."""

    TOKEN_ERROR = "token_error"
    """The token provider raised, hung past ``open_timeout`` or returned a non-str."""
    UNREACHABLE = "unreachable"
    """No connection: refused, DNS failure, closed during the opening handshake."""
    TLS_ERROR = "tls_error"
    """The TLS handshake failed: an untrusted certificate, a name mismatch, ..."""
    TIMEOUT = "timeout"
    """The opening handshake did not finish within ``open_timeout``."""
    REJECTED = "rejected"
    """The server answered the handshake with an HTTP status (401, 503, 301, ...)."""
    PROTOCOL_ERROR = "protocol_error"
    """The server's answer to the handshake was not a valid HTTP upgrade answer."""
    INVALID_TOKEN = "invalid_token"
    """The token cannot be sent: it is not valid text (a lone surrogate, ...)."""
    PROXY_ERROR = "proxy_error"
    """The proxy is down, refused the tunnel, wants credentials or cannot
    reach the target."""
    CLOSED = "closed"
    """An open connection ended: close frame, vanished peer (1006), heartbeat,
    a frame that broke the protocol (1002, 1007) or a message too big (1009)."""

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
        retry_after: Seconds the server asked us to wait (its ``Retry-After``
            header on a rejected handshake), else ``None``. Whenever present,
            a retry waits at least this long, up to ``Backoff.max_delay``.
        repeats: How many failures just before this one, in a row, had the
            same kind, status code and close code (0 for the first). The
            manager fills it in before asking the retry policy; a connection
            that stayed up ``max(Backoff.reset_after, Backoff.base)`` seconds
            breaks the row.
    """

    kind: FailureKind
    status_code: int | None = None
    close_code: int | None = None
    reason: str | None = None
    connected_for: float | None = None
    retry_after: float | None = None
    repeats: int = 0

    @property
    def outcome(self) -> tuple[FailureKind, int | None, int | None]:
        """``(kind, status_code, close_code)``: what :attr:`repeats` compares."""
        return (self.kind, self.status_code, self.close_code)


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


def seed_retry_policy(failure: ConnectionFailure) -> RetryVerdict:
    """The browser client's policy: every failure is retried within the budget.

    The browser sees only 1006 for a refused handshake, so it cannot tell a
    wrong token from a server restart; pass this to get its behaviour back.
    """
    return RetryVerdict.RETRY


def _codes(values: Iterable[int], low: int, high: int, what: str) -> frozenset[int]:
    result = frozenset(values)
    for value in result:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{what} must be ints, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{what} must be in {low}-{high}, got {value!r}")
    return result


def _statuses(values: Iterable[int]) -> frozenset[int]:
    return _codes(values, 100, 599, "HTTP statuses")


def _close_codes(values: Iterable[int]) -> frozenset[int]:
    return _codes(values, 1000, 4999, "close codes")


def _kind_set(values: Iterable[FailureKind]) -> frozenset[FailureKind]:
    return frozenset(FailureKind(value) for value in values)


@attrs.frozen
class RetryRules:
    """A retry policy built from lists of outcomes: pass it as ``retry_policy=``.

    Each failure is looked up in this order:

    1. Its HTTP status (rejected handshake), close code (closed
       connection) or kind is in ``retry_now_statuses`` /
       ``retry_now_close_codes`` / ``retry_now_kinds`` and the same outcome
       did not happen just before
       (``failure.repeats == 0``): :attr:`RetryVerdict.RETRY_NOW`, one
       immediate attempt with a fresh token.
    2. Its status is in ``fatal_statuses``, its close code in
       ``fatal_close_codes``, or its kind in ``fatal_kinds``:
       :attr:`RetryVerdict.GIVE_UP`.
    3. Anything else: :attr:`RetryVerdict.RETRY` (the backoff delay).

    So a status in both ``retry_now_statuses`` and ``fatal_statuses`` gets one
    immediate retry with a fresh token and is fatal if it happens again;
    :func:`fatal_auth_policy` works that way. Every retry, immediate or
    not, counts against the budget.

    Attributes:
        fatal_statuses: Handshake statuses (100-599) that stop the manager.
        fatal_close_codes: Close codes (1000-4999) that stop the manager.
        fatal_kinds: Failure kinds that stop the manager, whatever their
            codes (e.g. ``{FailureKind.TLS_ERROR}``).
        retry_now_statuses: Statuses retried at once, the first time in a row.
        retry_now_close_codes: Close codes retried at once, the first time in
            a row (e.g. an application's "token expired" code).
        retry_now_kinds: Failure kinds retried at once, the first time in a
            row.

    Raises:
        ValueError: For a status or close code out of range.
        TypeError: For a code that is not an int.
    """

    fatal_statuses: frozenset[int] = attrs.field(
        default=frozenset(), converter=_statuses
    )
    fatal_close_codes: frozenset[int] = attrs.field(
        default=frozenset(), converter=_close_codes
    )
    fatal_kinds: frozenset[FailureKind] = attrs.field(
        default=frozenset(), converter=_kind_set
    )
    retry_now_statuses: frozenset[int] = attrs.field(
        default=frozenset(), converter=_statuses
    )
    retry_now_close_codes: frozenset[int] = attrs.field(
        default=frozenset(), converter=_close_codes
    )
    retry_now_kinds: frozenset[FailureKind] = attrs.field(
        default=frozenset(), converter=_kind_set
    )

    def __call__(self, failure: ConnectionFailure) -> RetryVerdict:
        """Classify ``failure`` by the rules above."""
        status, code = failure.status_code, failure.close_code
        if failure.repeats == 0 and (
            (status is not None and status in self.retry_now_statuses)
            or (code is not None and code in self.retry_now_close_codes)
            or failure.kind in self.retry_now_kinds
        ):
            return RetryVerdict.RETRY_NOW
        if (
            (status is not None and status in self.fatal_statuses)
            or (code is not None and code in self.fatal_close_codes)
            or failure.kind in self.fatal_kinds
        ):
            return RetryVerdict.GIVE_UP
        return RetryVerdict.RETRY


#: 4xx answers that a later attempt may get past: 408 Request Timeout and
#: 429 Too Many Requests.
_RETRIED_CLIENT_ERRORS: Final = frozenset({408, 429})

_DEFAULT_RULES: Final = RetryRules(
    retry_now_statuses={401},
    fatal_statuses=set(range(400, 500)) - _RETRIED_CLIENT_ERRORS,
    retry_now_kinds={FailureKind.INVALID_TOKEN},
    fatal_kinds={FailureKind.INVALID_TOKEN},
)


def default_retry_policy(failure: ConnectionFailure) -> RetryVerdict:
    """Retry what may get better; stop on a handshake answer that will not.

    * A 401, or a token that cannot be sent (``INVALID_TOKEN``), gets one
      immediate retry with a fresh token; the same again in a row gives up.
    * Any other 4xx answer gives up at once, except 408 and 429.
    * Everything else is retried after the backoff delay: 5xx, 408, 429,
      network, TLS, proxy and token-provider failures, and every close code
      of an open connection.

    Giving up publishes an error event and makes ``wait_connected()`` raise
    :exc:`ConnectionGaveUp`. The same as ``RetryRules(retry_now_statuses={401},
    fatal_statuses=set(range(400, 500)) - {408, 429},
    retry_now_kinds={FailureKind.INVALID_TOKEN},
    fatal_kinds={FailureKind.INVALID_TOKEN})``.
    """
    return _DEFAULT_RULES(failure)


_FATAL_AUTH_RULES: Final = RetryRules(
    retry_now_statuses={401}, fatal_statuses={401, 403}
)


def fatal_auth_policy(failure: ConnectionFailure) -> RetryVerdict:
    """Stop on refused credentials only; retry every other failure.

    A 401 gets one immediate retry with a fresh token (the provider may just
    have refreshed it); a second 401 in a row, or any 403, stops the manager.
    Unlike :func:`default_retry_policy`, other 4xx answers (400, 404, ...)
    and ``INVALID_TOKEN`` are retried after the backoff delay, as by
    :func:`seed_retry_policy`. The same as
    ``RetryRules(retry_now_statuses={401}, fatal_statuses={401, 403})``.
    """
    return _FATAL_AUTH_RULES(failure)


def parse_retry_after(value: str, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or ``None`` if invalid.

    Both forms of RFC 9110 are read: delay-seconds (``"120"``) and an
    HTTP-date, counted from ``now`` (an aware datetime; default: the current
    time). A date in the past means 0.
    """
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:  # the asctime form: HTTP dates are always UTC
        when = when.replace(tzinfo=timezone.utc)
    return max((when - (now or datetime.now(timezone.utc))).total_seconds(), 0.0)


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

    * A failure asks the policy; ``GIVE_UP`` stops at once. Otherwise it uses
      one retry; at ``backoff.max_retries`` used, the next failure gives up
      with :data:`MAX_RETRIES_MESSAGE` (never with ``max_retries=None``).
    * A connection resets the count (so the delay starts over) once it has
      stayed up ``backoff.reset_after`` seconds: at the handshake by default
      (0), as the browser client does; with ``reset_after`` > 0 a server that
      accepts and drops at once cannot refill the budget.
    * The guards against loops, the row of repeated outcomes
      (:attr:`ConnectionFailure.repeats`) and the last immediate retry, are
      forgotten only once a connection has stayed up
      ``max(reset_after, base)`` seconds (1 s by default): a server that
      accepts and at once closes cannot turn "once, then stop" into
      "forever", nor make ``RETRY_NOW`` a loop faster than the first delay.
    * ``RETRY_NOW`` waits 0 s, but only once in a row: a ``RETRY_NOW`` right
      after an immediate retry waits the backoff delay, so no policy can make
      a tight loop.
    * A failure with :attr:`ConnectionFailure.retry_after` waits at least
      that long, and never more than ``backoff.max_delay``:
      ``min(max(retry_after, delay), max_delay)``.
    * ``reset()`` (an intentional disconnect) forgets everything.
    """

    backoff: Backoff
    policy: RetryPolicy = default_retry_policy
    retries_used: int = 0
    _connected_at: float | None = None
    _last_outcome: tuple[FailureKind, int | None, int | None] | None = None
    _repeats: int = 0
    _last_was_immediate: bool = False

    def on_connected(self, now: float) -> None:
        """Record a successful handshake at time ``now``."""
        self._connected_at = now
        self.settle(now)

    def settle(self, now: float) -> None:
        """Give back what the current connection has earned by staying up."""
        connected_at = self._connected_at
        if connected_at is None:
            return
        uptime = now - connected_at
        if uptime >= self.backoff.reset_after:
            self.retries_used = 0
        if uptime >= max(self.backoff.reset_after, self.backoff.base):
            self._forget_row()

    def on_failure(self, failure: ConnectionFailure, now: float) -> RetryDecision:
        """Decide what follows ``failure``, which happened at time ``now``.

        The policy sees ``failure`` with :attr:`ConnectionFailure.repeats`
        filled in.
        """
        self.settle(now)
        self._connected_at = None
        outcome = failure.outcome
        self._repeats = self._repeats + 1 if outcome == self._last_outcome else 0
        self._last_outcome = outcome
        failure = attrs.evolve(failure, repeats=self._repeats)
        verdict = RetryVerdict(self.policy(failure))
        if verdict is RetryVerdict.GIVE_UP:
            return RetryDecision(None, give_up_message=_fatal_message(failure))
        limit = self.backoff.max_retries
        if limit is not None and self.retries_used >= limit:
            return RetryDecision(None, give_up_message=MAX_RETRIES_MESSAGE)
        immediate = verdict is RetryVerdict.RETRY_NOW and not self._last_was_immediate
        delay = 0.0 if immediate else self.backoff.delay(self.retries_used)
        if failure.retry_after is not None:
            delay = min(max(failure.retry_after, delay), self.backoff.max_delay)
        self._last_was_immediate = immediate
        self.retries_used += 1
        return RetryDecision(delay, retry_count=self.retries_used)

    def reset(self) -> None:
        """Forget all failures (after an intentional disconnect)."""
        self._connected_at = None
        self.retries_used = 0
        self._forget_row()

    def _forget_row(self) -> None:
        # _repeats needs no reset: with no last outcome the next failure is 0.
        self._last_outcome = None
        self._last_was_immediate = False


#: How every give-up message of a fatal failure ends: the message describes
#: that failure itself, so it needs no "last error" after it.
NOT_RETRIED = "(not retried)"


def _fatal_message(failure: ConnectionFailure) -> str:
    if failure.kind is FailureKind.REJECTED:
        return f"Connection rejected with HTTP {failure.status_code} {NOT_RETRIED}"
    if failure.kind is FailureKind.CLOSED:
        return f"Connection closed with code {failure.close_code} {NOT_RETRIED}"
    return f"{failure.reason or failure.kind} {NOT_RETRIED}"


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
    # While connected, what differs between the server's view and _wanted, in
    # the order it came to differ. Ordered dicts pop their first key in O(1),
    # so taking a slice of requests costs the slice, not the whole set.
    _to_unsubscribe: OrderedDict[SubscriptionKey, None] = attrs.field(
        factory=OrderedDict
    )
    _to_subscribe: OrderedDict[SubscriptionKey, None] = attrs.field(factory=OrderedDict)

    @property
    def wanted(self) -> list[SubscriptionKey]:
        """The persisted subscriptions, in the order they became wanted."""
        return list(self._wanted)

    def pin(self, key: SubscriptionKey) -> bool:
        """Want ``key`` until :meth:`unpin` (explicit ``subscribe()``).

        Returns whether the pin is new (it was not pinned already).
        """
        if key in self._pinned:
            return False
        self._pinned.add(key)
        self._refresh(key)
        return True

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
        self._compare(key)

    def _compare(self, key: SubscriptionKey) -> None:
        """Note whether the server must be told about ``key`` (while connected)."""
        on_server = self._on_server
        if on_server is None:
            return
        wanted, known = key in self._wanted, key in on_server
        self._to_subscribe.pop(key, None)
        self._to_unsubscribe.pop(key, None)
        if wanted and not known:
            self._to_subscribe[key] = None
        elif known and not wanted:
            self._to_unsubscribe[key] = None

    def connection_opened(self) -> None:
        """A new connection: the server holds nothing yet."""
        self._on_server = {}
        self._to_unsubscribe = OrderedDict()
        self._to_subscribe = OrderedDict.fromkeys(self._wanted)

    def connection_lost(self) -> None:
        """No connection: nothing is pending until the next one opens."""
        self._on_server = None
        self._to_unsubscribe = OrderedDict()
        self._to_subscribe = OrderedDict()

    def pending(self) -> list[SubscribeRequest]:
        """The requests to send now, in order (empty while disconnected).

        Unsubscribes first, then subscribes in the order they became wanted.
        """
        return [
            *(SubscribeRequest.unsubscribe(*key) for key in self._to_unsubscribe),
            *(SubscribeRequest.subscribe(*key) for key in self._to_subscribe),
        ]

    def take_pending(self, max_items: int) -> list[SubscribeRequest]:
        """The first ``max_items`` of :meth:`pending`, marked as sent.

        Costs what it takes, so a large set is replayed a slice at a time.
        """
        taken: list[SubscribeRequest] = []
        for keys, make in (
            (self._to_unsubscribe, SubscribeRequest.unsubscribe),
            (self._to_subscribe, SubscribeRequest.subscribe),
        ):
            while keys and len(taken) < max_items:
                key, _ = keys.popitem(last=False)
                taken.append(make(*key))
                self.mark_sent(taken[-1])
        return taken

    def mark_sent(self, request: SubscribeRequest) -> None:
        """Record that ``request`` went out on the current connection."""
        on_server = self._on_server
        if on_server is None:
            return
        if request.action == "subscribe":
            on_server[request.key] = None
        else:
            on_server.pop(request.key, None)
        self._compare(request.key)
