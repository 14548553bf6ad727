"""Whether and when to try again: retry policies and the retry budget.

A retry policy classifies one :class:`~trio_ws_bus.ConnectionFailure` (retry,
retry now, give up); :class:`RetryBudget` counts retries and turns each failure
into a :class:`RetryDecision` (wait this long, or give up with this message);
:func:`parse_retry_after` reads a server's ``Retry-After``. Nothing here touches
Trio, a clock or a socket (the caller passes ``now``), so it is tested
synchronously.
"""

from __future__ import annotations

import email.utils
import enum
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Final

import attrs

from ._backoff import Backoff
from ._failures import ConnectionFailure, FailureKind

__all__ = [
    "MAX_RETRIES_MESSAGE",
    "NOT_RETRIED",
    "RetryBudget",
    "RetryDecision",
    "RetryPolicy",
    "RetryRules",
    "RetryVerdict",
    "default_retry_policy",
    "fatal_auth_policy",
    "parse_retry_after",
    "seed_retry_policy",
]


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
