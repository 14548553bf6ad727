"""The lifecycle state machine alone: the seed's transitions, then random sequences.

No Trio and no clock: each input is a method call, each answer a `Step` of
commands and connection events (see ``trio_ws_bus/_lifecycle.py``).
"""

from __future__ import annotations

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from trio_ws_bus import (
    Backoff,
    ConnectionEvent,
    ConnectionFailure,
    ConnectionStatus,
    FailureKind,
    RetryPolicy,
    default_retry_policy,
    seed_retry_policy,
)
from trio_ws_bus._lifecycle import (
    NO_TOKEN_MESSAGE,
    Command,
    Lifecycle,
    LifecycleError,
    Phase,
    Step,
    Wire,
)
from trio_ws_bus._retry import MAX_RETRIES_MESSAGE, RetryBudget

LOST = ConnectionFailure(FailureKind.CLOSED, close_code=1006)
REFUSED = ConnectionFailure(FailureKind.UNREACHABLE, reason="Connection refused")
DISCONNECTED = ConnectionStatus.DISCONNECTED
ERROR = ConnectionStatus.ERROR


def lifecycle(
    max_retries: int | None = 20, policy: RetryPolicy = seed_retry_policy
) -> Lifecycle:
    return Lifecycle(RetryBudget(Backoff(max_retries=max_retries), policy))


def connected(life: Lifecycle | None = None) -> Lifecycle:
    life = life or lifecycle()
    life.connect()
    life.attempt_begins()
    life.attempt_started()
    life.opened(now=0.0)
    return life


def attempting(life: Lifecycle) -> Lifecycle:
    """``connect()``, then the loop begins the first attempt."""
    life.connect()
    life.attempt_begins()
    return life


def statuses(step: Step) -> list[ConnectionStatus]:
    return [event.status for event in step.events]


# --- one test per transition the seed names ---------------------------------


def test_connect_with_a_token_announces_connecting_then_connected() -> None:
    """connect(): "connecting" once the token is there, "connected" on open."""
    life = lifecycle()
    assert life.connect() == Step()
    assert life.phase is Phase.CONNECTING
    assert life.attempt_begins() == Step()
    assert statuses(life.attempt_started()) == [ConnectionStatus.CONNECTING]
    assert statuses(life.opened(now=0.0)) == [ConnectionStatus.CONNECTED]
    assert life.phase is Phase.CONNECTED
    assert (life.attempts, life.connections) == (1, 1)


def test_connect_without_a_token_gives_up_at_once() -> None:
    """No token: error "No auth token", no retry, receives interrupted."""
    life = attempting(lifecycle())
    step = life.no_token()
    assert step.commands == (Command.INTERRUPT_SUBSCRIPTIONS,)
    assert step.events == (ConnectionEvent(ERROR, message=NO_TOKEN_MESSAGE),)
    assert life.state.gave_up == NO_TOKEN_MESSAGE
    assert life.budget.retries_used == 0


def test_connect_while_connecting_or_connected_does_nothing() -> None:
    """The seed's guard: "Don't connect if already connected or connecting"."""
    life = attempting(lifecycle())
    assert life.connect() == Step()
    assert life.phase is Phase.CONNECTING
    life.opened(now=0.0)
    assert life.connect() == Step()
    assert (life.phase, life.attempts) == (Phase.CONNECTED, 1)


def test_an_unintended_close_schedules_a_reconnect() -> None:
    """onclose: "disconnected" with the code, then "disconnected" with retry_in."""
    life = connected()
    step = life.failed(
        ConnectionFailure(FailureKind.CLOSED, close_code=1011, reason="bye"), now=5.0
    )
    assert step.events == (
        ConnectionEvent(DISCONNECTED, code=1011, reason="bye"),
        ConnectionEvent(DISCONNECTED, retry_in=1.0, retry_count=1),
    )
    assert (life.phase, life.state.retry_in) == (Phase.BACKOFF, 1.0)


def test_a_failed_attempt_reports_the_error_then_a_1006_close() -> None:
    """The seed's onerror then onclose: the cause, then 1006, then the retry."""
    life = attempting(lifecycle())
    step = life.failed(REFUSED, now=0.0)
    assert step.events == (
        ConnectionEvent(ERROR, message="Connection refused"),
        ConnectionEvent(DISCONNECTED, code=1006),
        ConnectionEvent(DISCONNECTED, retry_in=1.0, retry_count=1),
    )


def test_the_wait_doubles_up_to_thirty_seconds_then_gives_up() -> None:
    """scheduleReconnect: 1, 2, 4, 8, 16, 30 s ..., then "Max reconnection attempts"."""
    life = attempting(lifecycle(max_retries=7))
    delays = []
    for _ in range(7):
        life.failed(REFUSED, now=0.0)
        delays.append(life.state.retry_in)
        assert life.waited() == Step()
        assert life.phase is Phase.CONNECTING
        life.attempt_begins()
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    step = life.failed(REFUSED, now=0.0)
    assert step.events[-1] == ConnectionEvent(ERROR, message=MAX_RETRIES_MESSAGE)
    assert life.phase is Phase.GAVE_UP
    assert life.attempts == 8


def test_a_successful_open_resets_the_retry_count() -> None:
    """onopen: retryCount = 0, so the next wait starts at 1 s again."""
    life = attempting(lifecycle())
    for _ in range(3):
        life.failed(REFUSED, now=0.0)
        life.waited()
        life.attempt_begins()
    assert life.budget.retries_used == 3
    life.opened(now=10.0)
    assert life.budget.retries_used == 0
    life.failed(LOST, now=11.0)
    assert life.state.retry_in == 1.0


def test_disconnect_closes_an_open_connection_with_1000_and_no_reconnect() -> None:
    """disconnect(): close(1000, "Client disconnect"), "disconnected", no retry."""
    life = connected()
    assert life.disconnect(Wire.OPEN) == Step((Command.CLOSE_CONNECTION,))
    assert life.phase is Phase.CLOSING
    # The close handshake ends the connection: that is not a failure to retry.
    assert (
        life.failed(ConnectionFailure(FailureKind.CLOSED, close_code=1000), 1.0)
        == Step()
    )
    step = life.finished()
    assert step.events == (
        ConnectionEvent(DISCONNECTED, code=1000, reason="Client disconnect"),
    )
    assert life.phase is Phase.IDLE
    assert life.budget.retries_used == 0


@pytest.mark.parametrize("where", ["connecting", "backoff"])
def test_disconnect_without_a_connection_cancels_the_session(where: str) -> None:
    """disconnect() during a handshake or a backoff wait clears it; "disconnected"."""
    life = attempting(lifecycle())
    if where == "backoff":
        life.failed(REFUSED, now=0.0)
    assert life.disconnect() == Step((Command.CANCEL_SESSION,))
    assert life.finished().events == (ConnectionEvent(DISCONNECTED),)
    assert (life.phase, life.budget.retries_used) == (Phase.IDLE, 0)


def test_disconnect_before_any_attempt_is_not_news() -> None:
    """connect() then disconnect() before the loop ran: no event, no attempt."""
    life = lifecycle()
    life.connect()
    assert life.disconnect() == Step((Command.CANCEL_SESSION,))
    assert life.finished() == Step()
    assert (life.phase, life.attempts) == (Phase.IDLE, 0)


def test_disconnect_during_our_own_close_lets_that_close_end_the_session() -> None:
    """A close handshake under way (a 1009 we sent) is not cut, nor called 1000."""
    life = connected()
    assert life.disconnect(Wire.CLOSING) == Step()
    assert life.phase is Phase.STOPPING
    assert life.failed(LOST, now=1.0) == Step()
    assert life.finished().events == (ConnectionEvent(DISCONNECTED),)


def test_a_backoff_wait_that_ends_as_disconnect_comes_changes_nothing() -> None:
    """connect() cut the wait short, then disconnect(): the wait's end is no attempt."""
    life = attempting(lifecycle())
    life.failed(REFUSED, now=0.0)
    assert life.connect() == Step((Command.RETRY_NOW,))
    life.disconnect()
    assert life.waited() == Step()
    assert life.phase is Phase.STOPPING
    assert life.finished().events == (ConnectionEvent(DISCONNECTED),)


def test_connect_during_a_backoff_wait_tries_at_once() -> None:
    """connect() in the wait: the loop is told to cut it short, same budget."""
    life = attempting(lifecycle())
    life.failed(REFUSED, now=0.0)
    assert life.connect() == Step((Command.RETRY_NOW,))
    assert life.budget.retries_used == 1


def test_connect_after_giving_up_starts_a_new_session() -> None:
    """connect() re-arms the subscriptions and starts with a fresh budget."""
    life = attempting(lifecycle(max_retries=0))
    life.failed(REFUSED, now=0.0)
    assert life.phase is Phase.GAVE_UP
    assert life.connect() == Step((Command.REARM_SUBSCRIPTIONS,))
    assert (life.phase, life.state.gave_up) == (Phase.CONNECTING, None)


def test_connect_while_stopping_restarts_once_the_session_ends() -> None:
    """disconnect() then connect(): the old session ends, a new one begins."""
    life = connected()
    life.disconnect(Wire.OPEN)
    assert life.connect() == Step()
    assert life.finished().events[0].code == 1000
    assert life.phase is Phase.CONNECTING
    life.attempt_begins()
    assert life.attempts == 2


def test_a_fatal_failure_gives_up_without_using_retries() -> None:
    """The default policy: a 403 is not retried."""
    life = attempting(lifecycle(policy=default_retry_policy))
    life.failed(ConnectionFailure(FailureKind.REJECTED, status_code=403), now=0.0)
    assert life.phase is Phase.GAVE_UP
    assert life.state.gave_up is not None
    assert "403" in life.state.gave_up


def test_closing_ends_the_subscriptions_and_is_final() -> None:
    """The context's exit: END_SUBSCRIPTIONS, then every input but disconnect raises."""
    life = connected()
    assert life.closed() == Step((Command.END_SUBSCRIPTIONS,))
    assert life.disconnect() == Step()
    for call in (life.connect, life.finished, life.closed, life.attempt_started):
        with pytest.raises(LifecycleError, match="not allowed in phase CLOSED"):
            call()


@pytest.mark.parametrize(
    ("setup", "call"),
    [
        ("idle", "opened"),
        ("idle", "waited"),
        ("idle", "finished"),
        ("connecting", "waited"),
        ("connecting", "finished"),
        ("connected", "opened"),
        ("connected", "no_token"),
        ("backoff", "opened"),
        ("backoff", "failed"),
    ],
)
def test_an_input_the_table_does_not_list_raises(setup: str, call: str) -> None:
    """h11's rule: an illegal transition is an error, not a silent change."""
    life = lifecycle()
    if setup != "idle":
        life.connect()
    if setup == "connected":
        life.opened(now=0.0)
    if setup == "backoff":
        life.failed(REFUSED, now=0.0)
    before = (life.state, life.budget.retries_used, life.attempts)
    inputs = {
        "opened": lambda: life.opened(now=0.0),
        "waited": life.waited,
        "finished": life.finished,
        "no_token": life.no_token,
        "failed": lambda: life.failed(REFUSED, now=0.0),
    }
    with pytest.raises(LifecycleError, match=f"{call} is not allowed"):
        inputs[call]()
    assert (life.state, life.budget.retries_used, life.attempts) == before


# --- random sequences against a small model of the seed ----------------------

FAILURES = st.sampled_from(
    [
        LOST,
        REFUSED,
        ConnectionFailure(FailureKind.CLOSED, close_code=1011, reason="restart"),
        ConnectionFailure(FailureKind.TIMEOUT, reason="Opening handshake timed out"),
        ConnectionFailure(FailureKind.TOKEN_ERROR, reason="Token provider failed"),
    ]
)
MAX_RETRIES = 3


class LifecycleMachine(RuleBasedStateMachine):
    """Drive the lifecycle as the session loop would; check the seed's rules.

    The model is the seed's own bookkeeping: whether a session is wanted,
    whether the close was intentional, the retry count, whether it gave up,
    plus what the loop has reported: whether an attempt began this session,
    and how many attempts in all. The loop's reports come in any order the
    real loop can produce, races with ``disconnect()`` included.
    """

    def __init__(self) -> None:
        super().__init__()
        self.life = lifecycle(max_retries=MAX_RETRIES)
        self.wanted = False  # a session should be running (connect() came)
        self.ending = False  # disconnect() came; the session has not ended yet
        self.restart = False  # connect() came while ending
        self.retries = 0
        self.gave_up = False
        self.closed = False
        self.interrupted = False
        self.status: ConnectionStatus | None = None
        self.attempted = False  # an attempt began in this session
        self.attempts = 0
        self.closing_on_purpose = False  # our 1000 close is under way
        self.loop = "idle"

    def perform(self, step: Step) -> Step:
        for command in step.commands:
            if command is Command.INTERRUPT_SUBSCRIPTIONS:
                self.interrupted = True
            elif command is Command.REARM_SUBSCRIPTIONS:
                self.interrupted = False
        for event in step.events:
            self.status = event.status
        return step

    # -- the public face --

    @precondition(lambda self: not self.closed)
    @rule()
    def connect(self) -> None:
        phase = self.life.phase
        step = self.perform(self.life.connect())
        if self.ending:
            self.restart = True
        elif not self.wanted:
            self.wanted, self.gave_up, self.retries = True, False, 0
            self.attempted = False
            assert self.life.phase is Phase.CONNECTING
        else:  # the seed's guard: connecting or connected already
            assert self.life.phase is phase
        assert step.events == ()

    @rule(wire=st.sampled_from(Wire))
    def disconnect(self, wire: Wire) -> None:
        phase = self.life.phase
        if phase is not Phase.CONNECTED:
            wire = Wire.NONE  # only an open connection has a wire to report
        step = self.perform(self.life.disconnect(wire))
        assert self.life.budget.retries_used == 0
        self.retries = 0
        self.restart = False
        if phase is Phase.CONNECTED and wire is Wire.OPEN:
            assert step.commands == (Command.CLOSE_CONNECTION,)
            self.closing_on_purpose = True
        elif phase is Phase.CONNECTED and wire is Wire.CLOSING:
            assert step == Step()  # the close under way ends the session
        elif phase in (Phase.CONNECTING, Phase.CONNECTED, Phase.BACKOFF):
            assert step.commands == (Command.CANCEL_SESSION,)
        else:
            assert step == Step()
        if self.wanted:
            self.wanted, self.ending = False, True
        assert step.events == ()

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self) -> None:
        assert self.perform(self.life.closed()).commands == (Command.END_SUBSCRIPTIONS,)
        self.closed = True

    # -- the session loop, in the orders the real loop can report --
    # ``loop`` is what the loop is doing: "idle" (no attempt or wait running),
    # "token" (an attempt, before its token is usable), "dialing" (transport
    # and handshake), "open" (the connection is open), "wait" (backoff).

    @precondition(
        lambda self: self.life.phase is Phase.CONNECTING and self.loop == "idle"
    )
    @rule()
    def attempt_begins(self) -> None:
        assert self.perform(self.life.attempt_begins()) == Step()
        self.attempted, self.loop = True, "token"
        self.attempts += 1

    @precondition(lambda self: self.loop == "token" and not self.closed)
    @rule()
    def attempt_started(self) -> None:
        step = self.perform(self.life.attempt_started())
        assert statuses(step) == ([] if self.ending else [ConnectionStatus.CONNECTING])
        self.loop = "dialing"

    @precondition(lambda self: self.loop == "dialing" and not self.closed)
    @rule()
    def opened(self) -> None:
        step = self.perform(self.life.opened(now=0.0))
        self.loop = "open"
        if self.ending:
            assert step == Step()
            return
        assert statuses(step) == [ConnectionStatus.CONNECTED]
        self.retries = 0  # onopen: retryCount = 0

    @precondition(
        lambda self: self.loop in ("token", "dialing", "open") and not self.closed
    )
    @rule(failure=FAILURES)
    def fail(self, failure: ConnectionFailure) -> None:
        step = self.perform(self.life.failed(failure, now=0.0))
        self.loop = "idle"
        if self.ending:  # intentional: no event, no reconnect
            assert step == Step()
            return
        if self.retries >= MAX_RETRIES:
            assert step.events[-1] == ConnectionEvent(
                ERROR, message=MAX_RETRIES_MESSAGE
            )
            self.wanted, self.gave_up = False, True
            return
        self.retries += 1
        assert step.events[-1] == ConnectionEvent(
            DISCONNECTED,
            retry_in=Backoff().delay(self.retries - 1),
            retry_count=self.retries,
        )
        assert self.life.phase is Phase.BACKOFF
        self.loop = "wait"

    @precondition(lambda self: self.loop == "token" and not self.closed)
    @rule()
    def no_token(self) -> None:
        step = self.perform(self.life.no_token())
        self.loop = "idle"
        if self.ending:
            assert step == Step()
            return
        assert step.events == (ConnectionEvent(ERROR, message=NO_TOKEN_MESSAGE),)
        self.wanted, self.gave_up = False, True

    @precondition(lambda self: self.loop == "wait" and not self.closed)
    @rule()
    def waited(self) -> None:
        phase = self.life.phase
        assert self.perform(self.life.waited()) == Step()
        self.loop = "idle"
        # A wait that ends as disconnect() comes (it cut the wait short, and
        # the cancellation came too late) leads nowhere.
        assert self.life.phase is (
            Phase.CONNECTING if phase is Phase.BACKOFF else phase
        )

    @precondition(
        lambda self: (
            self.life.phase is Phase.STOPPING  # cancelled: whatever was running
            or (
                self.life.phase in (Phase.CLOSING, Phase.GAVE_UP)
                and self.loop == "idle"
            )
        )
    )
    @rule()
    def finished(self) -> None:
        phase = self.life.phase
        step = self.perform(self.life.finished())
        self.loop = "idle"
        if phase is Phase.GAVE_UP:
            assert step == Step()
            return
        if self.closing_on_purpose:
            expected: tuple[ConnectionEvent, ...] = (
                ConnectionEvent(DISCONNECTED, code=1000, reason="Client disconnect"),
            )
        else:  # the seed's plain "disconnected", if anything had happened
            expected = (ConnectionEvent(DISCONNECTED),) if self.attempted else ()
        assert step.events == expected
        self.ending = self.closing_on_purpose = self.attempted = False
        if self.restart:
            self.wanted, self.restart, self.retries = True, False, 0

    # -- the seed's rules, at every step --

    @invariant()
    def phase_agrees_with_the_model(self) -> None:
        phase = self.life.phase
        if self.closed:
            assert phase is Phase.CLOSED
        elif self.ending:
            assert phase in (Phase.STOPPING, Phase.CLOSING)
        elif self.gave_up:
            assert phase is Phase.GAVE_UP
        elif self.wanted:
            assert phase in (Phase.CONNECTING, Phase.CONNECTED, Phase.BACKOFF)
        else:
            assert phase is Phase.IDLE

    @invariant()
    def attempts_are_those_the_loop_began(self) -> None:
        assert self.life.attempts == self.attempts

    @invariant()
    def retries_are_counted_and_bounded(self) -> None:
        if not self.closed:
            assert self.life.budget.retries_used == self.retries <= MAX_RETRIES

    @invariant()
    def giving_up_is_visible(self) -> None:
        state = self.life.state
        assert (state.gave_up is not None) == (state.phase is Phase.GAVE_UP)
        if not self.closed:
            assert self.interrupted == (state.phase is Phase.GAVE_UP)
        if state.phase is Phase.GAVE_UP:
            assert self.status is ERROR

    @invariant()
    def connected_means_announced(self) -> None:
        if self.life.phase is Phase.CONNECTED:
            assert self.status is ConnectionStatus.CONNECTED
        if self.life.phase is Phase.BACKOFF:
            assert self.status is DISCONNECTED
            assert self.life.state.retry_in is not None


LifecycleMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40)
test_lifecycle_state_machine = LifecycleMachine.TestCase
