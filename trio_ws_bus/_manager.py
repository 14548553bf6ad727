"""The connection manager: the public face and the session loop.

One task (the *session loop*) owns every connection attempt; the public
methods only change state and wake it. Its phase is explicit (:class:`Phase`).

Rules of the connection task (read before changing ``_session``):

* ``IDLE --connect()--> ATTEMPTING --handshake--> CONNECTED``.
* ``ATTEMPTING`` is one attempt: token call, transport (TCP/TLS/proxy), opening
  handshake, all by one deadline, ``open_timeout`` after it started. The
  token is fetched again for every attempt; no token at all goes
  ``GAVE_UP`` at once (the browser client's behaviour).
* A failed attempt or a lost connection publishes what happened, asks the
  retry policy and the budget (``_reconnect.RetryBudget``): a retry waits
  ``BACKOFF`` (``connect()`` cuts the wait short) and makes a new attempt;
  a give-up goes ``GAVE_UP``: receives on the manager's subscriptions with
  nothing buffered raise :exc:`ConnectionGaveUp` until ``connect()``.
* The state changes *before* an event is published, so a handler that calls
  ``connect()`` on the give-up event starts a new session.
* ``disconnect()`` ends the session from any phase and goes ``IDLE`` with the
  budget reset: an open connection first closes with 1000 "Client disconnect"
  (bounded by ``close_timeout``); otherwise the session's scope is cancelled.
* The loop runs shielded: cancelling the code around the manager's context
  does not cut the intentional close short; the context's exit ends the loop
  once ``disconnect()`` is done. ``CLOSED`` is final.
* Only the pump (``_connection.py``) touches the network, and reports back
  through its return value and the session's callbacks.
"""

from __future__ import annotations

import enum
import inspect
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import trio

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
from ._logs import get_logger
from ._protocol import (
    Alert,
    SubscriptionKey,
    SubscriptionKind,
    Telemetry,
    subscription_key,
)
from ._proxy import PROXY_FROM_ENV, ProxyFromEnv, ProxyURL
from ._retry import RetryBudget, RetryPolicy, default_retry_policy
from ._routing import MessageCounters, Router
from ._secrets import Redactor
from ._session import ClientSession, Compression, Opened, SessionState
from ._settings import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_PATH,
    DEFAULT_SUBSCRIBER_WAIT,
    DEFAULT_USER_AGENT,
    HandshakeHeaders,
    Settings,
    TokenLocation,
    TokenProvider,
    make_settings,
    token_problem,
)
from ._transport import Transport, failure_from_os_error
from ._url import redact_url, resolve_target
from ._util import BaseExceptionGroup, reraise_alone

__all__ = [
    "ManagerStatistics",
    "WebSocketManager",
    "open_websocket_manager",
]

logger = get_logger("trio_ws_bus.manager")
#: websockets' protocol logger: at DEBUG it dumps the handshake (headers the
#: server sent included) and every frame. Opt-in: set this logger to DEBUG
#: yourself; a root logger at DEBUG does not turn it on.
_wire_logger = get_logger("trio_ws_bus.wire")
_wire_logger.setLevel(logging.INFO)

_NO_TOKEN_MESSAGE: Final = "No auth token"
_CLIENT_CLOSE: Final = ConnectionEvent(
    ConnectionStatus.DISCONNECTED, code=1000, reason="Client disconnect"
)


class Phase(enum.Enum):
    """Where the session loop is (see the module rules)."""

    IDLE = "idle"
    ATTEMPTING = "attempting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    GAVE_UP = "gave_up"
    CLOSED = "closed"


@attrs.frozen
class ManagerStatistics:
    """What the manager has done: :meth:`WebSocketManager.statistics` returns it.

    Attributes:
        status: The current connection status.
        attempts: Connection attempts made (each one fetched a token).
        connections: Attempts whose handshake succeeded.
        reconnects: Successful connections after the first one.
        retries_used: Retries used from the current budget (see
            :doc:`/reconnect_policy`).
        messages_received: Messages received, valid or not.
        alerts_messages: ``alerts`` messages routed to ``ALERTS_TOPIC``.
        telemetry_messages: ``telemetry`` messages routed to telemetry topics.
        acks: ``subscribed`` / ``unsubscribed`` answers received.
        server_errors: ``error`` messages routed to ``ERROR_TOPIC``.
        invalid_messages: Items rejected and published on ``INVALID_TOPIC``
            (bad JSON, unknown type, wrong field types, binary, too big).
        subscriptions: Persisted server subscriptions.
        other_metrics: Telemetry metric values that are neither numbers nor
            booleans, kept in :attr:`Telemetry.other_metrics` (the reading is
            delivered all the same).
        subprotocol: The subprotocol the server chose on the current (or
            last) connection, else ``None``.
        compression: ``"deflate"`` if the current (or last) connection
            negotiated permessage-deflate, else ``None``.
    """

    status: ConnectionStatus
    attempts: int
    connections: int
    reconnects: int
    retries_used: int
    messages_received: int
    alerts_messages: int
    telemetry_messages: int
    acks: int
    server_errors: int
    invalid_messages: int
    subscriptions: int
    other_metrics: int = 0
    subprotocol: str | None = None
    compression: str | None = None


class WebSocketManager:
    """Keeps one WebSocket connection alive and routes its messages to a bus.

    Made by :func:`open_websocket_manager`, which owns the connection task. The
    methods that change what the manager does (:meth:`connect`,
    :meth:`disconnect`, :meth:`subscribe`, :meth:`unsubscribe`) are synchronous
    and never block: the connection task does the I/O.
    """

    def __init__(
        self,
        _private: object,
        *,
        settings: Settings,
        bus: MessageBus,
        backoff: Backoff,
        retry_policy: RetryPolicy,
    ) -> None:
        if _private is not _PRIVATE:
            raise TypeError(
                "use trio_ws_bus.open_websocket_manager() to make a WebSocketManager"
            )
        self.bus: MessageBus = bus
        """The bus the manager publishes to."""
        self._settings = settings
        self._budget = RetryBudget(backoff, retry_policy)
        self._ledger = SubscriptionLedger()
        self._attempts = 0
        self._connections = 0
        self._redact = Redactor()
        self._counters = MessageCounters()
        self._router = Router(bus.publish, self._counters, self._redact, logger)
        self._phase = Phase.IDLE
        self._status = ConnectionStatus.DISCONNECTED
        self._gave_up: str | None = None
        self._wanted = False  # connect() sets it; disconnect() and giving up clear it
        self._generation = 0  # bumped by disconnect(): a session acts while it owns it
        self._session_scope: trio.CancelScope | None = None
        self._connection: Connection | None = None
        self._last_session: ClientSession | None = None
        self._closing_on_purpose = False
        self._watched: set[Subscription[Any]] = set()
        self._wake = trio.Event()
        self._state_changed = trio.Event()
        self._run_scope = trio.CancelScope()

    # --- public API ---------------------------------------------------------

    def connect(self) -> None:
        """Start connecting if not already; idempotent.

        After :meth:`disconnect` or after the manager gave up, this starts a
        new session with a fresh retry budget; during a backoff wait it makes
        the next attempt at once.

        Raises:
            trio.ClosedResourceError: If the manager's context has exited.
        """
        if self._phase is Phase.CLOSED:
            raise trio.ClosedResourceError("the manager's context has exited")
        self._wake.set()
        if self._wanted:
            return
        self._wanted = True
        self._gave_up = None
        for subscription in self._watched:
            subscription._set_interrupt(None)

    def disconnect(self) -> None:
        """Close on purpose: no reconnect until :meth:`connect`.

        Wherever the connection task is (token call, handshake, backoff wait,
        open connection) it stops; an open connection is closed with code
        1000 "Client disconnect". Persisted subscriptions are kept for the
        next :meth:`connect`.
        """
        self._wanted = False
        self._generation += 1
        self._budget.reset()
        connection = self._connection
        state = connection.session.state if connection is not None else None
        if state is SessionState.OPEN:
            assert connection is not None
            self._closing_on_purpose = True
            connection.request_close()
        elif state is not SessionState.CLOSING and self._session_scope is not None:
            self._session_scope.cancel()

    def subscribe(self, kind: SubscriptionKind, device_id: str | None = None) -> None:
        """Persist a server subscription and send it now or on the next connect.

        Args:
            kind: ``"alerts"`` or ``"device"``.
            device_id: The device, required for (and only for) ``"device"``.

        Raises:
            ValueError: For an unknown kind or a missing or extra device id.
        """
        self._ledger.pin(subscription_key(kind, device_id))
        self._flush()

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
        """Whether a connection is open right now."""
        return self._phase is Phase.CONNECTED

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
            if self._phase is Phase.CLOSED:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("the manager's context has exited")
            if self._phase is Phase.CONNECTED:
                await trio.lowlevel.checkpoint()
                return
            if self._gave_up is not None:
                await trio.lowlevel.checkpoint()
                raise ConnectionGaveUp(self._gave_up)
            await self._state_changed.wait()

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
        nothing buffered raises :exc:`ConnectionGaveUp`.
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

        Works like :meth:`alerts`, for ``telemetry_topic(device_id)``.
        """
        key = subscription_key("device", device_id)
        async with self._topic_subscription(
            telemetry_topic(device_id), key, max_buffer, overflow
        ) as subscription:
            yield subscription

    def statistics(self) -> ManagerStatistics:
        """Return a snapshot of counters and state."""
        c = self._counters
        if self._phase is Phase.CONNECTED:
            self._budget.settle(trio.current_time())
        session = self._last_session
        return ManagerStatistics(
            status=self._status,
            attempts=self._attempts,
            connections=self._connections,
            reconnects=max(self._connections - 1, 0),
            retries_used=self._budget.retries_used,
            messages_received=c.messages_received,
            alerts_messages=c.alerts_messages,
            telemetry_messages=c.telemetry_messages,
            acks=c.acks,
            server_errors=c.server_errors,
            invalid_messages=c.invalid_messages,
            subscriptions=len(self._ledger.wanted),
            other_metrics=c.other_metrics,
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
        options: dict[str, Any] = {"overflow": overflow}
        if max_buffer is not None:
            options["max_buffer"] = max_buffer
        async with self.bus.subscribe(topic, **options) as subscription:
            self._ledger.acquire(key)
            self._flush()
            self._watched.add(subscription)
            if self._gave_up is not None:
                subscription._set_interrupt(self._gave_up_error())
            try:
                yield subscription
            finally:
                self._watched.discard(subscription)
                self._ledger.release(key)
                self._flush()

    def _flush(self) -> None:
        if self._connection is not None:
            self._connection.request_flush()

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
                    while not self._wanted:
                        self._wake = trio.Event()
                        await self._wake.wait()
                    await self._run_session()
            finally:
                self._enter(Phase.CLOSED)

    async def _run_session(self) -> None:
        generation = self._generation
        self._budget.reset()
        with trio.CancelScope() as self._session_scope:
            try:
                await self._session(generation)
            finally:
                self._session_scope = None
        if generation != self._generation:  # disconnect() ended it
            closed_on_purpose, self._closing_on_purpose = (
                self._closing_on_purpose,
                False,
            )
            self._enter(Phase.IDLE)
            if closed_on_purpose:
                self._publish(_CLIENT_CLOSE)
            else:
                self._publish(ConnectionEvent(ConnectionStatus.DISCONNECTED))

    async def _session(self, generation: int) -> None:
        """Attempt until disconnected or giving up."""
        while True:
            failure = await self._attempt()
            if generation != self._generation:
                return
            if failure is None:
                self._give_up(_NO_TOKEN_MESSAGE)
                return
            self._enter(Phase.BACKOFF)
            if failure.kind is FailureKind.CLOSED and failure.reason is not None:
                # The server's close reason: the policy sees no token either.
                failure = attrs.evolve(failure, reason=self._redact(failure.reason))
            self._publish_failure(failure)
            decision = self._budget.on_failure(failure, trio.current_time())
            if decision.delay is None:
                message = decision.give_up_message
                assert message is not None
                self._give_up(message)
                return
            logger.info(
                "reconnecting in %.3g s (retry %d of %s)",
                decision.delay,
                decision.retry_count,
                "unlimited"
                if (limit := self._budget.backoff.max_retries) is None
                else limit,
                extra={
                    "ws_bus_attempt": self._attempts,
                    "ws_bus_status": "disconnected",
                },
            )
            self._wake = trio.Event()
            self._publish(
                ConnectionEvent(
                    ConnectionStatus.DISCONNECTED,
                    retry_in=decision.delay,
                    retry_count=decision.retry_count,
                )
            )
            with trio.move_on_after(decision.delay):
                await self._wake.wait()  # connect() tries at once

    async def _attempt(self) -> ConnectionFailure | None:
        """Make one attempt; return how it ended, or None when there is no token."""
        settings = self._settings
        self._attempts += 1
        self._enter(Phase.ATTEMPTING)
        # open_timeout bounds the whole attempt: token call and handshake.
        deadline = trio.current_time() + settings.open_timeout
        token = await self._fetch_token(deadline)
        if isinstance(token, ConnectionFailure):
            return token
        if not token:
            logger.warning("no auth token available; not connecting")
            return None
        unusable = token_problem(token, settings.token_location)
        if unusable is not None:
            logger.warning("%s", unusable)
            return ConnectionFailure(FailureKind.INVALID_TOKEN, reason=unusable)
        self._redact.remember(token)
        in_header = settings.token_location == "header"
        target = resolve_target(
            settings.url, None if in_header else token, path=settings.path
        )
        self._publish(ConnectionEvent(ConnectionStatus.CONNECTING))
        logger.debug(
            "connecting to %s",
            target.redacted_url,
            extra={"ws_bus_attempt": self._attempts, "ws_bus_status": "connecting"},
        )
        try:
            with trio.fail_at(deadline):
                stream = await settings.transport.open_stream(
                    target.host,
                    target.port,
                    ssl_context=settings.ssl_context if target.secure else None,
                )
        except trio.TooSlowError:
            return ConnectionFailure(
                FailureKind.TIMEOUT, reason="Opening handshake timed out"
            )
        except (OSError, trio.BrokenResourceError) as exc:
            return failure_from_os_error(exc)
        handshake = settings.handshake
        if in_header:
            handshake = attrs.evolve(handshake, bearer_token=token)
        session = ClientSession(
            target.url,
            handshake,
            now=trio.current_time(),
            max_message_size=settings.max_message_size,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            close_timeout=settings.close_timeout,
            logger=_wire_logger,
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
        return failure

    def _on_open(self, opened: Opened) -> None:
        """The handshake succeeded (called by the pump, before any message)."""
        now = trio.current_time()
        self._connections += 1
        self._budget.on_connected(now)
        self._ledger.connection_opened()
        self._enter(Phase.CONNECTED)
        logger.info(
            "connected to %s",
            redact_url(self._settings.url),
            extra={"ws_bus_attempt": self._attempts, "ws_bus_status": "connected"},
        )
        self._publish(ConnectionEvent(ConnectionStatus.CONNECTED))

    async def _fetch_token(self, deadline: float) -> str | ConnectionFailure | None:
        provider = self._settings.token
        if isinstance(provider, str):
            return provider
        try:
            with trio.fail_at(deadline):
                token: object = provider()
                if inspect.isawaitable(token):
                    token = await token
        except trio.TooSlowError:
            reason = "Token provider timed out"
        except Exception as exc:
            # The exception's text may hold a token: only its type is shown.
            reason = f"Token provider failed: {type(exc).__name__}"
        else:
            if token is None or isinstance(token, str):
                return token
            reason = f"Token provider returned {type(token).__name__}, not str"
        logger.warning("%s", reason)
        return ConnectionFailure(FailureKind.TOKEN_ERROR, reason=reason)

    def _publish_failure(self, failure: ConnectionFailure) -> None:
        """The browser's onerror + onclose pair for a failure."""
        if failure.kind is FailureKind.CLOSED:
            self._publish(
                ConnectionEvent(
                    ConnectionStatus.DISCONNECTED,
                    code=failure.close_code,
                    reason=failure.reason,
                )
            )
            return
        logger.warning(
            "connection attempt failed: %s",
            failure.reason,
            extra={
                "ws_bus_attempt": self._attempts,
                "ws_bus_status": "error",
                "ws_bus_status_code": failure.status_code,
            },
        )
        self._publish(ConnectionEvent(ConnectionStatus.ERROR, message=failure.reason))
        if failure.kind is not FailureKind.TOKEN_ERROR:
            self._publish(ConnectionEvent(ConnectionStatus.DISCONNECTED, code=1006))

    def _give_up(self, message: str) -> None:
        logger.warning(
            "giving up: %s",
            message,
            extra={"ws_bus_attempt": self._attempts, "ws_bus_status": "error"},
        )
        self._wanted = False
        self._gave_up = message
        self._enter(Phase.GAVE_UP)
        for subscription in self._watched:
            subscription._set_interrupt(self._gave_up_error())
        self._publish(ConnectionEvent(ConnectionStatus.ERROR, message=message))

    def _gave_up_error(self) -> Callable[[], BaseException]:
        message = self._gave_up
        assert message is not None
        return lambda: ConnectionGaveUp(message)

    # --- state --------------------------------------------------------------

    def _enter(self, phase: Phase) -> None:
        self._phase = phase
        self._notify()

    def _publish(self, event: ConnectionEvent) -> None:
        if event.reason is not None:  # the server's words
            event = attrs.evolve(event, reason=self._redact(event.reason))
        self._status = event.status
        self.bus.publish(CONNECTION_TOPIC, event)
        self._notify()

    def _notify(self) -> None:
        """Wake every task waiting in wait_connected() or _shutdown()."""
        self._state_changed.set()
        self._state_changed = trio.Event()

    async def _shutdown(self) -> None:
        """Disconnect and wait, bounded, for the session loop to go idle."""
        self.disconnect()
        with trio.move_on_after(self._settings.close_timeout + 1.0):
            while self._session_scope is not None:
                await self._state_changed.wait()


_PRIVATE: Final = object()


@asynccontextmanager
async def open_websocket_manager(
    url: str,
    *,
    token: TokenProvider,
    bus: MessageBus | None = None,
    backoff: Backoff | None = None,
    retry_policy: RetryPolicy = default_retry_policy,
    path: str = DEFAULT_PATH,
    autoconnect: bool = True,
    ping_interval: float | None = 20.0,
    ping_timeout: float = 20.0,
    open_timeout: float = 10.0,
    close_timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    transport: Transport | None = None,
    additional_headers: HandshakeHeaders = (),
    user_agent: str | None = DEFAULT_USER_AGENT,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    compression: Compression = "deflate",
    token_location: TokenLocation = "query",
    proxy: str | ProxyURL | ProxyFromEnv | None = PROXY_FROM_ENV,
    trust_env: bool = True,
    subscriber_wait: float = DEFAULT_SUBSCRIBER_WAIT,
) -> AsyncIterator[WebSocketManager]:
    """Open a connection manager whose task lives as long as the context.

    On exit the manager disconnects on purpose (close code 1000) and no task
    is left behind. An exception raised in the body (an ``ExceptionGroup``
    included) comes out as that same object.

    Args:
        url: Base URL of the backend: ``http(s)://`` or ``ws(s)://``. An empty
            path becomes ``path``; other query parameters are kept.
        token: The auth token, or a sync or async callable returning it. A
            callable is called before every attempt, so it can refresh.
        bus: The bus to publish to; a new :class:`MessageBus` by default.
        backoff: The retry schedule; ``Backoff()`` (1, 2, 4, 8, 16, 30 s, 20
            retries) by default.
        retry_policy: Classifies each failure as retry, retry now, or give up
            (see :doc:`/reconnect_policy`).
        path: The endpoint path used when ``url`` has none.
        autoconnect: Connect at once; else wait for :meth:`WebSocketManager.connect`.
        ping_interval: Seconds between heartbeat pings; ``None`` disables them
            (then a half-open connection is never noticed).
        ping_timeout: Seconds to wait for a pong before the connection counts
            as lost, unless data keeps arriving (at least 1 KiB per
            ``ping_timeout``).
        open_timeout: Seconds one attempt may take, from the token call to the
            end of the opening handshake.
        close_timeout: Seconds a close we start may take before the
            connection is dropped without the close handshake.
        ssl_context: TLS settings for ``wss:``/``https:`` URLs; a default,
            verifying context when ``None``.
        max_message_size: Largest message accepted, in bytes; a bigger one
            closes the connection with 1009 and is counted.
        transport: Opens the byte stream of each attempt; TCP by default. The
            in-memory transport of :mod:`trio_ws_bus.testing` plugs in here.
        additional_headers: Extra handshake request headers (a mapping or
            ``(name, value)`` pairs); ``Authorization``, ``Host`` and
            ``Sec-WebSocket-*`` are the library's.
        user_agent: The ``User-Agent`` header; ``None`` sends none.
        origin: The ``Origin`` header, for servers that check it.
        subprotocols: Subprotocols to offer, in order of preference; the
            server's choice is in :meth:`WebSocketManager.statistics`.
        compression: ``"deflate"`` offers permessage-deflate; ``None`` offers
            no compression.
        token_location: ``"query"`` (the seed's ``?token=``) or ``"header"``
            (``Authorization: Bearer <token>``).
        proxy: ``"http://[user:pass@]host:port"`` (HTTP CONNECT),
            ``"socks5://..."`` or ``"socks5h://..."``; TLS runs inside the
            tunnel for ``wss:``. By default the environment decides (see
            ``trust_env``); an explicit ``None`` means no proxy, whatever the
            environment says. Ignored when ``transport`` is given.
        trust_env: Read ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY``
            as httpx does, when ``proxy`` is not given.
        subscriber_wait: The most seconds the connection's reader waits, at a
            time, for a subscription that passed half its ``max_buffer`` before
            it reads on (backpressure: TCP slows the server meanwhile). A
            subscription that has not drained to a quarter of its buffer by
            then is lagging: it loses messages by its overflow policy until it
            catches up, and never stalls the others for longer. ``0`` never
            waits (0.2.0's behaviour: bursts overflow buffers); ``math.inf``
            waits as long as it takes, as websockets' own clients do.

    Raises:
        ValueError: For a URL that can never work (unknown scheme, no host) or
            an out-of-range setting, before anything connects.
    """
    settings = make_settings(
        url,
        token=token,
        path=path,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        ssl_context=ssl_context,
        max_message_size=max_message_size,
        transport=transport,
        additional_headers=additional_headers,
        user_agent=user_agent,
        origin=origin,
        subprotocols=subprotocols,
        compression=compression,
        token_location=token_location,
        proxy=proxy,
        trust_env=trust_env,
        subscriber_wait=subscriber_wait,
    )
    manager = WebSocketManager(
        _PRIVATE,
        settings=settings,
        bus=bus if bus is not None else MessageBus(),
        backoff=backoff if backoff is not None else Backoff(),
        retry_policy=retry_policy,
    )
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(manager._run)
            if autoconnect:
                manager.connect()
            try:
                yield manager
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                with trio.CancelScope(shield=True):
                    await manager._shutdown()
                manager._run_scope.cancel()
    except BaseExceptionGroup as group:
        # The body's own exception (a group included) comes out as itself: the
        # nursery wrapped it (a group, possibly as a copy), and nothing else.
        if (
            body_error is not None
            and len(group.exceptions) == 1
            and type(group.exceptions[0]) is type(body_error)
        ):
            reraise_alone(body_error)
        raise
    finally:
        # Every task is gone: this manager's token stops scrubbing log records.
        manager._redact.close()
    # Leaving the context is a checkpoint, as Trio's own are: a cancellation
    # that came while the shielded close ran is delivered here.
    await trio.lowlevel.checkpoint()
