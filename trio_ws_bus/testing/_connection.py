"""One accepted connection on the reference server, and the client-message rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest
from wsproto.utilities import LocalProtocolError

from .._logs import get_logger
from .._protocol import SubscriptionKey

__all__ = ["PEER_GONE", "ServerConnection", "SubscriptionKey", "TokenLocation"]

logger = get_logger("trio_ws_bus.testing")


# What a send or receive raises when the peer vanished or the connection is
# closing. trio-websocket raises ConnectionClosed in most cases, but a send that
# races with the peer's close frame gets wsproto's LocalProtocolError.
PEER_GONE = (
    ConnectionClosed,
    LocalProtocolError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)

TokenLocation = Literal["query", "header"]
"""Where a client put its token: the ``token`` query parameter or a bearer header."""

_ACKS = {"subscribe": "subscribed", "unsubscribe": "unsubscribed"}


class ServerConnection:
    """The server's side of one accepted WebSocket connection.

    Made by the reference server; tests read its state and may close, drop or
    send to it. Lists returned by properties are copies.

    Lifecycle rules: the connection is registered (and counted as open) when
    the server decides to accept, before the accept response is sent, so a
    client that sees its handshake succeed also sees the connection here. One
    server task (``_run``) accepts, then reads every client message, applies it
    and acknowledges it; the state change is made before the ack is sent.
    Other tasks may send concurrently (trio-websocket serializes frames).
    :meth:`close` and :meth:`drop` act from the caller's task and then wait for
    ``_run`` to finish, so when they return :attr:`closed` is true and
    :attr:`close_code` is final.
    """

    def __init__(
        self,
        *,
        connection_id: int,
        token: str | None,
        token_location: TokenLocation,
        subprotocol: str | None,
        request: WebSocketRequest,
        stream: trio.abc.Stream,
        on_change: Callable[[], None],
        close_at_once: tuple[int | None, str] | None = None,
        after_subscribe: Callable[[], str | bytes | None] = lambda: None,
    ) -> None:
        self._id = connection_id
        self._token = token
        self._token_location: TokenLocation = token_location
        self._subprotocol = subprotocol
        self._request = request
        self._ws: WebSocketConnection | None = None
        self._accepted = trio.Event()  # set once accept() is over, even if it failed
        self._stream = stream
        self._on_change = on_change
        self._close_at_once = close_at_once
        self._after_subscribe = after_subscribe
        self._subscriptions: list[SubscriptionKey] = []
        self._received: list[str | bytes] = []
        self._sent: list[str | bytes] = []
        self._closed = False
        self._close_code: int | None = None
        self._close_reason: str | None = None
        # Set by close(): the code we sent, and when our close handshake ended.
        self._closing_code: int | None = None
        self._closing_reason: str | None = None
        self._close_sent = trio.Event()
        self._dropped = False
        self._done = trio.Event()

    @property
    def id(self) -> int:
        """The connection's number on its server: 1, 2, ... in accept order."""
        return self._id

    @property
    def token(self) -> str | None:
        """The raw token the client presented in its handshake."""
        return self._token

    @property
    def token_location(self) -> TokenLocation:
        """Where the client put its token: ``"query"`` or ``"header"``."""
        return self._token_location

    @property
    def request_target(self) -> str:
        """The target of the handshake's request line: path and query, as sent."""
        return self._request.path

    @property
    def request_headers(self) -> list[tuple[str, str]]:
        """The handshake request's headers, in order, names in lower case.

        Without ``Host``, ``Sec-WebSocket-Extensions`` and
        ``Sec-WebSocket-Protocol``, which the WebSocket layer consumes (see
        :attr:`offered_subprotocols`). Values are decoded as Latin-1.
        """
        return [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in self._request.headers
        ]

    @property
    def offered_subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the client proposed, in its order of preference."""
        return self._request.proposed_subprotocols

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server accepted, or ``None`` for none."""
        return self._subprotocol

    @property
    def subscriptions(self) -> list[SubscriptionKey]:
        """The subscriptions the server holds, in subscribe order, no duplicates."""
        return list(self._subscriptions)

    @property
    def received(self) -> list[str | bytes]:
        """Every message the client sent (text as ``str``, binary as ``bytes``)."""
        return list(self._received)

    @property
    def sent(self) -> list[str | bytes]:
        """Every message the server sent on this connection, in wire order."""
        return list(self._sent)

    @property
    def closed(self) -> bool:
        """Whether the connection is over (closed, dropped, or the server exited)."""
        return self._closed

    @property
    def close_code(self) -> int | None:
        """How it ended, once :attr:`closed`.

        The close code of the side that closed first, or 1006 when the stream
        vanished without a close frame (a drop, or the server exiting).
        """
        return self._close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason that went with :attr:`close_code`, if any."""
        return self._close_reason

    def holds(self, kind: str, device_id: str | None = None) -> bool:
        """Whether the server holds the subscription ``(kind, device_id)``."""
        return (kind, device_id) in self._subscriptions

    async def send_raw(self, message: str | bytes) -> bool:
        """Send one text (``str``) or binary (``bytes``) frame as is.

        Returns:
            Whether it was sent: ``False`` when the connection is closed or
            closing (never raises for that).
        """
        await self._accepted.wait()
        if self._closed or self._ws is None:
            return False
        try:
            await self._ws.send_message(message)
        except PEER_GONE as exc:
            logger.debug("connection %d: send failed: %r", self._id, exc)
            return False
        self._sent.append(message)
        return True

    async def write_raw(self, data: bytes) -> bool:
        """Write ``data`` to the connection's stream as is, bypassing WebSocket framing.

        For frames that break the protocol (see ``encode_frame()``) or a
        message split over several frames. Works while frozen too (a frozen
        server that suddenly sends). Writes never interleave with the
        server's own frames.

        Returns:
            Whether it was written: ``False`` when the stream is gone.

        Raises:
            TypeError: If this connection's stream cannot write raw bytes.
        """
        write = getattr(self._stream, "write_raw", None)
        if write is None:
            raise TypeError("this connection's stream cannot write raw bytes")
        await self._accepted.wait()
        if self._closed:
            return False
        try:
            await write(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("connection %d: raw write failed: %r", self._id, exc)
            return False
        return True

    async def send_json(self, message: dict[str, Any]) -> bool:
        """Send ``message`` as a compact JSON text frame; see :meth:`send_raw`."""
        return await self.send_raw(json.dumps(message, separators=(",", ":")))

    async def close(self, code: int = 1001, reason: str = "") -> None:
        """Close with a proper close handshake and wait until it is over.

        The client must answer the close frame: a trio-websocket client does so
        from its reader task, but only while that task is not blocked handing
        an earlier message to an application that stopped reading.

        Args:
            code: The close code the client will see.
            reason: The close reason the client will see.
        """
        await self._accepted.wait()
        ws = self._ws
        # Only start a close handshake if nobody (us or the peer) started one.
        if ws is not None and ws.closed is None and self._closing_code is None:
            self._closing_code, self._closing_reason = code, reason
            async with trio.open_nursery() as nursery:
                # trio-websocket's reader can die mid-handshake (it answers a
                # ping that raced our close frame, which wsproto refuses); its
                # close handshake then never completes, but _run still ends.
                nursery.start_soon(_cancel_when_set, self._done, nursery.cancel_scope)
                try:
                    await ws.aclose(code, reason)
                finally:
                    self._close_sent.set()
                    nursery.cancel_scope.cancel()
        await self._done.wait()

    def freeze(self) -> None:
        """Go silent: stop reading, answering pings and sending, without closing.

        Models a half-open connection (a peer that vanished without a FIN): the
        client only notices through its heartbeat. :meth:`drop` ends it.

        Raises:
            TypeError: If this connection's stream cannot be frozen.
        """
        freeze = getattr(self._stream, "freeze", None)
        if freeze is None:
            raise TypeError("this connection's stream cannot be frozen")
        freeze()

    async def drop(self) -> None:
        """Close the underlying stream abruptly, without a close frame.

        The client sees an abnormal closure (code 1006). Returns once the
        server has noticed, with :attr:`close_code` 1006.
        """
        if not self._closed:
            self._dropped = True
            await trio.aclose_forcefully(self._stream)
        await self._done.wait()

    async def _run(self) -> None:
        """Accept, then read, apply and acknowledge messages until the end."""
        try:
            try:
                ws = self._ws = await self._request.accept(
                    subprotocol=self._subprotocol
                )
            finally:
                self._accepted.set()
            if self._close_at_once is not None:
                await self._end_at_once(ws, *self._close_at_once)
            try:
                while True:
                    message = await ws.get_message()
                    self._received.append(message)
                    try:
                        reply = self._apply(message)
                        await self.send_json(reply)
                    finally:
                        self._on_change()
                    extra = self._after_subscribe()
                    if extra is not None and reply["type"] == "subscribed":
                        await self.send_raw(extra)
            except ConnectionClosed:
                pass
            if self._closing_code is not None:
                await self._close_sent.wait()
        finally:
            self._finish()

    async def _end_at_once(
        self, ws: WebSocketConnection, code: int | None, reason: str
    ) -> None:
        """End a just-accepted connection (see ``ReferenceServer.close_next``)."""
        if code is None:
            self._dropped = True
            await trio.aclose_forcefully(self._stream)
            return
        self._closing_code, self._closing_reason = code, reason
        try:
            await ws.aclose(code, reason)
        finally:
            self._close_sent.set()

    def _finish(self) -> None:
        reason = None if self._ws is None else self._ws.closed
        if self._dropped or (reason is None and self._closing_code is None):
            self._close_code, self._close_reason = 1006, None
        elif self._closing_code is not None:
            # trio-websocket reports 1000 locally until the peer echoes our
            # close frame; record what we sent instead.
            self._close_code = self._closing_code
            self._close_reason = self._closing_reason or None
        elif reason is not None:
            self._close_code, self._close_reason = reason.code, reason.reason
        self._closed = True
        self._done.set()
        logger.debug("connection %d closed (%s)", self._id, self._close_code)
        self._on_change()

    def _apply(self, message: str | bytes) -> dict[str, Any]:
        """Apply one client message to the subscriptions; return the reply."""
        if isinstance(message, bytes):
            return _error("binary frames are not supported")
        try:
            data = json.loads(message)
        except ValueError:
            return _error("invalid JSON")
        if not isinstance(data, dict):
            return _error("expected a JSON object")
        action, kind = data.get("action"), data.get("type")
        if action not in _ACKS:
            return _error("unknown action")
        device_id = data.get("device_id")
        if kind == "alerts":
            key: SubscriptionKey = ("alerts", None)
        elif kind == "device":
            if not isinstance(device_id, str) or not device_id:
                return _error("device subscription needs a device_id")
            key = ("device", device_id)
        else:
            return _error("unknown subscription type")
        if action == "subscribe" and key not in self._subscriptions:
            self._subscriptions.append(key)
        elif action == "unsubscribe" and key in self._subscriptions:
            self._subscriptions.remove(key)
        ack: dict[str, Any] = {"type": _ACKS[action], "channel": kind}
        if key[1] is not None:
            ack["device_id"] = key[1]
        return ack

    def __repr__(self) -> str:
        state = f"closed={self._close_code}" if self._closed else "open"
        return (
            f"<ServerConnection id={self._id} {state} "
            f"subscriptions={self._subscriptions!r}>"
        )


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def _error(message: str) -> dict[str, Any]:
    return {"type": "error", "message": message}
