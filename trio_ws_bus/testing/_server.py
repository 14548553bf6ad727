"""The reference server: the backend side of the protocol, on real trio-websocket."""

from __future__ import annotations

import math
import secrets
import ssl
import time
import urllib.parse
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import attrs
import trio
from trio_websocket import WebSocketRequest, wrap_server_stream

from .._logs import get_logger
from .._util import BaseExceptionGroup, open_nursery_body_as_itself
from ._connection import PEER_GONE, ServerConnection, TokenLocation
from ._memory import MemoryTransport

try:
    import jwt
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "trio_ws_bus.testing needs PyJWT: pip install 'trio-ws-bus[testing]'"
    ) from _exc

__all__ = ["ReferenceServer", "open_reference_server"]

logger = get_logger("trio_ws_bus.testing")

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
"""The only hosts the reference server binds to."""

_HS256_SHORT_KEY_WARNING = "The HMAC key is .* below the minimum recommended length"


@attrs.define(eq=False)
class _Rejection:
    """One scripted handshake rejection (see ``reject_next``)."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]


@attrs.define(eq=False)
class _Waiter:
    """A task in ``wait_until``: woken by the first change where ``predicate`` holds."""

    predicate: Callable[[ReferenceServer], bool]
    event: trio.Event = attrs.field(factory=trio.Event)
    error: Exception | None = None


class _EofWatchingStream(trio.abc.Stream):
    """Forwards to a stream and sets ``ended`` once the peer is gone.

    trio-websocket's server handshake waits forever for a request that never
    comes when the client vanishes first; watching end-of-file lets the server
    give up on that handshake at once.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self.ended = trio.Event()
        self.frozen = False
        # Serialises trio-websocket's writes with write_raw(); taken after the
        # freeze check, so a frozen writer never holds it.
        self._send_lock = trio.Lock()

    def freeze(self) -> None:
        """Stop reading and writing for good: the peer sees a silent server."""
        self.frozen = True

    async def _wait_while_frozen(self) -> None:
        if self.frozen:
            await self.ended.wait()
            raise trio.ClosedResourceError("the stream was closed while frozen")

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Receive from the wrapped stream, noting end-of-file and errors."""
        await self._wait_while_frozen()
        try:
            data = await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.ended.set()
            raise
        if not data:
            self.ended.set()
        # Data that arrived after freeze() is never seen (no pong for it).
        await self._wait_while_frozen()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send to the wrapped stream."""
        await self._wait_while_frozen()
        async with self._send_lock:
            await self._stream.send_all(data)

    async def write_raw(self, data: bytes) -> None:
        """Send ``data`` as is, frozen or not, between trio-websocket's writes."""
        async with self._send_lock:
            await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Forward to the wrapped stream."""
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """Close the wrapped stream."""
        self.ended.set()
        await self._stream.aclose()


class ReferenceServer:
    """A real trio-websocket server speaking the backend side of the protocol.

    Made by :func:`open_reference_server`. It authenticates handshakes with
    HS256 JWTs (:meth:`issue_token`), answers ``subscribe``/``unsubscribe``
    with acks, publishes alerts and telemetry to subscribed connections, and
    records everything tests assert on. Failure injection: :meth:`reject_next`
    (HTTP rejections), :meth:`drop_connections` (abnormal closure),
    :meth:`close_connections` (close handshake with a code), :meth:`send_raw`
    (bad frames), and the in-memory :attr:`transport`'s ``fail_next`` /
    ``stall_next``.

    Handshake rules, in order: a scripted rejection (:meth:`reject_next`) wins;
    then the path must equal ``path`` (else 404); then the token, taken from
    the ``token`` query parameter or an ``Authorization: Bearer <token>``
    header, must be an unexpired HS256 JWT signed with :attr:`secret` (else
    401 with body ``missing token``, ``token expired`` or ``invalid token``).
    A request with a token in both places is refused with 400 ``token in
    query and header``: a client sends it in one place, and the server will
    not guess which one counts. An ``Authorization`` header of another scheme
    than ``Bearer`` is no token. Then the server picks its subprotocol (the
    first one the client proposes that the server offers, or none) and
    accepts. An accepted connection may then be ended at once by
    :meth:`close_next`.

    More misbehaviour: :meth:`send_after_subscribe` (a message after every
    subscribe ack), :meth:`ServerConnection.write_raw` (raw bytes, e.g. broken
    frames from ``encode_frame()``), :meth:`ServerConnection.freeze` (a
    silent peer). ``open_raw_http_server()`` answers handshakes with
    arbitrary bytes instead.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        secret: str,
        path: str,
        subprotocols: Sequence[str] = (),
    ) -> None:
        self._nursery = nursery
        self._secret = secret
        self._path = path
        self._subprotocols = tuple(subprotocols)
        self._host: str | None = None
        self._port: int | None = None
        self._transport = MemoryTransport(
            self._connect_memory, on_attempt=self._changed
        )
        self._closed = False
        self._rejections_script: deque[_Rejection] = deque()
        self._close_script: deque[tuple[int | None, str]] = deque()
        self._after_subscribe: str | bytes | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._extra_tokens: set[str] = set()
        self._tokens_seen: list[str | None] = []
        self._handshakes = 0
        self._rejections = 0
        self._connections: list[ServerConnection] = []
        self._max_concurrent = 0
        self._waiters: list[_Waiter] = []

    # -- addresses ------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """Whether the server listens on a real loopback socket."""
        return self._port is not None

    @property
    def port(self) -> int:
        """The TCP port the server listens on.

        Raises:
            RuntimeError: If the server was opened with ``listen=False``.
        """
        if self._port is None:
            raise RuntimeError("this reference server does not listen on a socket")
        return self._port

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. ``"http://127.0.0.1:54321"``.

        ``https://`` when the server was opened with an ``ssl_context``.

        Raises:
            RuntimeError: If the server was opened with ``listen=False``.
        """
        port = self.port
        host = f"[{self._host}]" if self._host and ":" in self._host else self._host
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{host}:{port}"

    def websocket_url(self, token: str | None = None) -> str:
        """The full ``ws://`` URL of the endpoint, with ``token`` percent-encoded.

        Raises:
            RuntimeError: If the server was opened with ``listen=False``.
        """
        scheme, _, rest = self.url.partition(":")
        url = ("wss" if scheme == "https" else "ws") + ":" + rest + self._path
        if token is not None:
            url += "?" + urllib.parse.urlencode({"token": token})
        return url

    @property
    def path(self) -> str:
        """The endpoint path handshakes must use."""
        return self._path

    @property
    def subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the server supports (see :func:`open_reference_server`)."""
        return self._subprotocols

    @property
    def transport(self) -> MemoryTransport:
        """The in-memory transport to this server (one object per server).

        Works whether or not the server listens; it is the only way in under
        ``MockClock`` tests.
        """
        return self._transport

    # -- authentication ---------------------------------------------------------

    @property
    def secret(self) -> str:
        """The HS256 secret tokens must be signed with."""
        return self._secret

    def issue_token(self, subject: str = "demo", *, expires_in: float = 3600.0) -> str:
        """Make an HS256 JWT this server accepts until it expires.

        Claims: ``sub``, ``iat`` and ``exp``, in wall-clock seconds
        (:func:`time.time`, not Trio's clock: a mock clock does not age tokens).

        Args:
            subject: The ``sub`` claim.
            expires_in: Seconds until ``exp``; zero or negative gives a token
                that is already expired.
        """
        now = time.time()
        claims = {
            "sub": subject,
            "iat": math.floor(now),
            "exp": math.floor(now + expires_in),
        }
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_HS256_SHORT_KEY_WARNING)
            return jwt.encode(claims, self._secret, algorithm="HS256")

    def accept_token(self, token: str) -> None:
        """Also accept ``token`` verbatim, whatever its form.

        For tests of token handling: a token full of characters that need
        percent-encoding (``+ / = & # % space``) is no JWT, but should still
        reach a connection.
        """
        self._extra_tokens.add(token)

    def _token_problem(self, token: str | None) -> bytes | None:
        """Why ``token`` is refused (the 401 body), or ``None`` if it is valid."""
        if not token:
            return b"missing token"
        if token in self._extra_tokens:
            return None
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_HS256_SHORT_KEY_WARNING)
                jwt.decode(
                    token,
                    self._secret,
                    algorithms=["HS256"],
                    options={"require": ["exp", "iat", "sub"]},
                )
        except jwt.ExpiredSignatureError:
            return b"token expired"
        except jwt.InvalidTokenError:
            return b"invalid token"
        return None

    def reject_next(
        self,
        n: int = 1,
        status: int = 503,
        *,
        body: bytes = b"",
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        """Reject the next ``n`` handshakes with an HTTP ``status``, before auth.

        Calls queue up: ``reject_next(1, 503); reject_next(1, 500)`` rejects
        the next handshake with 503 and the one after with 500.

        Args:
            n: How many handshakes to reject.
            status: The HTTP status, 300-599.
            body: The response body (none when empty).
            headers: Extra response headers, e.g. ``[(b"Retry-After", b"5")]``.

        Raises:
            ValueError: If ``n`` is negative or ``status`` is out of range.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        if not 300 <= status <= 599:
            raise ValueError(f"status must be in 300-599, not {status}")
        for _ in range(n):
            self._rejections_script.append(_Rejection(status, body, list(headers)))

    def close_next(self, n: int = 1, code: int | None = None, reason: str = "") -> None:
        """Accept the next ``n`` handshakes, then end each connection at once.

        Models a flapping server (or one that checks the token only after
        accepting). The handshake must pass the usual checks first; scripted
        rejections (:meth:`reject_next`) come before this script.

        Args:
            n: How many accepted connections to end.
            code: Close with this code (a close handshake), or, with
                ``None``, drop the stream without a close frame (1006).
            reason: The close reason, with ``code``.

        Raises:
            ValueError: If ``n`` is negative or ``code`` is not 1000-4999.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        if code is not None and not 1000 <= code <= 4999:
            raise ValueError(f"code must be in 1000-4999, not {code}")
        self._close_script.extend([(code, reason)] * n)

    def send_after_subscribe(self, message: str | bytes | None) -> None:
        """From now on, send ``message`` after acknowledging every ``subscribe``.

        Models a server that sends a snapshot (or, in tests, something
        oversized or broken) to each new subscriber. ``None`` stops it.
        """
        self._after_subscribe = message

    # -- what happened ----------------------------------------------------------

    @property
    def handshakes(self) -> int:
        """How many WebSocket handshake requests reached the server."""
        return self._handshakes

    @property
    def rejections(self) -> int:
        """How many handshakes the server rejected (scripted, 404 or 401)."""
        return self._rejections

    @property
    def tokens_seen(self) -> list[str | None]:
        """The raw token of every handshake, accepted or rejected, in order.

        From the query or the ``Authorization`` header, wherever the client put
        it (the query's when it put it in both). ``None`` stands for a
        handshake without a token.
        """
        return list(self._tokens_seen)

    @property
    def connections(self) -> list[ServerConnection]:
        """The open connections, oldest first."""
        return [conn for conn in self._connections if not conn.closed]

    @property
    def all_connections(self) -> list[ServerConnection]:
        """Every connection ever accepted, open or closed, oldest first."""
        return list(self._connections)

    @property
    def max_concurrent_connections(self) -> int:
        """The largest number of connections that were ever open at once."""
        return self._max_concurrent

    # -- sending ----------------------------------------------------------------

    async def publish_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> int:
        """Send ``{"type": "alerts", "alerts": [...]}`` to alerts subscribers.

        Returns:
            How many connections it was sent to.
        """
        message = {"type": "alerts", "alerts": [dict(alert) for alert in alerts]}
        return await self._send_to("alerts", None, message)

    async def publish_telemetry(
        self,
        device_id: str,
        metrics: Mapping[str, float | int | bool],
        *,
        timestamp: str | None = None,
    ) -> int:
        """Send a ``telemetry`` message to the subscribers of ``device_id``.

        Args:
            device_id: The device; only connections subscribed to
                ``("device", device_id)`` get it.
            metrics: The metric values.
            timestamp: The ISO 8601 timestamp; default: the current UTC time.

        Returns:
            How many connections it was sent to.
        """
        if timestamp is None:
            timestamp = datetime.now(timezone.utc).isoformat()
        message = {
            "type": "telemetry",
            "device_id": device_id,
            "data": {"timestamp": timestamp, "metrics": dict(metrics)},
        }
        return await self._send_to("device", device_id, message)

    async def send_error(self, message: str) -> int:
        """Send ``{"type": "error", "message": message}`` to every open connection.

        Returns:
            How many connections it was sent to.
        """
        sent = 0
        for conn in self.connections:
            sent += await conn.send_json({"type": "error", "message": message})
        return sent

    async def send_raw(self, message: str | bytes) -> int:
        """Send a raw text (``str``) or binary (``bytes``) frame to all connections.

        Returns:
            How many connections it was sent to.
        """
        sent = 0
        for conn in self.connections:
            sent += await conn.send_raw(message)
        return sent

    async def _send_to(
        self, kind: str, device_id: str | None, message: dict[str, Any]
    ) -> int:
        sent = 0
        for conn in self.connections:
            if conn.holds(kind, device_id):
                sent += await conn.send_json(message)
        return sent

    # -- ending connections -----------------------------------------------------

    async def drop_connections(self) -> int:
        """Abruptly close every open connection's stream, with no close frame.

        Clients see an abnormal closure (code 1006). Returns once the server
        has noticed every drop.

        Returns:
            How many connections were dropped.
        """
        conns = self.connections
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(conn.drop)
        return len(conns)

    async def close_connections(self, code: int = 1001, reason: str = "") -> int:
        """Close every open connection with a close handshake and ``code``.

        Returns once every handshake is over (see :meth:`ServerConnection.close`
        for what the client must do).

        Returns:
            How many connections were closed.
        """
        conns = self.connections
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(conn.close, code, reason)
        return len(conns)

    # -- waiting ----------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[ReferenceServer], bool]) -> None:
        """Wait until ``predicate(server)`` holds.

        The predicate is checked now and then synchronously at every state
        change (transport attempt, handshake, rejection, accept, close, client
        message, subscription change), so a state that holds only briefly is
        not missed; it may no longer hold when this returns. Cap the wait with
        :func:`trio.fail_after`.

        Raises:
            Exception: Whatever the predicate raised.
        """
        if predicate(self):
            await trio.lowlevel.checkpoint()
            return
        waiter = _Waiter(predicate)
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        if waiter.error is not None:
            raise waiter.error

    async def wait_subscribed(self, kind: str, device_id: str | None = None) -> None:
        """Wait until an open connection holds ``(kind, device_id)``."""
        await self.wait_until(
            lambda server: any(c.holds(kind, device_id) for c in server.connections)
        )

    async def wait_connections(self, n: int) -> None:
        """Wait until exactly ``n`` connections are open."""
        await self.wait_until(lambda server: len(server.connections) == n)

    async def wait_handshakes(self, n: int) -> None:
        """Wait until at least ``n`` handshakes have reached the server."""
        await self.wait_until(lambda server: server.handshakes >= n)

    def _changed(self) -> None:
        """Record a state change: wake the waiters whose predicate now holds."""
        for waiter in list(self._waiters):
            try:
                ready = waiter.predicate(self)
            except Exception as exc:  # delivered to the waiting task
                waiter.error, ready = exc, True
            if ready:
                self._waiters.remove(waiter)
                waiter.event.set()

    # -- serving ----------------------------------------------------------------

    async def _listen(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> None:
        bind_host = "127.0.0.1" if host == "localhost" else host
        tcp_listeners = await trio.open_tcp_listeners(port, host=bind_host)
        self._host = bind_host
        self._port = tcp_listeners[0].socket.getsockname()[1]
        self._ssl_context = ssl_context
        listeners: list[trio.abc.Listener[Any]] = list(tcp_listeners)
        if ssl_context is not None:
            listeners = [
                trio.SSLListener(listener, ssl_context, https_compatible=True)
                for listener in tcp_listeners
            ]
        await self._nursery.start(trio.serve_listeners, self._serve_stream, listeners)

    def _connect_memory(self, stream: trio.abc.Stream) -> None:
        if self._closed:
            raise ConnectionRefusedError("the reference server is closed")
        self._nursery.start_soon(self._serve_stream, stream)

    async def _serve_stream(self, stream: trio.abc.Stream) -> None:
        """Run one client stream: handshake, then the connection, then close."""
        watched = _EofWatchingStream(stream)
        try:
            async with trio.open_nursery() as nursery:
                try:
                    request = await self._receive_request(nursery, watched)
                    if request is not None:
                        await self._answer(request, watched)
                except PEER_GONE as exc:
                    logger.debug("client went away: %r", exc)
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # trio-websocket's reader task can raise when a client that sent a
            # malformed request has already gone; anything else is a bug.
            if group.split(PEER_GONE)[1] is not None:
                raise
            logger.debug("client went away: %r", group)
        finally:
            await trio.aclose_forcefully(watched)

    @staticmethod
    async def _receive_request(
        nursery: trio.Nursery, stream: _EofWatchingStream
    ) -> WebSocketRequest | None:
        """The client's handshake request, or ``None`` if it vanished first."""
        request: WebSocketRequest | None = None
        async with trio.open_nursery() as watch:

            async def give_up_at_eof() -> None:
                await stream.ended.wait()
                watch.cancel_scope.cancel()

            watch.start_soon(give_up_at_eof)
            request = await wrap_server_stream(nursery, stream)
            watch.cancel_scope.cancel()
        return request

    async def _answer(self, request: WebSocketRequest, stream: trio.abc.Stream) -> None:
        """Accept or reject one handshake; serve the connection if accepted."""
        target = urllib.parse.urlsplit(request.path)
        tokens = urllib.parse.parse_qs(target.query, keep_blank_values=True)
        presented: dict[TokenLocation, str] = {}
        if "token" in tokens:
            presented["query"] = tokens["token"][0]
        bearer = _bearer_token(request.headers)
        if bearer is not None:
            presented["header"] = bearer
        token = next(iter(presented.values()), None)
        self._handshakes += 1
        self._tokens_seen.append(token)
        self._changed()
        if self._rejections_script:
            rejection = self._rejections_script.popleft()
            await self._reject(
                request, rejection.status, rejection.body, rejection.headers
            )
            return
        if target.path != self._path:
            await self._reject(request, 404, b"not found", [])
            return
        if len(presented) > 1:
            await self._reject(request, 400, b"token in query and header", [])
            return
        problem = self._token_problem(token)
        if problem is not None:
            await self._reject(request, 401, problem, [])
            return
        assert isinstance(stream, _EofWatchingStream)
        [token_location] = presented
        conn = ServerConnection(
            connection_id=len(self._connections) + 1,
            token=token,
            token_location=token_location,
            subprotocol=next(
                (p for p in request.proposed_subprotocols if p in self._subprotocols),
                None,
            ),
            request=request,
            stream=stream,
            on_change=self._changed,
            close_at_once=self._close_script.popleft() if self._close_script else None,
            after_subscribe=lambda: self._after_subscribe,
        )
        self._connections.append(conn)
        self._max_concurrent = max(self._max_concurrent, len(self.connections))
        self._changed()
        await conn._run()

    async def _reject(
        self,
        request: WebSocketRequest,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self._rejections += 1
        self._changed()
        await request.reject(status, extra_headers=list(headers), body=body or None)

    async def _aclose(self) -> None:
        self._closed = True
        await self._transport._aclose()

    def __repr__(self) -> str:
        where = self.url if self.listening else "memory"
        return (
            f"<ReferenceServer {where} open={len(self.connections)} "
            f"handshakes={self._handshakes}>"
        )


def _bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else ``None``."""
    for name, value in headers:
        scheme, _, token = value.decode("latin-1").partition(" ")
        if name == b"authorization" and scheme.lower() == "bearer":
            return token.strip()
    return None


def check_host(host: str) -> None:
    """Raise ``ValueError`` unless ``host`` is one of :data:`LOOPBACK_HOSTS`."""
    if host not in LOOPBACK_HOSTS:
        raise ValueError(
            f"the reference server only binds to loopback hosts "
            f"({', '.join(LOOPBACK_HOSTS)}), not {host!r}"
        )


@asynccontextmanager
async def open_reference_server(
    *,
    secret: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    listen: bool = True,
    path: str = "/api/v2/ws",
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
) -> AsyncIterator[ReferenceServer]:
    """Run a reference server for the duration of the ``async with`` block.

    The server owns a nursery; on exit every connection is dropped (clients
    see 1006), the listener is closed, the transport refuses new attempts, and
    no task is left behind. An exception from the block propagates as itself,
    not wrapped in an exception group.

    Args:
        secret: The HS256 secret; default: a random one per server.
        host: The loopback host to listen on (``localhost`` binds 127.0.0.1).
        port: The TCP port; 0 lets the kernel choose (see
            :attr:`ReferenceServer.port`).
        listen: Whether to listen on a real socket. Use ``False`` under a
            ``MockClock`` (``autojump_clock``): only :attr:`ReferenceServer.transport`
            works then, and nothing depends on real time.
        path: The endpoint path handshakes must use.
        ssl_context: A server-side TLS context (e.g. from ``trustme``): the
            socket then speaks TLS and :attr:`ReferenceServer.url` is
            ``https://``. The in-memory transport never uses TLS.
        subprotocols: The subprotocols the server supports. It accepts the
            first one the client proposes that is among them, and a client
            that proposes none of them without a subprotocol.

    Yields:
        The running server.

    Raises:
        ValueError: If ``host`` is not a loopback host, ``secret`` is empty,
            or ``ssl_context`` is given with ``listen=False``.
        TypeError: If ``subprotocols`` is a single string.
    """
    check_host(host)
    if isinstance(subprotocols, str):
        raise TypeError("subprotocols must be a sequence of strings, not one string")
    if secret is None:
        secret = secrets.token_urlsafe(32)
    elif not secret:
        raise ValueError("secret must not be empty")
    if ssl_context is not None and not listen:
        raise ValueError("ssl_context needs listen=True (no TLS in memory)")
    async with open_nursery_body_as_itself() as nursery:
        server = ReferenceServer(
            nursery, secret=secret, path=path, subprotocols=subprotocols
        )
        try:
            if listen:
                await server._listen(host, port, ssl_context)
            yield server
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await server._aclose()
