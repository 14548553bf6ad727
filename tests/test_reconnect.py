"""The I/O-free core: the retry budget and the subscription ledger."""

from __future__ import annotations

import email.utils
import math
import re
from datetime import datetime, timedelta, timezone

import attrs
import pytest
from helpers import SUBSCRIPTION_KEYS
from hypothesis import given, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from trio_ws_bus import (
    Backoff,
    ConnectionFailure,
    FailureKind,
    RetryRules,
    RetryVerdict,
    SubscribeRequest,
    default_retry_policy,
    fatal_auth_policy,
    seed_retry_policy,
)
from trio_ws_bus._ledger import SubscriptionLedger
from trio_ws_bus._protocol import SubscriptionKey
from trio_ws_bus._retry import MAX_RETRIES_MESSAGE, RetryBudget, parse_retry_after

CLOSED = ConnectionFailure(FailureKind.CLOSED, close_code=1006)
REFUSED = ConnectionFailure(FailureKind.UNREACHABLE, reason="refused")


def test_budget_follows_the_seed_schedule_then_gives_up() -> None:
    """20 failures get the seed delays; the 21st gives up with the seed message."""
    budget = RetryBudget(Backoff())
    decisions = [budget.on_failure(REFUSED, now=0.0) for _ in range(21)]
    assert [d.delay for d in decisions[:20]] == list(Backoff().delays())
    assert [d.retry_count for d in decisions[:20]] == list(range(1, 21))
    assert decisions[20].delay is None
    assert decisions[20].give_up_message == MAX_RETRIES_MESSAGE


def test_a_budget_without_a_limit_never_gives_up_and_keeps_counting() -> None:
    """max_retries=None: 1000 failures, 1000 retries at the capped delay, counted."""
    budget = RetryBudget(Backoff(max_retries=None))
    decisions = [budget.on_failure(REFUSED, now=0.0) for _ in range(1000)]
    assert [d.retry_count for d in decisions] == list(range(1, 1001))
    assert [d.delay for d in decisions[5:]] == [30.0] * 995
    assert budget.retries_used == 1000
    # The policy still decides: a failure it calls fatal stops the manager.
    rejected = ConnectionFailure(FailureKind.REJECTED, status_code=403)
    assert budget.on_failure(rejected, now=0.0).delay is None


def test_every_handshake_resets_the_count_by_default_like_the_seed() -> None:
    """By default (reset_after=0) any handshake resets the count and the delay."""
    budget = RetryBudget(Backoff())
    for _ in range(5):
        budget.on_failure(REFUSED, now=0.0)
    budget.on_connected(now=100.0)
    assert budget.retries_used == 0
    assert budget.on_failure(CLOSED, now=100.5).delay == 1.0


def test_reset_after_ignores_short_lived_connections() -> None:
    """With reset_after, a connection dropped at once does not refill the budget."""
    budget = RetryBudget(Backoff(reset_after=10.0))
    assert budget.on_failure(REFUSED, now=0.0).delay == 1.0
    budget.on_connected(now=1.0)
    assert budget.on_failure(CLOSED, now=1.5).delay == 2.0
    budget.on_connected(now=5.0)
    assert budget.on_failure(CLOSED, now=15.0).delay == 1.0


def test_twenty_one_short_connections_never_end_the_feed_by_default() -> None:
    """A server closing every connection after 3 s is retried at 1 s forever."""
    budget = RetryBudget(Backoff())
    for connected_at in range(0, 4 * 100, 4):
        budget.on_connected(now=float(connected_at))
        decision = budget.on_failure(CLOSED, now=connected_at + 3.0)
        assert (decision.delay, decision.retry_count) == (1.0, 1)


def test_give_up_verdict_stops_at_once() -> None:
    """A policy's GIVE_UP ends the session on the first such failure."""
    rejected = ConnectionFailure(FailureKind.REJECTED, status_code=401)
    budget = RetryBudget(Backoff(), policy=lambda failure: RetryVerdict.GIVE_UP)
    decision = budget.on_failure(rejected, now=0.0)
    assert decision.delay is None
    assert decision.give_up_message is not None
    assert "401" in decision.give_up_message


def test_retry_now_is_immediate_once_in_a_row_and_counted() -> None:
    """RETRY_NOW waits 0 s once; in a row it waits the backoff; it always counts."""
    budget = RetryBudget(
        Backoff(max_retries=4), policy=lambda failure: RetryVerdict.RETRY_NOW
    )
    assert [budget.on_failure(REFUSED, now=0.0).delay for _ in range(5)] == [
        0.0,
        2.0,
        0.0,
        8.0,
        None,
    ]


def test_reset_empties_the_budget() -> None:
    """An intentional disconnect starts the next session with a full budget."""
    budget = RetryBudget(Backoff(max_retries=1))
    budget.on_failure(REFUSED, now=0.0)
    budget.reset()
    assert budget.on_failure(REFUSED, now=0.0).delay == 1.0


def test_ledger_replays_in_first_subscribed_order() -> None:
    """After a connect, pending() is one subscribe per wanted key, in order."""
    ledger = SubscriptionLedger()
    ledger.pin(("device", "b"))
    ledger.pin(("alerts", None))
    ledger.pin(("device", "a"))
    ledger.pin(("device", "b"))
    assert ledger.pending() == []  # disconnected: nothing to send
    ledger.connection_opened()
    assert [(r.action, r.key) for r in ledger.pending()] == [
        ("subscribe", ("device", "b")),
        ("subscribe", ("alerts", None)),
        ("subscribe", ("device", "a")),
    ]


def test_ledger_replays_a_large_set_a_slice_at_a_time() -> None:
    """take_pending() of 200,000 wanted keys: slices in order, each costing its size."""
    ledger = SubscriptionLedger()
    keys: list[SubscriptionKey] = [("device", f"d{i}") for i in range(200_000)]
    for key in keys:
        ledger.pin(key)
    ledger.connection_opened()
    sent: list[SubscriptionKey] = []
    for _ in range(len(keys) // 512 + 2):  # bounded: one more call than needed
        requests = ledger.take_pending(512)
        if not requests:
            break
        assert len(requests) <= 512
        sent.extend(request.key for request in requests)
    assert sent == keys
    assert ledger.pending() == []


def test_ledger_references_outlive_an_unpin() -> None:
    """A key held by a context stays wanted after unpin, until released."""
    ledger = SubscriptionLedger()
    key: SubscriptionKey = ("alerts", None)
    ledger.acquire(key)
    ledger.pin(key)
    ledger.unpin(key)
    assert ledger.wanted == [key]
    ledger.release(key)
    assert ledger.wanted == []


def test_ledger_resubscribes_after_an_unsubscribe_went_out() -> None:
    """Once an unsubscribe is sent, wanting the key again sends a subscribe."""
    key: SubscriptionKey = ("device", "d1")
    ledger = SubscriptionLedger()
    ledger.connection_opened()
    ledger.pin(key)
    (subscribe,) = ledger.pending()
    ledger.mark_sent(subscribe)
    ledger.unpin(key)
    (unsubscribe,) = ledger.pending()
    ledger.mark_sent(unsubscribe)
    assert ledger.pending() == []
    ledger.pin(key)
    assert ledger.pending() == [subscribe]


def test_ledger_ignores_a_sent_request_from_an_older_connection() -> None:
    """An unsubscribe marked after a reconnect (or when disconnected) is harmless."""
    key: SubscriptionKey = ("alerts", None)
    ledger = SubscriptionLedger()
    ledger.pin(key)
    ledger.connection_opened()
    (subscribe,) = ledger.pending()
    ledger.unpin(key)
    ledger.connection_opened()  # the server forgot everything
    ledger.mark_sent(SubscribeRequest.unsubscribe(*key))
    ledger.connection_lost()
    ledger.mark_sent(subscribe)
    ledger.connection_opened()
    assert ledger.pending() == []


class LedgerMachine(RuleBasedStateMachine):
    """Random pin/unpin/acquire/release/connect/drop against a simple model."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = SubscriptionLedger()
        self.pins: set[SubscriptionKey] = set()
        self.refs: dict[SubscriptionKey, int] = {}
        self.order: list[SubscriptionKey] = []
        self.server: list[SubscriptionKey] | None = None

    def _refresh(self, key: SubscriptionKey) -> None:
        wanted = key in self.pins or self.refs.get(key, 0) > 0
        if wanted and key not in self.order:
            self.order.append(key)
        if not wanted and key in self.order:
            self.order.remove(key)

    @rule(key=st.sampled_from(SUBSCRIPTION_KEYS))
    def pin(self, key: SubscriptionKey) -> None:
        self.ledger.pin(key)
        self.pins.add(key)
        self._refresh(key)

    @rule(key=st.sampled_from(SUBSCRIPTION_KEYS))
    def unpin(self, key: SubscriptionKey) -> None:
        self.ledger.unpin(key)
        self.pins.discard(key)
        self._refresh(key)

    @rule(key=st.sampled_from(SUBSCRIPTION_KEYS))
    def acquire(self, key: SubscriptionKey) -> None:
        self.ledger.acquire(key)
        self.refs[key] = self.refs.get(key, 0) + 1
        self._refresh(key)

    @rule(key=st.sampled_from(SUBSCRIPTION_KEYS))
    def release(self, key: SubscriptionKey) -> None:
        if self.refs.get(key, 0) == 0:
            return
        self.ledger.release(key)
        self.refs[key] -= 1
        self._refresh(key)

    @rule()
    def connect(self) -> None:
        self.ledger.connection_opened()
        self.server = []

    @rule()
    def drop(self) -> None:
        self.ledger.connection_lost()
        self.server = None

    @rule(count=st.integers(0, 4))
    def send(self, count: int) -> None:
        """Send the first few pending requests to a model server."""
        for request in self.ledger.pending()[:count]:
            assert self.server is not None
            if request.action == "subscribe":
                assert request.key not in self.server
                self.server.append(request.key)
            else:
                self.server.remove(request.key)
            self.ledger.mark_sent(request)

    @rule(count=st.integers(1, 4))
    def take(self, count: int) -> None:
        """Take a slice of what is pending: exactly the head of pending()."""
        expected = self.ledger.pending()[:count]
        taken = self.ledger.take_pending(count)
        assert taken == expected
        for request in taken:
            assert self.server is not None
            if request.action == "subscribe":
                self.server.append(request.key)
            else:
                self.server.remove(request.key)

    @invariant()
    def wanted_matches_model(self) -> None:
        assert self.ledger.wanted == self.order

    @invariant()
    def settling_makes_server_equal_wanted(self) -> None:
        """Sending everything pending leaves the server with exactly the wanted set."""
        if self.server is None:
            assert self.ledger.pending() == []
            return
        server = list(self.server)
        for request in self.ledger.pending():
            if request.action == "subscribe":
                server.append(request.key)
            else:
                server.remove(request.key)
        assert sorted(server, key=repr) == sorted(self.order, key=repr)


TestLedgerMachine = LedgerMachine.TestCase


# -- retry rules and the budget's guards ----------------------------------------

REJECTED_401 = ConnectionFailure(FailureKind.REJECTED, status_code=401)
REJECTED_403 = ConnectionFailure(FailureKind.REJECTED, status_code=403)
REJECTED_503 = ConnectionFailure(FailureKind.REJECTED, status_code=503)
EXPIRED = ConnectionFailure(FailureKind.CLOSED, close_code=4001)
TLS = ConnectionFailure(FailureKind.TLS_ERROR, reason="TLS failed")


def test_retry_rules_order_retry_now_then_fatal_then_retry() -> None:
    """A code in both sets: immediate once, fatal when it repeats; others retried."""
    rules = RetryRules(
        fatal_statuses={401, 403},
        retry_now_statuses={401},
        fatal_close_codes={1008},
        retry_now_close_codes={4001},
        fatal_kinds={FailureKind.TLS_ERROR},
    )
    verdicts = {
        "401": rules(REJECTED_401),
        "401 again": rules(attrs.evolve(REJECTED_401, repeats=1)),
        "403": rules(REJECTED_403),
        "503": rules(REJECTED_503),
        "4001": rules(EXPIRED),
        "4001 again": rules(attrs.evolve(EXPIRED, repeats=1)),
        "1008": rules(ConnectionFailure(FailureKind.CLOSED, close_code=1008)),
        "tls": rules(TLS),
        "refused": rules(REFUSED),
    }
    assert verdicts == {
        "401": RetryVerdict.RETRY_NOW,
        "401 again": RetryVerdict.GIVE_UP,
        "403": RetryVerdict.GIVE_UP,
        "503": RetryVerdict.RETRY,
        "4001": RetryVerdict.RETRY_NOW,
        "4001 again": RetryVerdict.RETRY,
        "1008": RetryVerdict.GIVE_UP,
        "tls": RetryVerdict.GIVE_UP,
        "refused": RetryVerdict.RETRY,
    }
    assert RetryRules()(REJECTED_401) is RetryVerdict.RETRY


def test_fatal_auth_policy_is_the_documented_rules() -> None:
    """fatal_auth_policy: 401 now, 401 again fatal, 403 fatal, the rest retried."""
    assert fatal_auth_policy(REJECTED_401) is RetryVerdict.RETRY_NOW
    assert fatal_auth_policy(attrs.evolve(REJECTED_401, repeats=1)) is (
        RetryVerdict.GIVE_UP
    )
    assert fatal_auth_policy(REJECTED_403) is RetryVerdict.GIVE_UP
    for failure in (REJECTED_503, EXPIRED, TLS, REFUSED, CLOSED):
        assert fatal_auth_policy(failure) is RetryVerdict.RETRY


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"fatal_statuses": {99}},
            ValueError,
            "HTTP statuses must be in 100-599, got 99",
        ),
        ({"retry_now_statuses": {600}}, ValueError, "HTTP statuses must be in 100-599"),
        ({"fatal_close_codes": {999}}, ValueError, "close codes must be in 1000-4999"),
        ({"retry_now_close_codes": {5000}}, ValueError, "got 5000"),
        (
            {"fatal_statuses": {"401"}},
            TypeError,
            "HTTP statuses must be ints, got '401'",
        ),
        (
            {"fatal_close_codes": {True}},
            TypeError,
            "close codes must be ints, got True",
        ),
        ({"fatal_kinds": {"nope"}}, ValueError, "nope"),
    ],
)
def test_retry_rules_reject_impossible_codes(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    """Statuses must be 100-599, close codes 1000-4999, kinds real FailureKinds."""
    with pytest.raises(error, match=re.escape(message)):
        RetryRules(**options)  # type: ignore[arg-type]


def test_budget_counts_repeats_of_the_same_outcome() -> None:
    """The policy sees how many identical outcomes came just before."""
    seen: list[int] = []

    def policy(failure: ConnectionFailure) -> RetryVerdict:
        seen.append(failure.repeats)
        return RetryVerdict.RETRY

    budget = RetryBudget(Backoff(), policy=policy)
    for failure in (REJECTED_401, REJECTED_401, REJECTED_503, REJECTED_401, CLOSED):
        budget.on_failure(failure, now=0.0)
    budget.on_connected(now=0.0)  # a healthy connection breaks the row
    budget.on_failure(CLOSED, now=1.0)
    assert seen == [0, 1, 0, 0, 0, 0]


def test_policy_returning_a_plain_string_is_understood() -> None:
    """RetryVerdict is a str enum: a policy may return "give_up"."""
    budget = RetryBudget(
        Backoff(),
        policy=lambda failure: "give_up",  # type: ignore[arg-type,return-value]
    )
    assert budget.on_failure(REFUSED, now=0.0).delay is None


FAILURES = st.sampled_from([REFUSED, CLOSED, REJECTED_401, REJECTED_503, EXPIRED])
VERDICTS = st.sampled_from(list(RetryVerdict))
#: Uptimes away from the base and reset_after boundaries, where float sums may
#: land on either side.
UPTIMES = st.floats(0.0, 30.0).filter(
    lambda u: abs(u - 1.0) > 1e-6 and abs(u - 10.0) > 1e-6
)


@given(
    steps=st.lists(st.tuples(FAILURES, VERDICTS, UPTIMES), min_size=1, max_size=60),
    max_retries=st.integers(0, 25),
    reset_after=st.sampled_from([0.0, 10.0]),
)
def test_budget_never_loops_and_never_overspends(
    steps: list[tuple[ConnectionFailure, RetryVerdict, float]],
    max_retries: int,
    reset_after: float,
) -> None:
    """Any policy: never two immediate retries in a row, never over max_retries.

    The count holds between connections up reset_after seconds, the immediacy
    guard between connections up max(reset_after, base) seconds.
    """
    verdicts = iter([verdict for _, verdict, _ in steps])
    budget = RetryBudget(
        Backoff(max_retries=max_retries, reset_after=reset_after),
        policy=lambda failure: next(verdicts),
    )
    now = 0.0
    previous_delay: float | None = None
    since_reset = 0
    for failure, _, uptime in steps:
        budget.on_connected(now)
        now += uptime
        if uptime >= reset_after:
            since_reset = 0
        if uptime >= max(reset_after, 1.0):
            previous_delay = None
        decision = budget.on_failure(failure, now)
        if decision.delay is None:
            break
        since_reset += 1
        assert since_reset <= max_retries
        assert decision.retry_count == since_reset
        assert not (decision.delay == 0.0 and previous_delay == 0.0)
        previous_delay = decision.delay
        now += decision.delay


# -- the default policy: stop on what retrying cannot fix -----------------------


def rejected(status: int, repeats: int = 0) -> ConnectionFailure:
    return ConnectionFailure(FailureKind.REJECTED, status_code=status, repeats=repeats)


def expected_default(status: int, repeats: int) -> RetryVerdict:
    """The documented table, written out independently of RetryRules."""
    if status == 401:
        return RetryVerdict.GIVE_UP if repeats else RetryVerdict.RETRY_NOW
    if 400 <= status <= 499 and status not in (408, 429):
        return RetryVerdict.GIVE_UP
    return RetryVerdict.RETRY


@given(status=st.integers(100, 599), repeats=st.integers(0, 3))
def test_default_policy_follows_the_table_for_every_status(
    status: int, repeats: int
) -> None:
    """401: once at once then stop; other 4xx but 408/429 stop; the rest retried."""
    verdict = default_retry_policy(rejected(status, repeats))
    assert verdict is expected_default(status, repeats)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (400, RetryVerdict.GIVE_UP),
        (401, RetryVerdict.RETRY_NOW),
        (403, RetryVerdict.GIVE_UP),
        (404, RetryVerdict.GIVE_UP),
        (408, RetryVerdict.RETRY),
        (429, RetryVerdict.RETRY),
        (499, RetryVerdict.GIVE_UP),
        (399, RetryVerdict.RETRY),
        (500, RetryVerdict.RETRY),
        (503, RetryVerdict.RETRY),
    ],
)
def test_default_policy_named_statuses(status: int, verdict: RetryVerdict) -> None:
    """The rows of the documented table, one by one, and the 4xx edges."""
    assert default_retry_policy(rejected(status)) is verdict


@pytest.mark.parametrize(
    "kind", [k for k in FailureKind if k is not FailureKind.INVALID_TOKEN]
)
@pytest.mark.parametrize("close_code", [None, 1000, 1003, 1006, 1008, 4001, 4999])
def test_default_policy_retries_network_failures_and_every_close_code(
    kind: FailureKind, close_code: int | None
) -> None:
    """Handshake-free failures and closes of an open connection follow the backoff."""
    for repeats in (0, 5):
        failure = ConnectionFailure(kind, close_code=close_code, repeats=repeats)
        assert default_retry_policy(failure) is RetryVerdict.RETRY


def test_default_policy_treats_an_unsendable_token_like_a_401() -> None:
    """INVALID_TOKEN: one immediate retry with a fresh token, then give up."""
    failure = ConnectionFailure(FailureKind.INVALID_TOKEN, reason="Token is not text")
    assert default_retry_policy(failure) is RetryVerdict.RETRY_NOW
    again = attrs.evolve(failure, repeats=1)
    assert default_retry_policy(again) is RetryVerdict.GIVE_UP


@given(
    kind=st.sampled_from(FailureKind),
    status=st.none() | st.integers(100, 599),
    repeats=st.integers(0, 3),
)
def test_seed_policy_retries_everything(
    kind: FailureKind, status: int | None, repeats: int
) -> None:
    """seed_retry_policy is the browser's rule: every failure is retried."""
    failure = ConnectionFailure(kind, status_code=status, repeats=repeats)
    assert seed_retry_policy(failure) is RetryVerdict.RETRY


def test_fatal_auth_policy_differs_from_the_default_on_other_client_errors() -> None:
    """fatal_auth_policy retries 404 and an unsendable token; the default does not."""
    unsendable = ConnectionFailure(FailureKind.INVALID_TOKEN, repeats=1)
    for failure in (rejected(404), rejected(400), unsendable):
        assert fatal_auth_policy(failure) is RetryVerdict.RETRY
        assert default_retry_policy(failure) is RetryVerdict.GIVE_UP


def test_wrong_token_gives_up_after_one_immediate_retry() -> None:
    """A server answering 401 forever: attempts at 0 s and 0 s, then give up."""
    budget = RetryBudget(Backoff())
    first = budget.on_failure(rejected(401), now=0.0)
    second = budget.on_failure(rejected(401), now=0.0)
    assert (first.delay, first.retry_count) == (0.0, 1)
    assert second.delay is None
    assert second.give_up_message == "Connection rejected with HTTP 401 (not retried)"


# -- RetryRules edges and give-up texts -------------------------------------------


@pytest.mark.parametrize("status", [100, 599])
def test_retry_rules_accept_the_edge_statuses(status: int) -> None:
    """100 and 599 are valid statuses for both sets."""
    assert RetryRules(fatal_statuses={status})(rejected(status)) is (
        RetryVerdict.GIVE_UP
    )
    assert RetryRules(retry_now_statuses={status})(rejected(status)) is (
        RetryVerdict.RETRY_NOW
    )


@pytest.mark.parametrize("code", [1000, 4999])
def test_retry_rules_accept_the_edge_close_codes(code: int) -> None:
    """1000 and 4999 are valid close codes for both sets."""
    closed = ConnectionFailure(FailureKind.CLOSED, close_code=code)
    assert RetryRules(fatal_close_codes={code})(closed) is RetryVerdict.GIVE_UP
    assert RetryRules(retry_now_close_codes={code})(closed) is RetryVerdict.RETRY_NOW


def test_retry_rules_retry_now_kinds_then_fatal_kinds() -> None:
    """A kind in both sets: immediate the first time in a row, fatal when repeated."""
    rules = RetryRules(
        retry_now_kinds={FailureKind.TIMEOUT}, fatal_kinds={FailureKind.TIMEOUT}
    )
    timeout = ConnectionFailure(FailureKind.TIMEOUT)
    assert rules(timeout) is RetryVerdict.RETRY_NOW
    assert rules(attrs.evolve(timeout, repeats=1)) is RetryVerdict.GIVE_UP
    assert rules(REFUSED) is RetryVerdict.RETRY
    with pytest.raises(ValueError, match="nope"):
        RetryRules(retry_now_kinds={"nope"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (rejected(403), "Connection rejected with HTTP 403 (not retried)"),
        (
            ConnectionFailure(FailureKind.CLOSED, close_code=1008, reason="policy"),
            "Connection closed with code 1008 (not retried)",
        ),
        (TLS, "TLS failed (not retried)"),
        (ConnectionFailure(FailureKind.TLS_ERROR), "tls_error (not retried)"),
    ],
)
def test_give_up_text_names_what_was_fatal(
    failure: ConnectionFailure, message: str
) -> None:
    """The error event says the status, the close code, or the reason (or kind)."""
    budget = RetryBudget(Backoff(), policy=lambda failure: RetryVerdict.GIVE_UP)
    assert budget.on_failure(failure, now=0.0).give_up_message == message


def test_retry_now_is_immediate_again_after_a_healthy_connection() -> None:
    """After a connection resets the count, the next RETRY_NOW waits 0 s again."""
    budget = RetryBudget(Backoff(), policy=lambda failure: RetryVerdict.RETRY_NOW)
    assert budget.on_failure(EXPIRED, now=0.0).delay == 0.0
    budget.on_connected(now=1.0)
    assert budget.on_failure(EXPIRED, now=2.0).delay == 0.0


def test_connection_that_closes_at_once_keeps_the_loop_guards() -> None:
    """Closed at once every time: RETRY_NOW alternates 0 s and 1 s, forever."""
    budget = RetryBudget(Backoff(), policy=lambda failure: RetryVerdict.RETRY_NOW)
    now, delays = 0.0, []
    for _ in range(40):
        budget.on_connected(now)
        now += 0.5
        delay = budget.on_failure(EXPIRED, now).delay
        assert delay is not None
        delays.append(delay)
        now += delay
    assert delays == [0.0, 1.0] * 20


def test_once_then_stop_survives_a_connection_that_closes_at_once() -> None:
    """4001 right after each handshake: once at once, then the rule gives up."""
    once = RetryRules(retry_now_close_codes={4001}, fatal_close_codes={4001})
    budget = RetryBudget(Backoff(), policy=once)
    budget.on_connected(now=0.0)
    assert budget.on_failure(EXPIRED, now=0.5).delay == 0.0
    budget.on_connected(now=0.5)
    decision = budget.on_failure(EXPIRED, now=0.7)
    assert decision.give_up_message == "Connection closed with code 4001 (not retried)"


def test_retry_now_is_immediate_again_after_reset() -> None:
    """After an intentional disconnect, the next RETRY_NOW waits 0 s again."""
    budget = RetryBudget(Backoff(), policy=lambda failure: RetryVerdict.RETRY_NOW)
    assert budget.on_failure(EXPIRED, now=0.0).delay == 0.0
    budget.reset()
    assert budget.on_failure(EXPIRED, now=0.0).delay == 0.0


def test_settle_before_reset_after_keeps_the_count() -> None:
    """settle() resets only once the connection has been up reset_after seconds."""
    budget = RetryBudget(Backoff(reset_after=10.0))
    budget.on_failure(REFUSED, now=0.0)
    budget.on_connected(now=1.0)
    budget.settle(now=10.5)
    assert budget.retries_used == 1
    budget.settle(now=11.0)
    assert budget.retries_used == 0


# -- Retry-After ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "verdict", "delay"),
    [
        (5.0, RetryVerdict.RETRY, 5.0),  # longer than the backoff: honoured
        (0.25, RetryVerdict.RETRY, 1.0),  # shorter: the backoff delay wins
        (3600.0, RetryVerdict.RETRY, 30.0),  # capped at max_delay
        (5.0, RetryVerdict.RETRY_NOW, 5.0),  # the server's wait beats "now"
        (None, RetryVerdict.RETRY, 1.0),
    ],
)
def test_retry_after_is_the_larger_wait_capped_at_max_delay(
    retry_after: float | None, verdict: RetryVerdict, delay: float
) -> None:
    """The wait is min(max(retry_after, backoff delay), max_delay), any verdict."""
    failure = attrs.evolve(rejected(429), retry_after=retry_after)
    budget = RetryBudget(Backoff(), policy=lambda failure: verdict)
    assert budget.on_failure(failure, now=0.0).delay == delay


def test_default_policy_honours_retry_after_on_503() -> None:
    """A 503 asking for 20 s waits 20 s, then the schedule goes on."""
    busy = attrs.evolve(rejected(503), retry_after=20.0)
    budget = RetryBudget(Backoff())
    assert [budget.on_failure(busy, now=0.0).delay for _ in range(3)] == [
        20.0,
        20.0,
        20.0,
    ]
    assert budget.on_failure(rejected(503), now=0.0).delay == 8.0


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Fri, 02 Jan 2026 03:05:05 GMT", 60.0),  # IMF-fixdate
        ("Friday, 02-Jan-26 03:04:35 GMT", 30.0),  # obsolete RFC 850
        ("Fri Jan  2 03:04:15 2026", 10.0),  # asctime, no zone: UTC
        ("Thu, 01 Jan 2026 00:00:00 GMT", 0.0),  # in the past
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("\u00b2", None),  # a digit to str.isdigit(), not to HTTP
        ("Fri, 02 Jan 99999 03:05:05 GMT", None),
    ],
)
def test_parse_retry_after_reads_both_forms(value: str, seconds: float | None) -> None:
    """Delay-seconds and all three HTTP-date forms; anything else is None."""
    assert parse_retry_after(value, NOW) == seconds


def test_parse_retry_after_defaults_to_the_current_time() -> None:
    """Without now, a date is counted from the wall clock."""
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    seconds = parse_retry_after(email.utils.format_datetime(soon, usegmt=True))
    assert seconds is not None
    assert 3500 < seconds <= 3600


@given(st.text())
def test_parse_retry_after_never_raises(value: str) -> None:
    """Any header text gives None or a finite wait >= 0."""
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)
