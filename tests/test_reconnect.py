"""The I/O-free core: the retry budget and the subscription ledger."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from trio_ws_bus import (
    Backoff,
    ConnectionFailure,
    FailureKind,
    RetryRules,
    RetryVerdict,
    fatal_auth_policy,
)
from trio_ws_bus._reconnect import (
    MAX_RETRIES_MESSAGE,
    RetryBudget,
    SubscriptionKey,
    SubscriptionLedger,
)

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


def test_connection_resets_the_count_by_default() -> None:
    """A connection up for reset_after (10 s) makes the next wait the base delay."""
    budget = RetryBudget(Backoff())
    for _ in range(5):
        budget.on_failure(REFUSED, now=0.0)
    budget.on_connected(now=100.0)
    assert budget.on_failure(CLOSED, now=100.0 + Backoff().reset_after).delay == 1.0


def test_connection_that_dies_at_once_keeps_the_count_by_default() -> None:
    """By default a connection dropped within 10 s does not refill the budget."""
    budget = RetryBudget(Backoff())
    for _ in range(5):
        budget.on_failure(REFUSED, now=0.0)
    budget.on_connected(now=100.0)
    decision = budget.on_failure(CLOSED, now=100.0 + Backoff().reset_after - 0.5)
    assert (decision.delay, decision.retry_count) == (30.0, 6)


def test_reset_after_zero_resets_on_every_handshake_like_the_seed() -> None:
    """reset_after=0 is the browser client's rule: any handshake resets the count."""
    budget = RetryBudget(Backoff(reset_after=0))
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


KEYS: list[SubscriptionKey] = [("alerts", None), ("device", "d1"), ("device", "d2")]


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

    @rule(key=st.sampled_from(KEYS))
    def pin(self, key: SubscriptionKey) -> None:
        self.ledger.pin(key)
        self.pins.add(key)
        self._refresh(key)

    @rule(key=st.sampled_from(KEYS))
    def unpin(self, key: SubscriptionKey) -> None:
        self.ledger.unpin(key)
        self.pins.discard(key)
        self._refresh(key)

    @rule(key=st.sampled_from(KEYS))
    def acquire(self, key: SubscriptionKey) -> None:
        self.ledger.acquire(key)
        self.refs[key] = self.refs.get(key, 0) + 1
        self._refresh(key)

    @rule(key=st.sampled_from(KEYS))
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
    ("options", "error"),
    [
        ({"fatal_statuses": {99}}, ValueError),
        ({"retry_now_statuses": {600}}, ValueError),
        ({"fatal_close_codes": {999}}, ValueError),
        ({"retry_now_close_codes": {5000}}, ValueError),
        ({"fatal_statuses": {"401"}}, TypeError),
        ({"fatal_close_codes": {True}}, TypeError),
        ({"fatal_kinds": {"nope"}}, ValueError),
    ],
)
def test_retry_rules_reject_impossible_codes(
    options: dict[str, object], error: type[Exception]
) -> None:
    """Statuses must be 100-599, close codes 1000-4999, kinds real FailureKinds."""
    with pytest.raises(error):
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
    budget.on_connected(now=0.0)
    budget.on_failure(CLOSED, now=Backoff().reset_after)  # a healthy connection
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
#: Uptimes away from the reset_after boundary, where float sums may land on
#: either side.
UPTIMES = st.floats(0.0, 30.0).filter(lambda u: abs(u - Backoff().reset_after) > 1e-6)


@given(
    steps=st.lists(st.tuples(FAILURES, VERDICTS, UPTIMES), min_size=1, max_size=60),
    max_retries=st.integers(0, 25),
)
def test_budget_never_loops_and_never_overspends(
    steps: list[tuple[ConnectionFailure, RetryVerdict, float]], max_retries: int
) -> None:
    """Any policy: never two immediate retries in a row, never over max_retries.

    Both hold between connections that stayed up long enough to reset the count.
    """
    verdicts = iter([verdict for _, verdict, _ in steps])
    budget = RetryBudget(
        Backoff(max_retries=max_retries), policy=lambda failure: next(verdicts)
    )
    now = 0.0
    previous_delay: float | None = None
    since_reset = 0
    for failure, _, uptime in steps:
        budget.on_connected(now)
        now += uptime
        if uptime >= Backoff().reset_after:
            since_reset, previous_delay = 0, None
        decision = budget.on_failure(failure, now)
        if decision.delay is None:
            break
        since_reset += 1
        assert since_reset <= max_retries
        assert decision.retry_count == since_reset
        assert not (decision.delay == 0.0 and previous_delay == 0.0)
        previous_delay = decision.delay
        now += decision.delay
