"""The client side of one WebSocket connection, sans-I/O.

Bytes in (:meth:`ClientSession.receive_data`, :meth:`~ClientSession.receive_eof`),
bytes out (:meth:`~ClientSession.data_to_send`), the current time passed in;
messages are routed into the bus as they complete. The WebSocket protocol
itself is websockets' documented sans-I/O ``ClientProtocol``; this class adds
what a reconnecting client needs around it. It never imports Trio, so it is
tested bytes in, bytes out.

Rules, by state:

* ``CONNECTING``: the handshake request is queued at construction. The answer
  passes a guard first: an answer that is not HTTP fails at once; one whose
  head passes :data:`HEAD_LIMIT` bytes, or a non-101 answer longer than
  :data:`ANSWER_LIMIT` bytes in all, fails without reading more (its status
  is kept for the retry policy). A valid 101 answer opens the session, and
  ``on_open`` runs before any message that came with it is routed.
* ``OPEN``: text messages go to the :class:`~trio_ws_bus._routing.Router`,
  binary ones are rejected there; websockets answers pings; pongs and every
  received byte feed the :class:`~trio_ws_bus._heartbeat.Heartbeat`.
* The server's close frame: websockets queues the answer and the session
  finishes at once, so the pump ends TCP as soon as the answer is out (a
  client that waits for the server to drop TCP first only loses time).
* :meth:`close` (on purpose): our close frame goes out; the session finishes
  when the server's close frame arrives, or ``close_timeout`` later.
* A frame we refuse (1002 protocol error, 1007 invalid UTF-8, 1009 too big):
  websockets' ``fail()`` queues a close frame with that code and the session
  finishes (RFC 6455 7.1.7).
* End of input or a broken transport: finished, 1006. A heartbeat timeout:
  finished, 1006 "Heartbeat timeout", and nothing more is sent.

``FINISHED`` is final; :attr:`ClientSession.outcome` then says how it ended.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable
from typing import Final, Literal

import attrs
from websockets.client import ClientProtocol
from websockets.exceptions import (
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    NegotiationError,
    SecurityError,
)
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Origin, Subprotocol
from websockets.uri import parse_uri

from ._heartbeat import Heartbeat, HeartbeatAction
from ._logs import get_logger, short_text
from ._protocol import encode_client_message
from ._reconnect import (
    ConnectionFailure,
    FailureKind,
    SubscriptionLedger,
    parse_retry_after,
)
from ._routing import Router

__all__ = [
    "ANSWER_LIMIT",
    "HEAD_LIMIT",
    "ClientSession",
    "HandshakeOptions",
    "SessionState",
]

#: The most bytes of a non-101 handshake answer read before giving up on it:
#: a rejection needs a status line, not an 8 MiB body.
ANSWER_LIMIT: Final = 64 * 1024
#: The most bytes of an answer's head (status line and headers).
HEAD_LIMIT: Final = 16 * 1024
_STATUS_LINE_LIMIT: Final = 1024
_CLOSE_ON_PURPOSE: Final = (1000, "Client disconnect")

logger = get_logger("trio_ws_bus.connection")

Compression = Literal["deflate"] | None


class SessionState(enum.Enum):
    """Where one connection is; ``FINISHED`` is final."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"  # our close frame is out; waiting for the server's
    FINISHED = "finished"


@attrs.frozen
class HandshakeOptions:
    """What the opening handshake offers and sends besides the URL.

    Attributes:
        headers: Extra request headers, in order.
        user_agent: The ``User-Agent`` header, or ``None`` for none.
        origin: The ``Origin`` header, or ``None``.
        subprotocols: Subprotocols offered, in order of preference.
        compression: ``"deflate"`` offers permessage-deflate; ``None`` offers
            no extension.
        bearer_token: Sent as ``Authorization: Bearer <token>`` when set
            (``token_location="header"``). Never shown in a repr.
    """

    headers: tuple[tuple[str, str], ...] = ()
    user_agent: str | None = None
    origin: str | None = None
    subprotocols: tuple[str, ...] = ()
    compression: Compression = "deflate"
    bearer_token: str | None = attrs.field(default=None, repr=False)


class _AnswerGuard:
    """Bounds the handshake answer before websockets parses it (see rules)."""

    def __init__(self) -> None:
        self.size = 0
        self.status: int | None = None
        self.head_done = False
        self._head = bytearray()

    def feed(self, data: bytes | bytearray) -> str | None:
        """Watch ``data``; return why the answer is refused, or ``None``."""
        self.size += len(data)
        if not self.head_done:
            head = self._head
            search_from = max(len(head) - 3, 0)
            head += data[: HEAD_LIMIT + 4 - len(head)]
            if not head.startswith(b"HTTP/"[: len(head)]):
                return "answer is not HTTP"
            if self.status is None:
                # "HTTP/1.1 401 " or a whole line is enough to know the status.
                first = bytes(head[:_STATUS_LINE_LIMIT]).split(b"\n", 1)
                parts = first[0].split(b" ", 2)
                if len(first) > 1 or len(parts) > 2:
                    code = parts[1].strip() if len(parts) > 1 else b""
                    if len(code) != 3 or not code.isdigit():
                        return "answer is not HTTP"
                    self.status = int(code)
                elif len(head) > _STATUS_LINE_LIMIT:
                    return "answer is not HTTP"
            if (
                head.find(b"\r\n\r\n", search_from) < 0
                and head.find(b"\n\n", search_from) < 0
            ):
                if len(head) > HEAD_LIMIT:
                    return f"answer head longer than {HEAD_LIMIT} bytes"
                return None
            self.head_done = True
            self._head = bytearray()
        if self.status != 101 and self.size > ANSWER_LIMIT:
            return f"answer longer than {ANSWER_LIMIT} bytes"
        return None


class ClientSession:
    """One connection attempt and, if it opens, the connection (see rules).

    Args:
        url: The ``ws:``/``wss:`` URL of this attempt (token included when it
            travels in the query).
        options: What the handshake offers and sends.
        router: Decodes and publishes each complete message.
        ledger: The manager's subscriptions; :meth:`flush_subscriptions`
            sends what the server lacks.
        on_open: Called once, when the handshake succeeds.
        now: The current time.
        max_message_size: Largest message accepted, in bytes (1009 above).
        ping_interval: Seconds between pings; ``None`` for no heartbeat.
        ping_timeout: Seconds a ping may stay unanswered (see the heartbeat).
        close_timeout: Seconds a close we start may wait for the server's.
        logger: websockets' protocol logger for this connection.
    """

    def __init__(
        self,
        url: str,
        options: HandshakeOptions,
        *,
        router: Router,
        ledger: SubscriptionLedger,
        on_open: Callable[[], None],
        now: float,
        max_message_size: int,
        ping_interval: float | None,
        ping_timeout: float,
        close_timeout: float,
        logger: logging.Logger,
    ) -> None:
        self.state = SessionState.CONNECTING
        self.outcome: ConnectionFailure | None = None
        """How the connection ended, once ``FINISHED``."""
        self.subprotocol: str | None = None
        """The subprotocol the server chose, once open."""
        self.compression: Compression = None
        """``"deflate"`` if permessage-deflate was negotiated, once open."""
        self._router = router
        self._ledger = ledger
        self._on_open = on_open
        self._close_timeout = close_timeout
        self._heartbeat = Heartbeat(ping_interval, ping_timeout)
        self._guard: _AnswerGuard | None = _AnswerGuard()
        self._opened_at = now
        self._close_deadline = math.inf
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        self._protocol = ClientProtocol(
            parse_uri(url),
            origin=None if options.origin is None else Origin(options.origin),
            extensions=(
                [ClientPerMessageDeflateFactory(compress_settings={"memLevel": 5})]
                if options.compression == "deflate"
                else None
            ),
            subprotocols=[Subprotocol(s) for s in options.subprotocols] or None,
            max_size=max_message_size,
            logger=logger,
        )
        request = self._protocol.connect()
        if options.user_agent is not None:
            request.headers["User-Agent"] = options.user_agent
        if options.bearer_token is not None:
            request.headers["Authorization"] = f"Bearer {options.bearer_token}"
        for name, value in options.headers:
            request.headers[name] = value
        self._protocol.send_request(request)

    # --- bytes in -------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray, now: float) -> None:
        """Feed bytes received from the network at time ``now``."""
        if self.state is SessionState.FINISHED:
            return
        guard = self._guard
        if guard is not None:
            refused = guard.feed(data)
            if refused is not None:
                self._refuse_answer(refused, guard.status)
                return
        self._heartbeat.on_bytes(len(data))
        self._protocol.receive_data(data)
        self._process(now)

    def receive_eof(self, now: float) -> None:
        """The peer ended the stream (or it broke) at time ``now``."""
        if self.state is SessionState.FINISHED:
            return
        self._protocol.receive_eof()
        self._process(now)
        self.connection_lost(now)  # in case websockets still expects more

    # --- time and commands ----------------------------------------------------

    def deadline(self) -> float:
        """When :meth:`on_timer` next has work (``inf`` for never)."""
        if self.state is SessionState.OPEN:
            return self._heartbeat.deadline()
        if self.state is SessionState.CLOSING:
            return min(self._heartbeat.deadline(), self.close_deadline)
        return math.inf

    @property
    def close_deadline(self) -> float:
        """When a close we started gives up on the server (``inf`` if none)."""
        return self._close_deadline

    def on_timer(self, now: float) -> None:
        """Advance the heartbeat and the close deadline to ``now``."""
        if self.state is SessionState.CLOSING and now >= self._close_deadline:
            self._finish_closed(*_CLOSE_ON_PURPOSE, now)
            return
        if self.state not in (SessionState.OPEN, SessionState.CLOSING):
            return
        action = self._heartbeat.poll(now)
        if action is HeartbeatAction.PING:
            self._protocol.send_ping(self._heartbeat.payload)
        elif action is HeartbeatAction.TIMEOUT:
            logger.warning("no pong and no data within the ping timeout; dropping")
            self._protocol.data_to_send()  # no close handshake with a silent peer
            self._finish_closed(1006, "Heartbeat timeout", now)

    def flush_subscriptions(self) -> None:
        """Queue what makes the server's subscriptions equal to the ledger's."""
        if self.state is not SessionState.OPEN:
            return
        for request in self._ledger.pending():
            self._protocol.send_text(encode_client_message(request).encode())
            self._ledger.mark_sent(request)

    def close(self, now: float) -> None:
        """Close on purpose: 1000 "Client disconnect", bounded by close_timeout."""
        if self.state is SessionState.OPEN:
            self._protocol.send_close(*_CLOSE_ON_PURPOSE)
            self.state = SessionState.CLOSING
            self._close_deadline = now + self._close_timeout
        elif self.state is SessionState.CONNECTING:
            self._finish(
                ConnectionFailure(
                    FailureKind.CLOSED,
                    close_code=_CLOSE_ON_PURPOSE[0],
                    reason=_CLOSE_ON_PURPOSE[1],
                )
            )

    def connection_lost(self, now: float) -> None:
        """The transport broke or was closed under us at time ``now``."""
        if self.state is SessionState.CONNECTING:
            self._finish(_closed_during_handshake())
        elif self.state is not SessionState.FINISHED:
            self._finish_lost(now)

    def peer_stalled(self, now: float) -> None:
        """A write could not finish in time: the peer stopped reading."""
        if self.state is SessionState.CONNECTING:
            self._finish(_closed_during_handshake())
        elif self.state is not SessionState.FINISHED:
            self._protocol.data_to_send()
            self._finish_closed(1006, "Heartbeat timeout", now)

    # --- bytes out ------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """Take the bytes to write, in order (nothing once finished silently)."""
        return [data for data in self._protocol.data_to_send() if data]

    # --- internals ------------------------------------------------------------

    def _process(self, now: float) -> None:
        protocol = self._protocol
        for event in protocol.events_received():
            if type(event) is Frame:
                self._frame(event, now)
            elif isinstance(event, Response):
                self._answer(event, now)
            if self.state is SessionState.FINISHED:
                return
        if self.state is SessionState.CONNECTING:
            if protocol.handshake_exc is not None:
                self._refuse_handshake(protocol.handshake_exc)
        elif self.state is SessionState.CLOSING:
            if protocol.state is State.CLOSED:  # dropped before answering
                self._finish_closed(*_CLOSE_ON_PURPOSE, now)
        elif protocol.close_sent is not None or protocol.state is State.CLOSED:
            self._finish_failed(now)

    def _frame(self, frame: Frame, now: float) -> None:
        opcode = frame.opcode
        if frame.fin and self._fragment_opcode is None:
            if opcode is Opcode.TEXT:
                self._text(frame.data, now)
                return
            if opcode is Opcode.BINARY:
                self._router.binary(bytes(frame.data), now)
                return
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self._fragment_opcode = opcode
            self._fragments = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self._fragments)
                first, self._fragment_opcode = self._fragment_opcode, None
                self._fragments = []
                if first is Opcode.TEXT:
                    self._text(data, now)
                else:
                    self._router.binary(data, now)
        elif opcode is Opcode.PONG:
            self._heartbeat.on_pong(bytes(frame.data))
        elif opcode is Opcode.CLOSE:
            close = self._protocol.close_rcvd
            assert close is not None
            self._finish_closed(close.code, close.reason, now)

    def _text(self, data: bytes | bytearray | memoryview, now: float) -> None:
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError as exc:
            self._protocol.fail(1007, f"invalid UTF-8 at byte {exc.start}")
            self._finish_failed(now)
            return
        self._router.text(text, now)

    def _answer(self, response: Response, now: float) -> None:
        protocol = self._protocol
        if protocol.handshake_exc is not None:
            self._refuse_handshake(protocol.handshake_exc)
            return
        self._guard = None
        self.state = SessionState.OPEN
        self.subprotocol = protocol.subprotocol
        self.compression = "deflate" if protocol.extensions else None
        self._opened_at = now
        self._heartbeat.start(now)
        self._on_open()

    def _refuse_handshake(self, exc: Exception) -> None:
        if isinstance(exc, InvalidStatus):
            response = exc.response
            status = response.status_code
            self._finish(
                ConnectionFailure(
                    FailureKind.REJECTED,
                    status_code=status,
                    reason=f"Handshake rejected with HTTP {status}",
                    retry_after=_retry_after(response.headers.get("Retry-After")),
                )
            )
            return
        if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError):
            self._finish(_closed_during_handshake())
            return
        guard = self._guard
        too_long = isinstance(exc, SecurityError) or isinstance(
            exc.__cause__, SecurityError
        )
        if too_long and guard is not None:
            # websockets' own bounds (line length, header count, body size).
            why = (
                f"answer longer than {ANSWER_LIMIT} bytes"
                if guard.head_done
                else f"answer head longer than {HEAD_LIMIT} bytes"
            )
        elif isinstance(exc, InvalidHeader):
            why = "not a WebSocket upgrade"
        elif isinstance(exc, NegotiationError):
            why = "extension or subprotocol negotiation failed"
        else:
            why = "answer is not HTTP"
        self._refuse_answer(why, guard.status if guard is not None else None)

    def _refuse_answer(self, why: str, status: int | None) -> None:
        if status is not None and status != 101:
            failure = ConnectionFailure(
                FailureKind.REJECTED,
                status_code=status,
                reason=f"Handshake rejected with HTTP {status} ({why}, not read)",
            )
        else:
            failure = ConnectionFailure(
                FailureKind.PROTOCOL_ERROR, reason=f"Invalid handshake answer: {why}"
            )
        self._finish(failure)

    def _finish_failed(self, now: float) -> None:
        """We failed the connection (websockets sent the close frame), or it died."""
        protocol = self._protocol
        sent = protocol.close_sent
        if sent is None or protocol.close_rcvd is not None:
            self._finish_lost(now)
            return
        if sent.code == 1009:
            self._router.too_big(now)
            reason = "Message too big"
        else:
            reason = f"Protocol error: {sent.reason or sent.code}"
            logger.warning(
                "the server broke the WebSocket protocol (%s): %s",
                sent.code,
                short_text(sent.reason),
            )
        self._finish_closed(sent.code, reason, now)

    def _finish_lost(self, now: float) -> None:
        self._finish_closed(1006, None, now)

    def _finish_closed(self, code: int, reason: str | None, now: float) -> None:
        logger.info(
            "connection closed: code=%s reason=%s",
            code,
            short_text(reason or ""),
            extra={"ws_bus_close_code": code},
        )
        self._router.end_connection(now)
        self._finish(
            ConnectionFailure(
                FailureKind.CLOSED,
                close_code=code,
                reason=reason,
                connected_for=now - self._opened_at,
            )
        )

    def _finish(self, failure: ConnectionFailure) -> None:
        self.state = SessionState.FINISHED
        self.outcome = failure


def _closed_during_handshake() -> ConnectionFailure:
    return ConnectionFailure(
        FailureKind.UNREACHABLE,
        reason="Connection closed during the opening handshake",
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds the server's ``Retry-After`` asks for (delay or HTTP date)."""
    return None if value is None else parse_retry_after(value)
