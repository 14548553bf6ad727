"""The connection manager: the public face and the loop that performs its steps.

The lifecycle (``_lifecycle.py``, a pure state machine) decides; this module
does what it decides. One task, the *session loop*, owns every connection
attempt; the public methods only feed the lifecycle and carry out the
commands it returns, which never block.

Rules of the connection task (read before changing ``_run``):

* The loop waits while the lifecycle is ``IDLE`` or ``GAVE_UP``; otherwise it
  runs one *session* in its own cancel scope: attempts and backoff waits,
  until the lifecycle is ``STOPPING``, ``CLOSING`` or ``GAVE_UP``, then
  ``finished``.
* One attempt (``_attempt``): token call, transport (TCP/TLS/proxy), opening
  handshake, all by one deadline, ``open_timeout`` after it started; the
  token is fetched again for every attempt.
* Every step is performed the same way: the lifecycle's phase has already
  changed, its commands run, then its events are published. So a handler
  that calls ``connect()`` on the give-up event starts a new session.
* ``disconnect()`` closes an open connection with 1000 "Client disconnect"
  (bounded by ``close_timeout``), or cancels the session's scope.
* The loop runs shielded: cancelling the code around the manager's context
  does not cut the intentional close short; the context's exit ends the loop
  once ``disconnect()`` is done, and ``closed`` ends the subscriptions the
  manager handed out. ``CLOSED`` is final.
* Only the pump (``_connection.py``) touches the network, and reports back
  through its return value and ``on_open``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar, Final, NoReturn

import attrs
import trio

from ._attempt import fetch_token, new_session, open_stream
from ._backoff import Backoff
from ._bus import (
    ALERTS_TOPIC,
    CONNECTION_TOPIC,
    MessageBus,
    Overflow,
    Subscription,
    telemetry_topic,
)
from ._connection import Connection
from ._errors import ConnectionGaveUp
from ._events import ConnectionEvent, ConnectionStatus
from ._failures import ConnectionFailure, FailureKind
from ._ledger import SubscriptionLedger
from ._lifecycle import Command, Lifecycle, Phase, Step, Wire
from ._logs import get_logger
from ._protocol import (
    Alert,
    SubscriptionKey,
    SubscriptionKind,
    Telemetry,
    subscription_key,
)
from ._retry import RetryBudget, RetryPolicy
from ._routing import MessageCounters, Router
from ._secrets import Redactor
from ._session import ClientSession, Opened, SessionState
from ._settings import Settings
from ._statistics import ManagerStatistics
from ._url import redact_url, resolve_target
from ._util import NoPublicConstructor

__all__ = ["NotAContextManager", "WebSocketManager"]

logger = get_logger("trio_ws_bus.manager")
#: websockets' protocol logger: at DEBUG it dumps the handshake (headers the
#: server sent included) and every frame. Opt-in: set this logger to DEBUG
#: yourself; a root logger at DEBUG does not turn it on.
_wire_logger = get_logger("trio_ws_bus.wire")
_wire_logger.setLevel(logging.INFO)

_CLOSED_MESSAGE: Final = "the manager's context has exited (or is exiting)"


class WebSocketManager(metaclass=NoPublicConstructor):
    """Keeps one WebSocket connection alive and routes its messages to a bus.

    Made by :func:`open_websocket_manager`, which owns the connection task. The
    methods that change what the manager does (:meth:`connect`,
    :meth:`disconnect`, :meth:`subscribe`, :meth:`unsubscribe`) are synchronous
    and never block: the connection task does the I/O.
    """

    _made_by: ClassVar[str] = "trio_ws_bus.open_websocket_manager(url, token=...)"

    def __init__(
        self,
        *,
        settings: Settings,
        bus: MessageBus,
        backoff: Backoff,
        retry_policy: RetryPolicy,
    ) -> None:
        self.bus: MessageBus = bus
        """The bus the manager publishes to."""
        self._settings = settings
        self._life = Lifecycle(RetryBudget(backoff, retry_policy))
        self._ledger = SubscriptionLedger()
        self._redact = Redactor()
        self._counters = MessageCounters()
        self._router = Router(bus.publish, self._counters, self._redact)
        self._status = ConnectionStatus.DISCONNECTED
        self._watched: set[Subscription[Any]] = set()
        # Carried by the session loop while it runs; the commands act on them.
        self._session_scope: trio.CancelScope | None = None
        self._connection: Connection | None = None
        self._last_session: ClientSession | None = None
        self._retry_now = trio.Event()
        self._changed = trio.Event()
        self._run_scope = trio.CancelScope()
        self._exiting = False  # the context's exit has begun: connect() is refused

    # --- public API ---------------------------------------------------------

    def connect(self) -> None:
        """Start connecting if not already; idempotent.

        After :meth:`disconnect` or after the manager gave up, this starts a
        new session with a fresh retry budget; during a backoff wait it makes
        the next attempt at once.

        Raises:
            trio.ClosedResourceError: If the manager's context has exited.
        """
        self._refuse_if_closed()
        self._perform(self._life.connect())

    def disconnect(self) -> None:
        """Close on purpose: no reconnect until :meth:`connect`.

        Wherever the connection task is (token call, handshake, backoff wait,
        open connection) it stops; an open connection is closed with code
        1000 "Client disconnect". Persisted subscriptions are kept for the
        next :meth:`connect`.
        """
        self._perform(self._life.disconnect(self._wire()))

    def subscribe(
        self, kind: SubscriptionKind, device_id: str | None = None
    ) -> NotAContextManager:
        """Persist a server subscription and send it now or on the next connect.

        Not a context manager: for a subscription that lasts as long as a
        block, with its messages, use :meth:`alerts` or :meth:`telemetry`.
        ``async with manager.subscribe(...)`` raises ``TypeError`` saying so,
        and leaves nothing subscribed by that call.

        Args:
            kind: ``"alerts"`` or ``"device"``.
            device_id: The device, required for (and only for) ``"device"``.

        Raises:
            ValueError: For an unknown kind or a missing or extra device id.
            trio.ClosedResourceError: If the manager's context has exited.
        """
        key = subscription_key(kind, device_id)
        self._refuse_if_closed()
        if not self._ledger.pin(key):
            return NotAContextManager(lambda: None)
        self._flush()
        # Used as ``async with`` no checkpoint has passed yet: undoing the pin
        # leaves the server untold.
        return NotAContextManager(lambda: self.unsubscribe(kind, device_id))

    def unsubscribe(self, kind: SubscriptionKind, device_id: str | None = None) -> None:
        """Forget a subscription made with :meth:`subscribe`; tell the server.

        A subscription still held by an open :meth:`alerts` or :meth:`telemetry`
        context stays until the last such context exits.

        Raises:
            ValueError: For an unknown kind or a missing or extra device id.
        """
        self._ledger.unpin(subscription_key(kind, device_id))
        self._flush()

    @property
    def subscriptions(self) -> list[SubscriptionKey]:
        """The persisted subscriptions, in the order they were first made."""
        return self._ledger.wanted

    @property
    def is_connected(self) -> bool:
        """Whether a connection is open right now (not while it closes)."""
        return self._life.phase is Phase.CONNECTED

    @property
    def status(self) -> ConnectionStatus:
        """The status last published on ``CONNECTION_TOPIC``."""
        return self._status

    async def wait_connected(self) -> None:
        """Wait until a connection is open.

        Raises:
            ConnectionGaveUp: If the manager has given up (retries used up, no
                token, or a failure the retry policy called fatal). It also
                raises if the manager gives up while waiting.
            trio.ClosedResourceError: If the manager's context has exited
                (before or while waiting).
        """
        while True:
            state = self._life.state
            if state.phase in (Phase.CONNECTED, Phase.CLOSED, Phase.GAVE_UP):
                await trio.lowlevel.checkpoint()
                self._refuse_if_closed()
                if state.gave_up is not None:
                    raise ConnectionGaveUp(state.gave_up)
                return
            await self._changed.wait()

    @asynccontextmanager
    async def alerts(
        self,
        *,
        max_buffer: int | None = None,
        overflow: Overflow = Overflow.DROP_OLDEST,
    ) -> AsyncIterator[Subscription[tuple[Alert, ...]]]:
        """Subscribe to alerts: a bus subscription plus the server subscription.

        The bus subscription opens first, so nothing the server sends after
        subscribing is missed; the server subscription is reference counted and
        unsubscribed when the last user leaves. Each received item is a
        ``tuple[Alert, ...]``. While the manager has given up, a receive with
        nothing buffered raises :exc:`ConnectionGaveUp`. When the manager's
        context exits, the subscription ends: ``async for`` stops once what is
        buffered has been delivered, and ``receive()`` raises
        `trio.EndOfChannel`.

        Raises:
            trio.ClosedResourceError: If the manager's context has exited
                (nothing is subscribed then).
        """
        async with self._topic_subscription(
            ALERTS_TOPIC, ("alerts", None), max_buffer, overflow
        ) as subscription:
            yield subscription

    @asynccontextmanager
    async def telemetry(
        self,
        device_id: str,
        *,
        max_buffer: int | None = None,
        overflow: Overflow = Overflow.DROP_OLDEST,
    ) -> AsyncIterator[Subscription[Telemetry]]:
        """Subscribe to one device's telemetry; items are :class:`Telemetry`.

        Works like :meth:`alerts` (it ends, and refuses, the same way), for
        ``telemetry_topic(device_id)``.
        """
        key = subscription_key("device", device_id)
        async with self._topic_subscription(
            telemetry_topic(device_id), key, max_buffer, overflow
        ) as subscription:
            yield subscription

    def statistics(self) -> ManagerStatistics:
        """Return a snapshot of counters and state."""
        life = self._life
        if life.phase is Phase.CONNECTED:
            life.budget.settle(trio.current_time())
        session = self._last_session
        return ManagerStatistics(
            status=self._status,
            attempts=life.attempts,
            connections=life.connections,
            reconnects=max(life.connections - 1, 0),
            retries_used=life.budget.retries_used,
            subscriptions=len(self._ledger.wanted),
            **attrs.asdict(self._counters),  # the routed messages, by kind
            subprotocol=session.subprotocol if session is not None else None,
            compression=session.compression if session is not None else None,
        )

    def __repr__(self) -> str:
        return (
            f"<WebSocketManager {redact_url(self._settings.url)!r}"
            f" status={self._status.value} subscriptions={len(self._ledger.wanted)}>"
        )

    # --- subscriptions ------------------------------------------------------

    @asynccontextmanager
    async def _topic_subscription(
        self,
        topic: str,
        key: SubscriptionKey,
        max_buffer: int | None,
        overflow: Overflow,
    ) -> AsyncIterator[Subscription[Any]]:
        self._refuse_if_closed()
        options: dict[str, Any] = {"overflow": overflow}
        if max_buffer is not None:
            options["max_buffer"] = max_buffer
        async with self.bus.subscribe(topic, **options) as subscription:
            self._ledger.acquire(key)
            self._flush()
            self._watched.add(subscription)
            self._interrupt_if_gave_up(subscription)
            try:
                yield subscription
            finally:
                self._watched.discard(subscription)
                self._ledger.release(key)
                self._flush()

    def _flush(self) -> None:
        if self._connection is not None:
            self._connection.request_flush()

    def _refuse_if_closed(self) -> None:
        if self._exiting or self._life.phase is Phase.CLOSED:
            raise trio.ClosedResourceError(_CLOSED_MESSAGE)

    def _wire(self) -> Wire:
        connection = self._connection
        state = connection.session.state if connection is not None else None
        if state is SessionState.OPEN:
            return Wire.OPEN
        return Wire.CLOSING if state is SessionState.CLOSING else Wire.NONE

    def _interrupt_if_gave_up(self, subscription: Subscription[Any]) -> None:
        reason = self._life.state.gave_up
        if reason is not None:
            subscription._set_interrupt(lambda: ConnectionGaveUp(reason))

    # --- performing the lifecycle's steps -----------------------------------

    def _perform(self, step: Step) -> None:
        """Carry out a step: its commands, then its events (see the rules)."""
        for command in step.commands:
            self._carry_out(command)
        self._changed.set()  # wake wait_connected() and the idle loop
        self._changed = trio.Event()
        for event in step.events:
            self._publish(event)

    def _carry_out(self, command: Command) -> None:
        if command is Command.RETRY_NOW:
            self._retry_now.set()
        elif command is Command.CLOSE_CONNECTION:
            assert self._connection is not None  # the wire was open
            self._connection.request_close()
        elif command is Command.CANCEL_SESSION:
            if self._session_scope is not None:
                self._session_scope.cancel()
        elif command is Command.END_SUBSCRIPTIONS:
            for subscription in self._watched:
                subscription._end()
        elif command is Command.INTERRUPT_SUBSCRIPTIONS:
            for subscription in self._watched:
                self._interrupt_if_gave_up(subscription)
        else:
            assert command is Command.REARM_SUBSCRIPTIONS
            for subscription in self._watched:
                subscription._set_interrupt(None)

    def _publish(self, event: ConnectionEvent) -> None:
        if event.reason is not None:  # the server's words
            event = attrs.evolve(event, reason=self._redact(event.reason))
        self._status = event.status
        self.bus.publish(CONNECTION_TOPIC, event)

    # --- the session loop ---------------------------------------------------

    async def _run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # Shielded: cancelling the code around the manager context must not
        # cut the intentional close short. The context's exit runs
        # _shutdown() (bounded by close_timeout), then cancels this scope.
        with trio.CancelScope(shield=True) as self._run_scope:
            task_status.started()
            try:
                while True:
                    if self._life.phase in (Phase.IDLE, Phase.GAVE_UP):
                        await self._changed.wait()
                    else:
                        await self._run_session()
            finally:
                self._perform(self._life.closed())

    async def _run_session(self) -> None:
        """Attempt and wait until the lifecycle stops, closes or gives up."""
        try:
            with trio.CancelScope() as self._session_scope:
                while self._life.phase is Phase.CONNECTING:
                    await self._attempt_and_wait()
        finally:
            self._session_scope = None
        self._perform(self._life.finished())

    async def _attempt_and_wait(self) -> None:
        failure = await self._attempt()
        self._retry_now = trio.Event()  # connect() from a handler cuts the wait
        if failure is None:
            self._perform(self._life.no_token())
            return
        self._perform(self._life.failed(failure, trio.current_time()))
        delay = self._life.state.retry_in
        if delay is not None:
            with trio.move_on_after(delay):
                await self._retry_now.wait()
            self._perform(self._life.waited())

    async def _attempt(self) -> ConnectionFailure | None:
        """Make one attempt; return how it ended, or None when there is no token."""
        settings = self._settings
        self._perform(self._life.attempt_begins())
        # open_timeout bounds the whole attempt: token call and handshake.
        deadline = trio.current_time() + settings.open_timeout
        token = await fetch_token(settings, deadline)
        if token is None or isinstance(token, ConnectionFailure):
            return token
        self._redact.remember(token)
        in_header = settings.token_location == "header"
        target = resolve_target(
            settings.url, None if in_header else token, path=settings.path
        )
        self._perform(self._life.attempt_started())
        logger.debug(
            "connecting to %s",
            target.redacted_url,
            extra={
                "ws_bus_attempt": self._life.attempts,
                "ws_bus_status": "connecting",
            },
        )
        stream = await open_stream(settings, target, deadline)
        if isinstance(stream, ConnectionFailure):
            return stream
        session = new_session(
            settings,
            target,
            token,
            now=trio.current_time(),
            wire_logger=_wire_logger,
        )
        self._last_session = session
        self._connection = Connection(
            stream,
            session,
            router=self._router,
            bus=self.bus,
            ledger=self._ledger,
            on_open=self._on_open,
            close_timeout=settings.close_timeout,
            send_timeout=max(settings.ping_timeout, settings.close_timeout),
            subscriber_wait=settings.subscriber_wait,
        )
        try:
            failure = await self._connection.run(deadline)
        finally:
            self._connection = None
            self._ledger.connection_lost()
        if failure.kind is FailureKind.CLOSED and failure.reason is not None:
            # The server's close reason: the policy sees no token either.
            failure = attrs.evolve(failure, reason=self._redact(failure.reason))
        return failure

    def _on_open(self, opened: Opened) -> None:
        """The handshake succeeded (called by the pump, before any message)."""
        step = self._life.opened(trio.current_time())
        if self._life.phase is not Phase.CONNECTED:
            return  # disconnect() came first: the session is being cancelled
        self._ledger.connection_opened()
        logger.info(
            "connected to %s",
            redact_url(self._settings.url),
            extra={"ws_bus_attempt": self._life.attempts, "ws_bus_status": "connected"},
        )
        self._perform(step)

    async def _shutdown(self) -> None:
        """Disconnect and wait, bounded, for the session loop to go idle."""
        self._exiting = True  # a handler's connect() must not start a session now
        self.disconnect()
        with trio.move_on_after(self._settings.close_timeout + 1.0):
            while self._session_scope is not None:
                await self._changed.wait()


@attrs.frozen
class NotAContextManager:
    """What :meth:`WebSocketManager.subscribe` returns: nothing to use.

    Only there to refuse ``async with manager.subscribe(...)`` clearly: it
    undoes that call's subscription, then raises ``TypeError`` naming
    :meth:`~WebSocketManager.alerts` and :meth:`~WebSocketManager.telemetry`.
    """

    _undo: Callable[[], None] = attrs.field(repr=False)

    async def __aenter__(self) -> NoReturn:
        self._undo()
        raise TypeError(
            "manager.subscribe() persists a server subscription and is not a"
            " context manager; for a subscription that lasts as long as a block,"
            " use 'async with manager.alerts()' or"
            " 'async with manager.telemetry(device_id)'"
        )

    async def __aexit__(self, *exc_info: object) -> None:
        """Never reached: ``__aenter__`` always raises."""
