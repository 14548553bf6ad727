"""The I/O-free core: the retry budget and the subscription ledger."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from trio_ws_bus import Backoff, ConnectionFailure, FailureKind, RetryVerdict
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
    """A successful handshake makes the next failure wait the base delay again."""
    budget = RetryBudget(Backoff())
    for _ in range(5):
        budget.on_failure(REFUSED, now=0.0)
    budget.on_connected(now=100.0)
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


def test_retry_now_is_immediate_but_counted() -> None:
    """RETRY_NOW waits 0 s and still uses a retry, so it cannot loop forever."""
    budget = RetryBudget(
        Backoff(max_retries=2), policy=lambda failure: RetryVerdict.RETRY_NOW
    )
    assert [budget.on_failure(REFUSED, now=0.0).delay for _ in range(3)] == [
        0.0,
        0.0,
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
