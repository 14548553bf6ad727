"""The connection task's lifecycle: a pure state machine, no Trio, no clock.

The manager's session loop does the I/O; this machine decides. Each input
(``connect``, ``disconnect``, ``attempt_begins``, ``attempt_started``,
``opened``, ``failed``, ``no_token``, ``waited``, ``finished``, ``closed``)
moves it by the table below and returns a `Step`: the commands for the loop
to carry out, then the connection events to publish. An input the table does
not list for the current phase is a bug in the loop and raises
`LifecycleError`.

Rules (the browser client's, made precise; read before changing the table):

* ``IDLE --connect()--> CONNECTING --opened--> CONNECTED``. Each attempt
  fetches a fresh token; the loop reports it (``attempt_begins``), so only
  attempts that happened are counted.
* A failed attempt or a lost connection asks the retry budget: a retry goes
  ``BACKOFF`` (``connect()`` cuts the wait short), then ``CONNECTING``; a
  give-up goes ``GAVE_UP`` and interrupts the manager's subscriptions until
  ``connect()``. No token at all gives up at once ("No auth token").
* ``disconnect()`` resets the budget and ends the session from any phase: an
  open connection goes ``CLOSING`` (close code 1000), anything else
  ``STOPPING`` (its scope is cancelled, unless a close handshake already
  under way ends it). When the session has ended (``finished``) it goes
  ``IDLE``, publishing "disconnected" if an attempt had begun, or starts
  again if ``connect()`` came meanwhile. While stopping, what the loop still
  reports (an attempt, an open, a failure, the end of a wait) changes
  nothing.
* A step's commands come before its events, and the phase changes before
  both: a handler that calls ``connect()`` on the give-up event starts a new
  session, and nothing performed after it undoes that. An input from a
  handler takes effect at once; the rest of the step's events are still
  published, since they tell what happened (as the browser client's
  ``onclose`` goes on after a handler's ``connect()``).
* ``closed`` (the manager's context exited) is final: the manager's
  subscriptions end, and ``connect()`` is refused.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from ._events import ConnectionEvent, ConnectionStatus
from ._failures import ConnectionFailure, FailureKind
from ._logs import get_logger
from ._retry import RetryBudget

__all__ = [
    "NO_TOKEN_MESSAGE",
    "Command",
    "Lifecycle",
    "LifecycleError",
    "Phase",
    "State",
    "Step",
    "Wire",
]

logger = get_logger("trio_ws_bus.lifecycle")

NO_TOKEN_MESSAGE: Final = "No auth token"
_CLIENT_CLOSE: Final = ConnectionEvent(
    ConnectionStatus.DISCONNECTED, code=1000, reason="Client disconnect"
)


class Phase(enum.Enum):
    """Where the connection task is; each phase is read by the manager."""

    IDLE = "idle"
    """No session: waiting for ``connect()``."""
    CONNECTING = "connecting"
    """One attempt: token call, transport, opening handshake."""
    CONNECTED = "connected"
    """The connection is open (``is_connected``)."""
    BACKOFF = "backoff"
    """Waiting before the next attempt (``connect()`` tries at once)."""
    STOPPING = "stopping"
    """``disconnect()`` came with no open connection: the session is cancelled."""
    CLOSING = "closing"
    """``disconnect()`` came on an open connection: it closes with code 1000."""
    GAVE_UP = "gave_up"
    """Stopped after a failure; subscriptions raise `ConnectionGaveUp`."""
    CLOSED = "closed"
    """The manager's context has exited: final."""


class Command(enum.Enum):
    """What the session loop must do for a step, before its events."""

    RETRY_NOW = "retry_now"
    """Cut the backoff wait short."""
    CANCEL_SESSION = "cancel_session"
    """Cancel the session's scope (token call, handshake or wait)."""
    CLOSE_CONNECTION = "close_connection"
    """Close the open connection with code 1000 "Client disconnect"."""
    INTERRUPT_SUBSCRIPTIONS = "interrupt_subscriptions"
    """Receives with nothing buffered raise `ConnectionGaveUp` (`State.gave_up`)."""
    REARM_SUBSCRIPTIONS = "rearm_subscriptions"
    """Receives wait again."""
    END_SUBSCRIPTIONS = "end_subscriptions"
    """The manager's subscriptions end once drained (``async for`` stops)."""


class Wire(enum.Enum):
    """What the connection's wire is doing, as ``disconnect()`` finds it."""

    NONE = "none"
    """No connection: not yet opened, or already finished."""
    OPEN = "open"
    """Open: it can be closed with code 1000."""
    CLOSING = "closing"
    """A close handshake is under way (ours): it ends the session by itself."""


class LifecycleError(RuntimeError):
    """An input the transition table does not allow in the current phase."""


@attrs.frozen
class State:
    """The one state value: a phase and what that phase carries.

    Attributes:
        phase: Where the connection task is.
        gave_up: Why it gave up (``GAVE_UP`` only).
        restart: ``connect()`` came while stopping or closing: the next
            session starts once this one has finished.
        retry_in: The wait before the next attempt (``BACKOFF`` only).
        attempted: An attempt has begun in this session, so its end is news.
    """

    phase: Phase
    gave_up: str | None = None
    restart: bool = False
    retry_in: float | None = None
    attempted: bool = False


@attrs.frozen
class Step:
    """What one input asks of the loop: commands first, then events."""

    commands: tuple[Command, ...] = ()
    events: tuple[ConnectionEvent, ...] = ()


_NOTHING: Final = Step()

_P = Phase
#: Every legal input per phase and the phases it may lead to (h11's way: one
#: table, and anything else raises).
_TRANSITIONS: Final[dict[Phase, dict[str, frozenset[Phase]]]] = {
    _P.IDLE: {
        "connect": frozenset({_P.CONNECTING}),
        "disconnect": frozenset({_P.IDLE}),
        "closed": frozenset({_P.CLOSED}),
    },
    _P.CONNECTING: {
        "connect": frozenset({_P.CONNECTING}),
        "disconnect": frozenset({_P.STOPPING}),
        "attempt_begins": frozenset({_P.CONNECTING}),
        "attempt_started": frozenset({_P.CONNECTING}),
        "opened": frozenset({_P.CONNECTED}),
        "failed": frozenset({_P.BACKOFF, _P.GAVE_UP}),
        "no_token": frozenset({_P.GAVE_UP}),
        "closed": frozenset({_P.CLOSED}),
    },
    _P.CONNECTED: {
        "connect": frozenset({_P.CONNECTED}),
        "disconnect": frozenset({_P.CLOSING, _P.STOPPING}),
        "failed": frozenset({_P.BACKOFF, _P.GAVE_UP}),
        "closed": frozenset({_P.CLOSED}),
    },
    _P.BACKOFF: {
        "connect": frozenset({_P.BACKOFF}),
        "disconnect": frozenset({_P.STOPPING}),
        "waited": frozenset({_P.CONNECTING}),
        "closed": frozenset({_P.CLOSED}),
    },
    _P.STOPPING: {
        "connect": frozenset({_P.STOPPING}),
        "disconnect": frozenset({_P.STOPPING}),
        "attempt_begins": frozenset({_P.STOPPING}),
        "attempt_started": frozenset({_P.STOPPING}),
        "opened": frozenset({_P.STOPPING}),
        "failed": frozenset({_P.STOPPING}),
        "no_token": frozenset({_P.STOPPING}),
        "waited": frozenset({_P.STOPPING}),
        "finished": frozenset({_P.IDLE, _P.CONNECTING}),
        "closed": frozenset({_P.CLOSED}),
    },
    _P.CLOSING: {
        "connect": frozenset({_P.CLOSING}),
        "disconnect": frozenset({_P.CLOSING}),
        "failed": frozenset({_P.CLOSING}),
        "finished": frozenset({_P.IDLE, _P.CONNECTING}),
        "closed": frozenset({_P.CLOSED}),
    },
    _P.GAVE_UP: {
        "connect": frozenset({_P.CONNECTING}),
        "disconnect": frozenset({_P.GAVE_UP}),
        "finished": frozenset({_P.GAVE_UP}),
        "closed": frozenset({_P.CLOSED}),
    },
    _P.CLOSED: {
        "disconnect": frozenset({_P.CLOSED}),
    },
}
del _P


@attrs.define
class Lifecycle:
    """The connection task's state and its retry budget; see the module rules.

    Attributes:
        budget: Counts retries and classifies failures (the retry policy).
        attempts: Attempts begun so far (each fetched a token).
        connections: Entries into ``CONNECTED`` so far.
    """

    budget: RetryBudget
    state: State = State(Phase.IDLE)
    attempts: int = 0
    connections: int = 0

    @property
    def phase(self) -> Phase:
        """The current phase (``state.phase``)."""
        return self.state.phase

    # --- inputs from the public face -----------------------------------------

    def connect(self) -> Step:
        """``connect()``: start, retry at once, or restart after stopping."""
        phase = self.phase
        if phase in (Phase.IDLE, Phase.GAVE_UP):
            self.budget.reset()
            self._enter("connect", State(Phase.CONNECTING))
            if phase is Phase.GAVE_UP:
                return Step((Command.REARM_SUBSCRIPTIONS,))
            return _NOTHING
        if phase in (Phase.STOPPING, Phase.CLOSING):
            self._enter("connect", attrs.evolve(self.state, restart=True))
            return _NOTHING
        self._enter("connect", self.state)
        if phase is Phase.BACKOFF:
            return Step((Command.RETRY_NOW,))
        return _NOTHING

    def disconnect(self, wire: Wire = Wire.NONE) -> Step:
        """``disconnect()``: end the session wherever it is; reset the budget."""
        phase = self.phase
        self._require("disconnect")
        self.budget.reset()
        if phase is Phase.CONNECTED and wire is Wire.OPEN:
            self._enter("disconnect", State(Phase.CLOSING, attempted=True))
            return Step((Command.CLOSE_CONNECTION,))
        if phase in (Phase.CONNECTING, Phase.CONNECTED, Phase.BACKOFF):
            self._enter(
                "disconnect", State(Phase.STOPPING, attempted=self.state.attempted)
            )
            if wire is Wire.CLOSING:
                return _NOTHING  # the close under way ends the session
            return Step((Command.CANCEL_SESSION,))
        # Already ending (a later connect() is forgotten), idle, gave up, closed.
        self._enter("disconnect", attrs.evolve(self.state, restart=False))
        return _NOTHING

    def closed(self) -> Step:
        """The manager's context exited: final; its subscriptions end."""
        self._enter("closed", State(Phase.CLOSED))
        return Step((Command.END_SUBSCRIPTIONS,))

    # --- inputs from the session loop ----------------------------------------

    def attempt_begins(self) -> Step:
        """The loop begins an attempt: the token provider is about to be called."""
        self._enter("attempt_begins", attrs.evolve(self.state, attempted=True))
        self.attempts += 1
        return _NOTHING

    def attempt_started(self) -> Step:
        """The token is usable and the transport is being opened."""
        self._enter("attempt_started", self.state)
        if self.phase is Phase.STOPPING:
            return _NOTHING
        return Step(events=(ConnectionEvent(ConnectionStatus.CONNECTING),))

    def opened(self, now: float) -> Step:
        """The opening handshake succeeded at time ``now``."""
        if self.phase is Phase.STOPPING:
            self._enter("opened", self.state)
            return _NOTHING
        self._enter("opened", State(Phase.CONNECTED, attempted=True))
        self.connections += 1
        self.budget.on_connected(now)
        return Step(events=(ConnectionEvent(ConnectionStatus.CONNECTED),))

    def failed(self, failure: ConnectionFailure, now: float) -> Step:
        """An attempt failed or the connection was lost, at time ``now``.

        While stopping or closing the failure is the session's end, not news:
        it publishes nothing and uses no retry.
        """
        self._require("failed")
        if self.phase in (Phase.STOPPING, Phase.CLOSING):
            return _NOTHING
        events = self._failure_events(failure)
        decision = self.budget.on_failure(failure, now)
        if decision.delay is None:
            message = decision.give_up_message
            assert message is not None
            step = self._give_up("failed", message)
            return Step(step.commands, events + step.events)
        self._enter(
            "failed", State(Phase.BACKOFF, retry_in=decision.delay, attempted=True)
        )
        limit = self.budget.backoff.max_retries
        logger.info(
            "reconnecting in %.3g s (retry %d of %s)",
            decision.delay,
            decision.retry_count,
            "unlimited" if limit is None else limit,
            extra={"ws_bus_attempt": self.attempts, "ws_bus_status": "disconnected"},
        )
        retry = ConnectionEvent(
            ConnectionStatus.DISCONNECTED,
            retry_in=decision.delay,
            retry_count=decision.retry_count,
        )
        return Step(events=(*events, retry))

    def no_token(self) -> Step:
        """The token provider gave no token: give up at once, as the seed does."""
        self._require("no_token")
        if self.phase is Phase.STOPPING:
            return _NOTHING
        logger.warning("no auth token available; not connecting")
        return self._give_up("no_token", NO_TOKEN_MESSAGE)

    def waited(self) -> Step:
        """The backoff wait is over (or was cut short): the next attempt."""
        if self.phase is Phase.STOPPING:  # disconnect() raced the wait's end
            self._enter("waited", self.state)
        else:
            self._enter("waited", State(Phase.CONNECTING, attempted=True))
        return _NOTHING

    def finished(self) -> Step:
        """The session loop has left its scope (stopped, closed or gave up)."""
        state = self.state
        if state.phase is Phase.GAVE_UP:
            self._enter("finished", state)
            return _NOTHING
        event = (
            _CLIENT_CLOSE
            if state.phase is Phase.CLOSING
            else ConnectionEvent(ConnectionStatus.DISCONNECTED)
        )
        events = (event,) if state.attempted else ()
        if state.restart:
            self._enter("finished", State(Phase.CONNECTING))
        else:
            self._enter("finished", State(Phase.IDLE))
        return Step(events=events)

    # --- the table -----------------------------------------------------------

    def _give_up(self, trigger: str, message: str) -> Step:
        logger.warning(
            "giving up: %s",
            message,
            extra={"ws_bus_attempt": self.attempts, "ws_bus_status": "error"},
        )
        self._enter(trigger, State(Phase.GAVE_UP, gave_up=message))
        return Step(
            (Command.INTERRUPT_SUBSCRIPTIONS,),
            (ConnectionEvent(ConnectionStatus.ERROR, message=message),),
        )

    def _require(self, trigger: str) -> frozenset[Phase]:
        """Where ``trigger`` may lead from here; raise if it may not happen."""
        allowed = _TRANSITIONS[self.phase].get(trigger)
        if allowed is None:
            raise LifecycleError(f"{trigger} is not allowed in phase {self.phase.name}")
        return allowed

    def _enter(self, trigger: str, new: State) -> None:
        if new.phase not in self._require(trigger):
            raise LifecycleError(
                f"{trigger} may not lead from {self.phase.name} to {new.phase.name}"
            )
        self.state = new

    def _failure_events(
        self, failure: ConnectionFailure
    ) -> tuple[ConnectionEvent, ...]:
        """The browser's ``onerror`` + ``onclose`` pair for one failure."""
        if failure.kind is FailureKind.CLOSED:
            return (
                ConnectionEvent(
                    ConnectionStatus.DISCONNECTED,
                    code=failure.close_code,
                    reason=failure.reason,
                ),
            )
        logger.warning(
            "connection attempt failed: %s",
            failure.reason,
            extra={
                "ws_bus_attempt": self.attempts,
                "ws_bus_status": "error",
                "ws_bus_status_code": failure.status_code,
            },
        )
        error = ConnectionEvent(ConnectionStatus.ERROR, message=failure.reason)
        if failure.kind is FailureKind.TOKEN_ERROR:
            return (error,)
        return (error, ConnectionEvent(ConnectionStatus.DISCONNECTED, code=1006))
