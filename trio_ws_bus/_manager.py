"""The connection manager: one task that keeps one WebSocket connection alive.

Rules of the connection task (read before changing ``_run``):

* ``IDLE --connect()--> ATTEMPT --handshake--> CONNECTED``.
* One ATTEMPT (token call, TCP/TLS, opening handshake) must end by its
  deadline, ``open_timeout`` after it started.
* A failed attempt or a lost connection asks the retry policy and the budget
  (``_reconnect.RetryBudget``): ``RETRY`` waits ``backoff.delay(n)`` and makes a
  new ATTEMPT (``RETRY_NOW`` at once, but never twice in a row); ``GIVE_UP``
  or a spent budget publishes an error and goes IDLE. The budget is refilled
  only by a connection that stayed up ``reset_after`` seconds.
* Every way an attempt or a connection can end becomes a ``ConnectionFailure``
  (see ``_failures.py``): what trio-websocket, wsproto and h11
  raise on a broken server is translated, never let out of the manager.
* ``disconnect()`` ends the session from any state and goes IDLE with the budget
  reset: while CONNECTED it first closes with 1000 "Client disconnect" and
  waits for the server's answer (both bounded by ``close_timeout``),
  elsewhere it cancels the session's scope.
* Every ATTEMPT calls the token provider again; a missing token goes IDLE at
  once, with no retry (the browser client's behaviour).
* The task runs shielded: cancelling the code around the manager's context
  does not cut the intentional close short; the context's exit ends the task
  once ``disconnect()`` is done (or ``close_timeout`` later).
* Only this task touches the network. Public methods change state and wake it;
  they never block and never raise because of the network.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, Final

import attrs
import trio
import trio_websocket
from wsproto import WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, TextMessage
from wsproto.frame_protocol import FrameProtocol
from wsproto.utilities import LocalProtocolError

from ._backoff import Backoff
from ._bus import (
    ALERTS_TOPIC,
    CONNECTION_TOPIC,
    ERROR_TOPIC,
    MessageBus,
    Overflow,
    Subscription,
    telemetry_topic,
)
from ._errors import ConnectionGaveUp, ProtocolError
from ._events import ConnectionEvent, ConnectionStatus
from ._failures import (
    FAILURE_PRIORITY,
    failure_from_group,
    failure_from_os_error,
    raise_when_ended,
    wsproto_state,
)
from ._logs import LogLimiter, short_text
from ._protocol import (
    Alert,
    AlertsMessage,
    ErrorMessage,
    SubscribedMessage,
    SubscriptionKind,
    Telemetry,
    TelemetryMessage,
    UnsubscribedMessage,
    decode_server_message,
    encode_client_message,
)
from ._reconnect import (
    ConnectionFailure,
    FailureKind,
    RetryBudget,
    RetryPolicy,
    SubscriptionKey,
    SubscriptionLedger,
    default_retry_policy,
)
from ._secrets import Redactor, install_log_filter
from ._stream import ObservedStream
from ._transport import TcpTransport, Transport
from ._url import WebSocketTarget, check_base_url, redact_url, resolve_target
from ._util import BaseExceptionGroup, leaf_exceptions, reraise_alone

__all__ = [
    "ManagerStatistics",
    "TokenProvider",
    "WebSocketManager",
    "open_websocket_manager",
]

logger = logging.getLogger("trio_ws_bus.manager")

TokenProvider = str | Callable[[], "str | Awaitable[str | None] | None"]
"""A token, or a sync or async callable returning the current one (or None)."""

DEFAULT_PATH: Final = "/api/v2/ws"
DEFAULT_MAX_MESSAGE_SIZE: Final = 1024 * 1024
#: trio-websocket reads 4 KiB at a time by default; 64 KiB was 1.5x faster on
#: 2.5 KB alerts messages (see docs/performance.rst).
_RECEIVE_BUFFER_SIZE: Final = 64 * 1024
#: Messages trio-websocket may queue ahead of our reader. Small: our reader
#: drains it at once, and each slot may hold up to ``max_message_size``.
_TRANSPORT_QUEUE_SIZE: Final = 4
_TELEMETRY_PREFIX: Final = telemetry_topic("x")[:-1]  # "telemetry:"
_CLIENT_CLOSE_REASON: Final = "Client disconnect"
_PROTOCOL_ERROR_CLOSE_REASON: Final = "Protocol error"
_TOO_BIG_REASON: Final = "Message too big"
_NO_TOKEN_MESSAGE: Final = "No auth token"


class _RoutingConnection(trio_websocket.WebSocketConnection):
    """A trio-websocket connection that routes text messages in its reader task.

    trio-websocket hands every message from its reader task to
    ``get_message()`` through a memory channel: one more task switch per
    message, which costs about as much as parsing the frame did
    (``docs/performance.rst``). Once the manager sets ``route``, each complete
    text message of at most ``route_limit`` characters goes to ``route`` in
    the reader task itself, followed by a schedule point as the channel's
    ``send`` had. Everything else (binary frames, fragmented or long
    messages, and any message before ``route`` is set) takes the channel as
    before, and so does every later message until the manager has handled
    those (``diverted``): the order of messages never changes.

    This overrides a private method of trio-websocket; ``_open_connection``
    falls back to the plain connection when the internals it relies on are
    missing.
    """

    route: Callable[[str], None] | None = None
    route_limit: int = 0
    diverted: int = 0  # messages put in the channel, not yet handled by _read

    async def _handle_message_event(self, event: BytesMessage | TextMessage) -> None:
        route = self.route
        if (
            route is not None
            and not self.diverted
            and event.message_finished
            and type(event) is TextMessage
            and not self._message_parts
            and len(event.data) <= self.route_limit
        ):
            route(event.data)
            # A schedule point, as the channel's send() was, so subscribers
            # run between messages. Cancellation is noticed at the reader's
            # next receive from the stream, one receive buffer later at most.
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if event.message_finished:
            self.diverted += 1
        await super()._handle_message_event(event)


_ROUTING_SUPPORTED: Final = all(
    callable(getattr(trio_websocket.WebSocketConnection, name, None))
    for name in ("_handle_message_event", "_reader_task")
)


async def _open_connection(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    *,
    max_message_size: int,
) -> trio_websocket.WebSocketConnection:
    """``trio_websocket.wrap_client_stream``, making a `_RoutingConnection`."""
    options: dict[str, Any] = {
        "message_queue_size": _TRANSPORT_QUEUE_SIZE,
        "max_message_size": max_message_size,
        "receive_buffer_size": _RECEIVE_BUFFER_SIZE,
    }
    if _ROUTING_SUPPORTED:
        connection = _RoutingConnection(
            stream,
            WSConnection(ConnectionType.CLIENT),
            host=host,
            path=resource,
            **options,
        )
        opened = getattr(connection, "_open_handshake", None)
        if isinstance(opened, trio.Event) and hasattr(connection, "_message_parts"):
            # What wrap_client_stream does (trio-websocket 0.12).
            nursery.start_soon(connection._reader_task)
            await opened.wait()
            return connection
    return await trio_websocket.wrap_client_stream(
        nursery,
        stream,  # type: ignore[arg-type]  # any trio.abc.Stream works
        host,
        resource,
        **options,
    )


@attrs.frozen
class ManagerStatistics:
    """What the manager has done: :meth:`WebSocketManager.statistics` returns it.

    Attributes:
        status: The current connection status.
        attempts: Connection attempts made (each one fetched a token).
        connections: Attempts whose handshake succeeded.
        reconnects: Successful connections after the first one.
        retries_used: Retries used from the current budget. A connection gives
            them back once it has stayed up ``reset_after`` seconds (see
            :doc:`/reconnect_policy`).
        messages_received: Frames received, valid or not.
        alerts_messages: ``alerts`` messages routed to ``ALERTS_TOPIC``.
        telemetry_messages: ``telemetry`` messages routed to telemetry topics.
        acks: ``subscribed`` / ``unsubscribed`` answers recorded.
        server_errors: ``error`` messages routed to ``ERROR_TOPIC``.
        invalid_messages: Frames dropped as invalid (bad JSON, unknown type,
            wrong field types, binary, too big).
        subscriptions: Persisted server subscriptions.
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


@attrs.define
class _Counters:
    attempts: int = 0
    connections: int = 0
    messages_received: int = 0
    alerts_messages: int = 0
    telemetry_messages: int = 0
    acks: int = 0
    server_errors: int = 0
    invalid_messages: int = 0


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
        url: str,
        token: TokenProvider,
        bus: MessageBus,
        backoff: Backoff,
        retry_policy: RetryPolicy,
        path: str,
        ping_interval: float | None,
        ping_timeout: float,
        open_timeout: float,
        close_timeout: float,
        ssl_context: ssl.SSLContext | None,
        max_message_size: int,
        transport: Transport,
    ) -> None:
        if _private is not _PRIVATE:
            raise TypeError(
                "use trio_ws_bus.open_websocket_manager() to make a WebSocketManager"
            )
        self.bus: MessageBus = bus
        """The bus the manager publishes to."""
        self._url = url
        self._token_provider = token
        self._path = path
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._ssl_context = ssl_context
        self._max_message_size = max_message_size
        self._transport = transport
        self._budget = RetryBudget(backoff, retry_policy)
        self._ledger = SubscriptionLedger()
        self._counters = _Counters()
        self._invalid_log = LogLimiter(logger, "ignored an invalid message")
        self._server_error_log = LogLimiter(logger, "server error")
        self._redact = Redactor()
        self._status = ConnectionStatus.DISCONNECTED
        self._gave_up: str | None = None
        # Set by connect(), cleared by disconnect() and when giving up.
        self._wanted = False
        # Bumped by disconnect(): a session only acts while it owns the generation.
        self._generation = 0
        self._session_scope: trio.CancelScope | None = None
        self._connection: trio_websocket.WebSocketConnection | None = None
        self._close_requested: trio.Event | None = None
        self._closed_on_purpose = False
        # The close code of a connection we fail for a protocol violation.
        self._protocol_failure: int | None = None
        self._wake = trio.Event()
        self._state_changed = trio.Event()
        self._outbox_changed = trio.Event()
        self._stopped = trio.Event()
        self._closed = False
        self._run_scope = trio.CancelScope()

    # --- public API ---------------------------------------------------------

    def connect(self) -> None:
        """Start connecting if not already; idempotent.

        After :meth:`disconnect` or after the manager gave up, this starts a
        new session with a fresh retry budget.
        """
        if self._wanted:
            return
        self._wanted = True
        self._gave_up = None
        self._wake.set()

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
        if self._close_requested is not None:
            # Connected: close gracefully from inside the connection.
            self._close_requested.set()
        elif self._session_scope is not None:
            self._session_scope.cancel()

    def subscribe(self, kind: SubscriptionKind, device_id: str | None = None) -> None:
        """Persist a server subscription and send it now or on the next connect.

        Args:
            kind: ``"alerts"`` or ``"device"``.
            device_id: The device, required for (and only for) ``"device"``.

        Raises:
            ValueError: For an unknown kind or a missing or extra device id.
        """
        self._ledger.pin(_subscription_key(kind, device_id))
        self._outbox_changed.set()

    def unsubscribe(self, kind: SubscriptionKind, device_id: str | None = None) -> None:
        """Forget a subscription made with :meth:`subscribe`; tell the server.

        A subscription still held by an open :meth:`alerts` or :meth:`telemetry`
        context stays until the last such context exits.

        Raises:
            ValueError: For an unknown kind or a missing or extra device id.
        """
        self._ledger.unpin(_subscription_key(kind, device_id))
        self._outbox_changed.set()

    @property
    def subscriptions(self) -> list[SubscriptionKey]:
        """The persisted subscriptions, in the order they were first made."""
        return self._ledger.wanted

    @property
    def is_connected(self) -> bool:
        """Whether a connection is open right now."""
        return self._status is ConnectionStatus.CONNECTED

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
            if self._closed:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("the manager's context has exited")
            if self.is_connected:
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
        ``tuple[Alert, ...]``.
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
        key = _subscription_key("device", device_id)
        async with self._topic_subscription(
            telemetry_topic(device_id), key, max_buffer, overflow
        ) as subscription:
            yield subscription

    def statistics(self) -> ManagerStatistics:
        """Return a snapshot of counters and state."""
        c = self._counters
        if self._status is ConnectionStatus.CONNECTED:
            self._budget.settle(trio.current_time())
        return ManagerStatistics(
            status=self._status,
            attempts=c.attempts,
            connections=c.connections,
            reconnects=max(c.connections - 1, 0),
            retries_used=self._budget.retries_used,
            messages_received=c.messages_received,
            alerts_messages=c.alerts_messages,
            telemetry_messages=c.telemetry_messages,
            acks=c.acks,
            server_errors=c.server_errors,
            invalid_messages=c.invalid_messages,
            subscriptions=len(self._ledger.wanted),
        )

    def __repr__(self) -> str:
        return (
            f"<WebSocketManager {redact_url(self._url)!r} status={self._status.value}"
            f" subscriptions={len(self._ledger.wanted)}>"
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
            self._outbox_changed.set()
            try:
                yield subscription
            finally:
                self._ledger.release(key)
                self._outbox_changed.set()

    # --- the connection task ------------------------------------------------

    async def _run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # Shielded: cancelling the code around the manager context must not
        # cut the intentional close short. The context's exit runs
        # _shutdown() (bounded by close_timeout), then cancels this scope.
        with trio.CancelScope(shield=True) as self._run_scope:
            task_status.started()
            await self._run_sessions()

    def _stop(self) -> None:
        """End the connection task wherever it is (after ``_shutdown``)."""
        self._run_scope.cancel()

    async def _run_sessions(self) -> None:
        try:
            while True:
                while not self._wanted:
                    self._wake = trio.Event()
                    await self._wake.wait()
                generation = self._generation
                self._budget.reset()
                gave_up: str | None = None
                with trio.CancelScope() as scope:
                    self._session_scope = scope
                    try:
                        gave_up = await self._session(generation)
                    finally:
                        self._session_scope = None
                if gave_up is not None and generation == self._generation:
                    self._wanted = False
                    self._gave_up = gave_up
                    self._notify()
                elif self._closed_on_purpose:
                    self._closed_on_purpose = False
                    self._publish(
                        ConnectionEvent(
                            ConnectionStatus.DISCONNECTED,
                            code=1000,
                            reason=_CLIENT_CLOSE_REASON,
                        )
                    )
                else:
                    self._publish(ConnectionEvent(ConnectionStatus.DISCONNECTED))
        finally:
            self._closed = True
            self._stopped.set()
            self._notify()  # wake wait_connected() callers in other tasks

    async def _session(self, generation: int) -> str | None:
        """Attempt until disconnected (returns None) or giving up (returns why)."""
        while True:
            failure = await self._attempt()
            if generation != self._generation:
                return None
            if failure is None:
                return _NO_TOKEN_MESSAGE
            self._publish_failure(failure)
            decision = self._budget.on_failure(failure, trio.current_time())
            if decision.delay is None:
                message = decision.give_up_message
                assert message is not None
                logger.warning("giving up: %s", message)
                self._publish(ConnectionEvent(ConnectionStatus.ERROR, message=message))
                return message
            logger.info(
                "reconnecting in %.3g s (retry %d of %d)",
                decision.delay,
                decision.retry_count,
                self._budget.backoff.max_retries,
            )
            self._publish(
                ConnectionEvent(
                    ConnectionStatus.DISCONNECTED,
                    retry_in=decision.delay,
                    retry_count=decision.retry_count,
                )
            )
            await trio.sleep(decision.delay)

    async def _attempt(self) -> ConnectionFailure | None:
        """Make one attempt; return how it ended, or None when there is no token."""
        self._counters.attempts += 1
        # open_timeout bounds the whole attempt: token call and handshake.
        deadline = trio.current_time() + self._open_timeout
        token_or_failure = await self._fetch_token(deadline)
        if isinstance(token_or_failure, ConnectionFailure):
            return token_or_failure
        if not token_or_failure:
            logger.warning("no auth token available; not connecting")
            self._publish(
                ConnectionEvent(ConnectionStatus.ERROR, message=_NO_TOKEN_MESSAGE)
            )
            return None
        target = resolve_target(self._url, token_or_failure, path=self._path)
        encoded = target.resource.rpartition("token=")[2].partition("&")[0]
        self._redact.remember(token_or_failure, encoded)
        self._publish(ConnectionEvent(ConnectionStatus.CONNECTING))
        logger.debug("connecting to %s", target.redacted_url)
        failure = await self._connect_and_serve(target, deadline)
        self._ledger.connection_lost()
        return failure

    def _publish_failure(self, failure: ConnectionFailure) -> None:
        if failure.kind is FailureKind.TOKEN_ERROR:
            return  # published by _fetch_token already
        if failure.kind is FailureKind.CLOSED:
            event = ConnectionEvent(
                ConnectionStatus.DISCONNECTED,
                code=failure.close_code,
                reason=self._redact(failure.reason),
            )
        else:
            # The browser's onerror + onclose pair: an error, then disconnected.
            logger.warning("connection attempt failed: %s", failure.reason)
            self._publish(
                ConnectionEvent(
                    ConnectionStatus.ERROR, message=self._redact(failure.reason)
                )
            )
            event = ConnectionEvent(ConnectionStatus.DISCONNECTED, code=1006)
        self._publish(event)

    async def _fetch_token(self, deadline: float) -> str | ConnectionFailure | None:
        provider = self._token_provider
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
        self._publish(ConnectionEvent(ConnectionStatus.ERROR, message=reason))
        return ConnectionFailure(FailureKind.TOKEN_ERROR, reason=reason)

    async def _connect_and_serve(
        self, target: WebSocketTarget, deadline: float
    ) -> ConnectionFailure:
        ssl_context = self._ssl_context if target.secure else None
        try:
            with trio.fail_at(deadline):
                raw_stream = await self._transport.open_stream(
                    target.host, target.port, ssl_context=ssl_context
                )
        except trio.TooSlowError:
            return ConnectionFailure(
                FailureKind.TIMEOUT, reason="Opening handshake timed out"
            )
        except (OSError, trio.BrokenResourceError) as exc:
            return failure_from_os_error(exc)
        stream = ObservedStream(raw_stream)
        try:
            failure = await self._run_connection(stream, target, deadline)
            if self._protocol_failure is not None:
                await self._fail_connection(stream, self._protocol_failure)
            return failure
        finally:
            self._connection = None
            self._close_requested = None
            await trio.aclose_forcefully(stream)

    async def _fail_connection(self, stream: ObservedStream, code: int) -> None:
        """Tell the server why we fail the connection: a close frame, best effort.

        RFC 6455 7.1.7: an endpoint that fails an established connection
        SHOULD send a close frame with the code. trio-websocket does not, so it
        is sent here, once its tasks are gone and nothing else writes.
        """
        frame = FrameProtocol(client=True, extensions=[]).close(
            code, _PROTOCOL_ERROR_CLOSE_REASON
        )
        with (
            trio.move_on_after(self._close_timeout),
            suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await stream.send_all(frame)

    async def _run_connection(
        self, stream: ObservedStream, target: WebSocketTarget, deadline: float
    ) -> ConnectionFailure:
        result: list[ConnectionFailure] = []
        opened: list[trio_websocket.WebSocketConnection] = []
        self._protocol_failure = None
        try:
            async with trio.open_nursery() as nursery:
                connection = await self._handshake(nursery, stream, target, deadline)
                if connection is None:
                    result.append(
                        ConnectionFailure(
                            FailureKind.TIMEOUT, reason="Opening handshake timed out"
                        )
                    )
                else:
                    opened.append(connection)
                    result.append(await self._serve(nursery, connection, stream))
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            if opened:
                result.append(self._failure_while_open(group, opened[0]))
            else:
                result.append(failure_from_group(group))
        return result[0]

    def _failure_while_open(
        self,
        group: BaseExceptionGroup[BaseException],
        connection: trio_websocket.WebSocketConnection,
    ) -> ConnectionFailure:
        """An open connection's tasks raised: how did the connection end?

        trio-websocket's reader task dies with wsproto's LocalProtocolError
        when it answers a ping that arrived after our own close frame (wsproto
        refuses to send in that state). The connection was closing anyway.
        """
        leaves = [
            e for e in leaf_exceptions(group) if not isinstance(e, trio.Cancelled)
        ]
        if not leaves or any(not isinstance(e, FAILURE_PRIORITY) for e in leaves):
            raise group
        closed = connection.closed
        code = closed.code if closed is not None else 1006
        logger.info("connection ended while closing (code=%s)", code)
        self._invalid_log.end_connection(trio.current_time())
        self._server_error_log.end_connection(trio.current_time())
        return ConnectionFailure(
            FailureKind.CLOSED,
            close_code=code,
            reason=closed.reason if closed is not None else None,
        )

    async def _handshake(
        self,
        nursery: trio.Nursery,
        stream: ObservedStream,
        target: WebSocketTarget,
        deadline: float,
    ) -> trio_websocket.WebSocketConnection | None:
        """Run the opening handshake; None if it did not finish by ``deadline``."""
        with trio.CancelScope(deadline=deadline):
            async with trio.open_nursery() as watch:
                watch.start_soon(raise_when_ended, stream)
                connection = await _open_connection(
                    nursery,
                    stream,
                    target.host_header,
                    target.resource,
                    max_message_size=self._max_message_size,
                )
                watch.cancel_scope.cancel()
                return connection
        return None

    async def _serve(
        self,
        nursery: trio.Nursery,
        connection: trio_websocket.WebSocketConnection,
        stream: ObservedStream,
    ) -> ConnectionFailure:
        """Route messages until the connection ends; return how it ended."""
        connected_at = trio.current_time()
        self._counters.connections += 1
        self._budget.on_connected(connected_at)
        self._ledger.connection_opened()
        self._connection = connection
        close_requested = self._close_requested = trio.Event()
        logger.info("connected to %s", _redacted_base(self._url))
        self._publish(ConnectionEvent(ConnectionStatus.CONNECTED))
        heartbeat_failed = trio.Event()
        close_done = trio.Event()
        nursery.start_soon(self._send_subscriptions, connection)
        nursery.start_soon(
            self._close_when_requested, connection, stream, close_requested, close_done
        )
        if self._ping_interval is not None:
            nursery.start_soon(self._heartbeat, connection, stream, heartbeat_failed)
        code, reason = await self._read(connection, stream)
        if close_requested.is_set():
            # Our close frame ended the reading; let the close handshake
            # finish (the server's answer, bounded by close_timeout).
            await close_done.wait()
        if heartbeat_failed.is_set():
            code, reason = 1006, "Heartbeat timeout"
        now = trio.current_time()
        self._invalid_log.end_connection(now)
        self._server_error_log.end_connection(now)
        logger.info(
            "connection closed: code=%s reason=%s", code, short_text(reason or "")
        )
        return ConnectionFailure(
            FailureKind.CLOSED,
            close_code=code,
            reason=reason,
            connected_for=trio.current_time() - connected_at,
        )

    async def _read(
        self, connection: trio_websocket.WebSocketConnection, stream: ObservedStream
    ) -> tuple[int, str | None]:
        route = self._route
        # trio-websocket limits text by characters; the limit is in bytes, and
        # a str of n characters has at most 4n bytes in UTF-8.
        char_limit = self._max_message_size // 4
        routed = connection if isinstance(connection, _RoutingConnection) else None
        if routed is not None:
            # Short text messages are routed in the reader task from now on;
            # this loop gets the rest, in order.
            routed.route_limit = char_limit
            routed.route = route
        try:
            while True:
                message = await connection.get_message()
                if (
                    len(message) > char_limit
                    and _utf8_size(message) > self._max_message_size
                ):
                    self._counters.messages_received += 1
                    self._invalid("message larger than max_message_size")
                    with trio.move_on_after(self._close_timeout):
                        await connection.aclose(1009, _TOO_BIG_REASON)
                    await trio.aclose_forcefully(stream)
                    return 1009, _TOO_BIG_REASON
                route(message)
                if routed is not None:
                    routed.diverted -= 1
        except trio_websocket.ConnectionClosed as exc:
            if exc.reason is None:
                return 1006, None
            code, reason = int(exc.reason.code), exc.reason.reason
            state = wsproto_state(connection)
            if code == 1009 and state is ConnectionState.LOCAL_CLOSING:
                # trio-websocket's own limit (in characters) closed it.
                self._counters.messages_received += 1
                self._invalid("message larger than max_message_size")
                return 1009, _TOO_BIG_REASON
            if code != 1006 and state is ConnectionState.OPEN:
                # No close frame came: wsproto failed a frame that broke the
                # protocol (1002, or 1007 for invalid UTF-8) and reports the
                # code it would close with. The text is wsproto's, not the
                # server's.
                logger.warning(
                    "the server broke the WebSocket protocol (%s): %s",
                    code,
                    short_text(reason or ""),
                )
                self._protocol_failure = code
                return code, f"Protocol error: {reason or code}"
            return code, reason

    def _route(self, message: str | bytes) -> None:
        counters = self._counters
        counters.messages_received += 1
        if isinstance(message, bytes):
            self._invalid("binary frame")
            return
        try:
            decoded = decode_server_message(message)
        except ProtocolError as exc:
            self._invalid(exc.reason)
            return
        kind = type(decoded)
        if kind is TelemetryMessage:
            assert isinstance(decoded, TelemetryMessage)
            if not decoded.device_id:
                self._invalid("telemetry without a device_id")
                return
            counters.telemetry_messages += 1
            self.bus.publish(_TELEMETRY_PREFIX + decoded.device_id, decoded.telemetry)
        elif kind is AlertsMessage:
            assert isinstance(decoded, AlertsMessage)
            counters.alerts_messages += 1
            self.bus.publish(ALERTS_TOPIC, decoded.alerts)
        elif kind is ErrorMessage:
            assert isinstance(decoded, ErrorMessage)
            counters.server_errors += 1
            self._server_error_log.log(trio.current_time(), decoded.message)
            self.bus.publish(ERROR_TOPIC, decoded.message)
        elif isinstance(decoded, (SubscribedMessage, UnsubscribedMessage)):
            counters.acks += 1

    def _invalid(self, reason: str) -> None:
        self._counters.invalid_messages += 1
        self._invalid_log.log(trio.current_time(), reason)

    async def _send_subscriptions(
        self, connection: trio_websocket.WebSocketConnection
    ) -> None:
        """Send what the server lacks: the full replay first, then each change."""
        ledger = self._ledger
        try:
            while True:
                self._outbox_changed = trio.Event()
                for request in ledger.pending():
                    await connection.send_message(encode_client_message(request))
                    ledger.mark_sent(request)
                await self._outbox_changed.wait()
        except (trio_websocket.ConnectionClosed, LocalProtocolError):
            # The connection is closing (a send racing the peer's close frame
            # gets wsproto's LocalProtocolError); the reader reports the end.
            return

    async def _close_when_requested(
        self,
        connection: trio_websocket.WebSocketConnection,
        stream: ObservedStream,
        close_requested: trio.Event,
        close_done: trio.Event,
    ) -> None:
        await close_requested.wait()
        self._closed_on_purpose = True
        try:
            with trio.move_on_after(self._close_timeout):
                await connection.aclose(1000, _CLIENT_CLOSE_REASON)
            await trio.aclose_forcefully(stream)
        finally:
            close_done.set()

    async def _heartbeat(
        self,
        connection: trio_websocket.WebSocketConnection,
        stream: ObservedStream,
        failed: trio.Event,
    ) -> None:
        assert self._ping_interval is not None
        try:
            while True:
                await trio.sleep(self._ping_interval)
                with trio.move_on_after(self._ping_timeout):
                    await connection.ping()
                    continue
                logger.warning(
                    "no pong within %.3g s; dropping the connection", self._ping_timeout
                )
                failed.set()
                # No close handshake with a peer that does not answer.
                await trio.aclose_forcefully(stream)
                return
        except (trio_websocket.ConnectionClosed, LocalProtocolError):
            # Closing: the reader reports how the connection ended.
            return

    # --- state --------------------------------------------------------------

    def _publish(self, event: ConnectionEvent) -> None:
        self._status = event.status
        self.bus.publish(CONNECTION_TOPIC, event)
        self._notify()

    def _notify(self) -> None:
        self._state_changed.set()
        self._state_changed = trio.Event()

    async def _shutdown(self) -> None:
        """Disconnect and wait, bounded, for the connection task to go idle."""
        self.disconnect()
        with trio.move_on_after(self._close_timeout + 1.0):
            while self._session_scope is not None or self._connection is not None:
                await self._state_changed.wait()


_PRIVATE: Final = object()


def _subscription_key(kind: SubscriptionKind, device_id: str | None) -> SubscriptionKey:
    if kind == "alerts":
        if device_id is not None:
            raise ValueError("an 'alerts' subscription takes no device_id")
        return ("alerts", None)
    if kind == "device":
        if not isinstance(device_id, str) or not device_id:
            raise ValueError("a 'device' subscription needs a non-empty device_id")
        return ("device", device_id)
    raise ValueError(f"kind must be 'alerts' or 'device', got {kind!r}")


def _utf8_size(message: str | bytes) -> int:
    if isinstance(message, bytes):
        return len(message)
    return len(message.encode("utf-8", "surrogatepass"))


def _redacted_base(url: str) -> str:
    return redact_url(url)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


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
) -> AsyncIterator[WebSocketManager]:
    """Open a connection manager whose task lives as long as the context.

    On exit the manager disconnects on purpose (close code 1000) and no task
    is left behind.

    Args:
        url: Base URL of the backend: ``http(s)://`` or ``ws(s)://``. An empty
            path becomes ``path``; other query parameters are kept.
        token: The auth token, or a sync or async callable returning it. A
            callable is called before every attempt, so it can refresh.
        bus: The bus to publish to; a new :class:`MessageBus` by default.
        backoff: The retry schedule; ``Backoff()`` (1, 2, 4, 8, 16, 30 s, 20
            retries) by default.
        retry_policy: Classifies each failure as retry, retry now, or give up;
            by default every failure is retried within the budget.
        path: The endpoint path used when ``url`` has none.
        autoconnect: Connect at once; else wait for :meth:`WebSocketManager.connect`.
        ping_interval: Seconds between heartbeat pings; ``None`` disables them
            (then a half-open connection is never noticed).
        ping_timeout: Seconds to wait for a pong before the connection counts
            as lost.
        open_timeout: Seconds one attempt may take, from the token call to the
            end of the opening handshake.
        close_timeout: Seconds an intentional close may take before the
            connection is dropped without the close handshake.
        ssl_context: TLS settings for ``wss:``/``https:`` URLs; a default,
            verifying context when ``None``.
        max_message_size: Largest message accepted, in bytes; a bigger one
            closes the connection with 1009.
        transport: Opens the byte stream of each attempt; TCP by default. The
            in-memory transport of :mod:`trio_ws_bus.testing` plugs in here.

    Raises:
        ValueError: For a URL that can never work (unknown scheme, no host) or
            an out-of-range setting, before anything connects.
    """
    check_base_url(url)
    install_log_filter()
    if not (isinstance(token, str) or callable(token)):
        raise TypeError("token must be a str or a callable returning one")
    for name, value in (
        ("ping_timeout", ping_timeout),
        ("open_timeout", open_timeout),
        ("close_timeout", close_timeout),
    ):
        _check_positive(name, value)
    if ping_interval is not None:
        _check_positive("ping_interval", ping_interval)
    if (
        isinstance(max_message_size, bool)
        or not isinstance(max_message_size, int)
        or (max_message_size < 1)
    ):
        raise ValueError(
            f"max_message_size must be an int >= 1, got {max_message_size!r}"
        )
    probe = resolve_target(url, "x", path=path)
    if probe.secure and ssl_context is None:
        ssl_context = ssl.create_default_context()
    elif not probe.secure and ssl_context is not None:
        raise ValueError("ssl_context given for a ws:/http: URL; use wss:/https:")
    if not probe.secure and not _is_loopback(probe.host):
        logger.warning(
            "connecting to %s without TLS: the token travels in clear text", probe.host
        )
    manager = WebSocketManager(
        _PRIVATE,
        url=url,
        token=token,
        bus=bus if bus is not None else MessageBus(),
        backoff=backoff if backoff is not None else Backoff(),
        retry_policy=retry_policy,
        path=path,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        ssl_context=ssl_context,
        max_message_size=max_message_size,
        transport=transport if transport is not None else TcpTransport(),
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(manager._run)
            if autoconnect:
                manager.connect()
            try:
                yield manager
            finally:
                with trio.CancelScope(shield=True):
                    await manager._shutdown()
                manager._stop()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # One plain exception explains the failure: raise it, not a group.
        leaves = list(leaf_exceptions(group))
        real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
        if len(real) == 1:
            reraise_alone(real[0])
        if not real:
            reraise_alone(leaves[0])
        raise
    finally:
        # Every task is gone: this manager's token stops scrubbing log records.
        manager._redact.close()
    # Leaving the context is a checkpoint, as Trio's own are: a cancellation
    # that came while the shielded close ran is delivered here.
    await trio.lowlevel.checkpoint()
