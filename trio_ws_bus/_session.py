"""The client side of one WebSocket connection, sans-I/O.

Bytes in (:meth:`ClientSession.receive_data`, :meth:`~ClientSession.receive_eof`),
events and bytes out (what those return, and :meth:`~ClientSession.data_to_send`),
the current time passed in. Like websockets' ``events_received()`` and h11's
``next_event()``, the session only says what happened; acting on it (routing a
message, replaying subscriptions) is the caller's job. It holds no router, no
ledger and no callback, and it never imports Trio, so it is tested bytes in,
events and bytes out.

The WebSocket protocol itself is websockets' documented sans-I/O
``ClientProtocol``, the authority for everything but one case: the **fast
path**. While the connection is open and no fragmented message is in
progress, a complete, final, unmasked, uncompressed text frame no larger than
``max_message_size`` is taken straight from the read buffer (about 0.9 us
instead of 4.7 us per telemetry message). To keep websockets' parser in step,
the session finds every frame boundary itself and hands websockets the other
frames in runs: the consecutive frames up to the next one the fast path
takes, as far as they have arrived (one call per read for a compressed
stream). A frame it cannot see the end of yet is handed over as it arrives,
and the session counts how much of it websockets still expects. A text
message that is not UTF-8 is refused once websockets has parsed what came
with it in the same read, as it would have without the fast path. A
Hypothesis property (``tests/test_fast_path.py``) checks that the session
with and without the fast path gives the same events, bytes out and outcome
for any server byte stream cut anywhere.

Rules, by state:

* ``CONNECTING``: the handshake request is queued at construction. The answer
  passes a guard first: an answer that is not HTTP fails at once; one whose
  head passes :data:`HEAD_LIMIT` bytes, or a non-101 answer longer than
  :data:`ANSWER_LIMIT` bytes in all, fails without reading more (its status
  is kept for the retry policy). A valid 101 answer opens the session:
  :class:`Opened` comes before any message that came with it.
* ``OPEN``: a text message is returned as its ``str``, a binary one as its
  ``bytes``; websockets answers pings; pongs and every received byte feed the
  :class:`~trio_ws_bus._heartbeat.Heartbeat`.
* The server's close frame: websockets queues the answer and the session
  finishes at once, so the pump ends TCP as soon as the answer is out (a
  client that waits for the server to drop TCP first only loses time). A
  close frame in the middle of a fragmented message keeps the server's code
  and reason; the abandoned fragments are a :class:`MessageRejected`.
* :meth:`ClientSession.close` (on purpose): our close frame goes out; the
  session finishes when the server's close frame arrives, or
  ``close_timeout`` later.
* A frame we refuse (1002 protocol error, 1007 invalid UTF-8, 1009 too big):
  websockets' ``fail()`` queues a close frame with that code and the session
  finishes (RFC 6455 7.1.7). A refused message (1007, 1009) is a
  :class:`MessageRejected` first, so that it is counted.
* End of input or a broken transport: finished, 1006. A heartbeat timeout:
  finished, 1006 "Heartbeat timeout", and nothing more is sent; the same,
  as 1006 "Write stalled", for a peer that stopped reading (a write that
  did not finish in time).

``FINISHED`` is final; :attr:`ClientSession.outcome` then says how it ended,
and the input that finished it returned :class:`Finished` last.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Iterable
from typing import Final, Literal, TypeAlias

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

from ._failures import ConnectionFailure, FailureKind
from ._heartbeat import Heartbeat, HeartbeatAction
from ._logs import get_logger, short_text
from ._protocol import SubscribeRequest, encode_client_message
from ._retry import parse_retry_after

__all__ = [
    "ANSWER_LIMIT",
    "HEAD_LIMIT",
    "HEARTBEAT_TIMEOUT",
    "WRITE_STALLED",
    "ClientSession",
    "Finished",
    "HandshakeOptions",
    "MessageRejected",
    "Opened",
    "SessionEvent",
    "SessionState",
]

#: The most bytes of a non-101 handshake answer read before giving up on it:
#: a rejection needs a status line, not an 8 MiB body.
ANSWER_LIMIT: Final = 64 * 1024
#: The most bytes of an answer's head (status line and headers).
HEAD_LIMIT: Final = 16 * 1024
_STATUS_LINE_LIMIT: Final = 1024
_CLOSE_ON_PURPOSE: Final = (1000, "Client disconnect")
_HEAD_END: Final = b"\r\n\r\n"
_TOO_BIG: Final = "message larger than max_message_size"
_CUT_SHORT: Final = "fragmented message cut short by a close frame"

#: The reason of a connection dropped because neither a pong nor enough data
#: came within the ping timeout.
HEARTBEAT_TIMEOUT: Final = "Heartbeat timeout"
#: The reason of a connection dropped because a write could not finish within
#: the send timeout: the peer stopped reading. Close code 1006, as a heartbeat
#: timeout: no close frame can go out.
WRITE_STALLED: Final = "Write stalled"

logger = get_logger("trio_ws_bus.session")

Compression = Literal["deflate"] | None


class SessionState(enum.Enum):
    """Where one connection is; ``FINISHED`` is final."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"  # our close frame is out; waiting for the server's
    FINISHED = "finished"


@attrs.frozen
class Opened:
    """The opening handshake succeeded; messages may follow.

    Attributes:
        subprotocol: The subprotocol the server chose, or ``None``.
        compression: ``"deflate"`` if permessage-deflate was negotiated.
    """

    subprotocol: str | None
    compression: Compression


@attrs.frozen
class MessageRejected:
    """A message the wire refused before it could be decoded (counted as invalid).

    Attributes:
        reason: Why: too big, not UTF-8, or cut short by a close frame.
        raw: What had arrived of it (empty when it was never read).
    """

    reason: str
    raw: bytes = attrs.field(default=b"", repr=False)


@attrs.frozen
class Finished:
    """The session is over; always the last event.

    Attributes:
        outcome: How the connection (or the attempt) ended.
    """

    outcome: ConnectionFailure


#: What the session's inputs return: a text message as its ``str``, a binary
#: message as its ``bytes``, or one of the event classes.
SessionEvent: TypeAlias = str | bytes | Opened | MessageRejected | Finished


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
    """Bounds the handshake answer before websockets parses it (see rules).

    It also finds where a 101 answer's head ends (:attr:`head_end`), so that
    the frames sent with it stay with the session, never in websockets' buffer.
    """

    def __init__(self) -> None:
        self.size = 0
        self.status: int | None = None
        self.head_done = False
        self.head_end: int | None = None
        """Where the head ended in the chunk last fed (CRLF CRLF), else None."""
        self._head = bytearray()

    def feed(self, data: bytes | bytearray) -> str | None:
        """Watch ``data``; return why the answer is refused, or ``None``."""
        self.head_end = None
        self.size += len(data)
        if not self.head_done:
            head = self._head
            before = len(head)
            search_from = max(before - 3, 0)
            head += data[: HEAD_LIMIT + 4 - before]
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
            end = head.find(_HEAD_END, search_from)
            if end < 0 and head.find(b"\n\n", search_from) < 0:
                if len(head) > HEAD_LIMIT:
                    return f"answer head longer than {HEAD_LIMIT} bytes"
                return None
            self.head_done = True
            if end >= 0:
                self.head_end = end + len(_HEAD_END) - before
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
        now: The current time.
        max_message_size: Largest message accepted, in bytes (1009 above).
        ping_interval: Seconds between pings; ``None`` for no heartbeat.
        ping_timeout: Seconds a ping may stay unanswered (see the heartbeat).
        close_timeout: Seconds a close we start may wait for the server's.
        logger: websockets' protocol logger for this connection. At DEBUG it
            logs every frame, so the fast path is off then.
        fast_path: Take complete plain text frames straight from the read
            buffer (see the module docs); ``False`` hands every frame to
            websockets.
    """

    def __init__(
        self,
        url: str,
        options: HandshakeOptions,
        *,
        now: float,
        max_message_size: int,
        ping_interval: float | None,
        ping_timeout: float,
        close_timeout: float,
        logger: logging.Logger,
        fast_path: bool = True,
    ) -> None:
        self.state = SessionState.CONNECTING
        self.outcome: ConnectionFailure | None = None
        """How the connection ended, once ``FINISHED``."""
        self.subprotocol: str | None = None
        """The subprotocol the server chose, once open."""
        self.compression: Compression = None
        """``"deflate"`` if permessage-deflate was negotiated, once open."""
        self._close_timeout = close_timeout
        self._max_size = max_message_size
        self._heartbeat = Heartbeat(ping_interval, ping_timeout)
        self._guard: _AnswerGuard | None = _AnswerGuard()
        self._opened_at = now
        self._close_deadline = math.inf
        self._events: list[SessionEvent] = []
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        # The frame splitter (fast path): bytes of an incomplete frame, and how
        # many more bytes websockets expects for a frame it has begun.
        self._fast = fast_path and not logger.isEnabledFor(logging.DEBUG)
        self._partial = bytearray()
        self._owed = 0
        # A text message found not to be UTF-8, refused once websockets has
        # parsed what came with it (see _refuse_text).
        self._bad_text: (
            tuple[UnicodeDecodeError, bytes | bytearray | memoryview] | None
        ) = None
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

    def receive_data(self, data: bytes | bytearray, now: float) -> list[SessionEvent]:
        """Feed bytes received from the network at time ``now``.

        Returns:
            What they completed, in order (nothing once finished).
        """
        if self.state is SessionState.FINISHED:
            return []
        self._heartbeat.on_bytes(len(data))
        frames: bytes | bytearray | memoryview = data
        if self.state is SessionState.CONNECTING:
            frames = self._answer_bytes(data, now)
        if frames:
            self._receive_frames(frames, now)
        return self._take_events()

    def receive_eof(self, now: float) -> list[SessionEvent]:
        """The peer ended the stream (or it broke) at time ``now``.

        Returns:
            What that completed; :class:`Finished` last.
        """
        if self.state is SessionState.FINISHED:
            return []
        if self._partial:  # an incomplete frame: websockets judges it
            partial, self._partial = self._partial, bytearray()
            self._feed_all(partial, now)
        if self.outcome is None:
            self._protocol.receive_eof()
            self._process(now)
        self.connection_lost(now)  # in case websockets still expects more
        return self._take_events()

    # --- time and commands ----------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether the handshake is done and no close has begun."""
        return self.state is SessionState.OPEN

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

    def on_timer(self, now: float) -> list[SessionEvent]:
        """Advance the heartbeat and the close deadline to ``now``.

        Returns:
            :class:`Finished` if the close deadline passed or the peer is gone.
        """
        if self.state is SessionState.CLOSING and now >= self._close_deadline:
            self._finish_closed(*_CLOSE_ON_PURPOSE, now)
        elif self.state in (SessionState.OPEN, SessionState.CLOSING):
            action = self._heartbeat.poll(now)
            if action is HeartbeatAction.PING:
                self._protocol.send_ping(self._heartbeat.payload)
            elif action is HeartbeatAction.TIMEOUT:
                logger.warning("no pong and no data within the ping timeout; dropping")
                self._drop_silently(now, HEARTBEAT_TIMEOUT)
        return self._take_events()

    def send_requests(self, requests: Iterable[SubscribeRequest]) -> None:
        """Queue subscription requests (only while open: check :attr:`is_open`).

        Raises:
            RuntimeError: If the session is not open.
        """
        if self.state is not SessionState.OPEN:
            raise RuntimeError(f"cannot send requests while {self.state.value}")
        send_text = self._protocol.send_text
        for request in requests:
            send_text(encode_client_message(request).encode())

    def close(self, now: float) -> list[SessionEvent]:
        """Close on purpose: 1000 "Client disconnect", bounded by close_timeout.

        Returns:
            :class:`Finished` if there was no connection to close yet.
        """
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
        return self._take_events()

    def connection_lost(self, now: float) -> list[SessionEvent]:
        """The transport broke or was closed under us at time ``now``.

        Returns:
            :class:`Finished`, unless the session had finished already.
        """
        return self._cut(now, None)

    def peer_stalled(self, now: float) -> list[SessionEvent]:
        """A write could not finish in time: the peer stopped reading.

        Returns:
            :class:`Finished`, unless the session had finished already.
        """
        return self._cut(now, WRITE_STALLED)

    # --- bytes out ------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """Take the bytes to write, in order (nothing once finished silently)."""
        return [data for data in self._protocol.data_to_send() if data]

    # --- internals: bytes to websockets or the fast path ------------------------

    def _take_events(self) -> list[SessionEvent]:
        events = self._events
        if events:
            self._events = []
        return events

    def _answer_bytes(
        self, data: bytes | bytearray, now: float
    ) -> bytes | bytearray | memoryview:
        """Feed the handshake answer; return the bytes after a 101 answer's head."""
        guard = self._guard
        assert guard is not None
        refused = guard.feed(data)
        if refused is not None:
            self._refuse_answer(refused, guard.status)
            return b""
        end = guard.head_end
        if end is None or guard.status != 101:
            self._feed(data, now)  # websockets reads a non-101 answer's body
            return b""
        self._feed(data[:end], now)
        return memoryview(data)[end:] if self.state is SessionState.OPEN else b""

    def _receive_frames(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Bytes after the handshake: split into frames while open (fast path)."""
        state = self.state
        if state is SessionState.OPEN:
            self._split(data, now)
        elif state is SessionState.CLOSING:
            if self._partial:  # held back while open
                data, self._partial = self._partial + data, bytearray()
            self._feed_all(data, now)

    def _feed(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Hand bytes to websockets and act on the frames it parsed.

        A text message that is not UTF-8 stops the acting (``_bad_text``); the
        caller refuses it once websockets has seen what came with it.
        """
        self._protocol.receive_data(data if type(data) is bytes else bytes(data))
        self._process(now)

    def _feed_all(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """:meth:`_feed`, then refuse a text message that was not UTF-8."""
        self._feed(data, now)
        if self._bad_text is not None:
            self._refuse_text(b"", now)

    def _split(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Find frame boundaries: take plain text frames, hand the rest over.

        The frames the fast path does not take go to websockets in runs, one
        call per run of consecutive frames (as many as have arrived), so a
        compressed stream costs one call per read, not one per frame.
        """
        owed = self._owed
        if owed:  # the rest of a frame websockets has begun
            self._owed = max(owed - len(data), 0)
            self._feed(data[:owed], now)
            if self._bad_text is not None:
                self._refuse_text(data[owed:], now)
                return
            if self._owed or self.state is not SessionState.OPEN:
                return
            data = data[owed:]
        if self._partial:
            self._partial += data
            data, self._partial = self._partial, bytearray()
        end = len(data)
        max_size = self._max_size
        append = self._events.append
        # The fast path is open while no fragmented message is in progress;
        # only a frame handed to websockets can change that.
        fast = self._fast and self._fragment_opcode is None
        pos = 0
        while (bounds := _frame_bounds(data, pos, end)) is not None:
            start, stop = bounds
            second = data[pos + 1]
            if (
                fast
                and data[pos] == 0x81  # FIN + TEXT, no RSV bit: not compressed
                and second < 0x80  # unmasked
                and stop - start <= max_size
            ):
                if stop > end:
                    break
                payload = data[start:stop]
                try:
                    append(str(payload, "utf-8"))
                except UnicodeDecodeError as exc:
                    self._bad_text = (exc, payload)
                    self._refuse_text(data[pos:], now)
                    return
                pos = stop
                continue
            # Everything else is websockets', a run of frames at a time.
            run_end, self._owed = self._run(data, pos, end)
            self._feed(data[pos:run_end], now)
            if self._bad_text is not None:
                self._refuse_text(data[run_end:], now)
                return
            pos = run_end
            if self._owed or self.state is not SessionState.OPEN:
                return
            fast = self._fast and self._fragment_opcode is None
        if pos < end:
            self._partial = bytearray(data[pos:])

    def _run(
        self, data: bytes | bytearray | memoryview, pos: int, end: int
    ) -> tuple[int, int]:
        """Where the frames for websockets from ``pos`` end, and bytes still owed.

        The run goes on to the first frame the fast path would take (none when
        it is off), or to the end of ``data``; a frame cut by the end is
        handed over as far as it came (the rest owed), one whose header is cut
        waits in ``_partial``.
        """
        fast = self._fast
        max_size = self._max_size
        fragmented = self._fragment_opcode is not None
        first = True
        while (bounds := _frame_bounds(data, pos, end)) is not None:
            start, stop = bounds
            head = data[pos]
            if (
                not first
                and fast
                and not fragmented
                and head == 0x81
                and data[pos + 1] < 0x80
                and stop - start <= max_size
            ):
                return pos, 0
            first = False
            opcode = head & 0x0F
            if opcode in (1, 2):  # TEXT, BINARY: a message begins
                fragmented = not head & 0x80
            elif opcode == 0 and head & 0x80:  # the final continuation
                fragmented = False
            if stop > end:
                return end, stop - end
            pos = stop
        return pos, 0

    def _refuse_text(self, rest: bytes | bytearray | memoryview, now: float) -> None:
        """Refuse a text message that is not UTF-8: 1007, counted.

        websockets first parses ``rest``, what was received after it in the
        same call, as it would have without the fast path (pongs it owes are
        queued), so both paths act the same however the bytes were cut.
        """
        assert self._bad_text is not None
        exc, data = self._bad_text
        self._bad_text = None
        if rest:
            self._protocol.receive_data(bytes(rest))
            self._protocol.events_received()
        why = f"invalid UTF-8 at byte {exc.start}"
        self._events.append(MessageRejected(why, bytes(data)))
        self._protocol.fail(1007, why)
        self._finish_failed(now)

    def _process(self, now: float) -> None:
        protocol = self._protocol
        for event in protocol.events_received():
            if type(event) is Frame:
                self._frame(event, now)
            elif isinstance(event, Response):
                self._answer(event, now)
            if self.state is SessionState.FINISHED or self._bad_text is not None:
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
                self._text(frame.data)
                return
            if opcode is Opcode.BINARY:
                self._events.append(bytes(frame.data))
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
                    self._text(data)
                else:
                    self._events.append(data)
        elif opcode is Opcode.PONG:
            self._heartbeat.on_pong(bytes(frame.data))
        elif opcode is Opcode.CLOSE:
            close = self._protocol.close_rcvd
            assert close is not None
            self._finish_closed(close.code, close.reason, now)

    def _text(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._events.append(str(data, "utf-8"))
        except UnicodeDecodeError as exc:
            self._bad_text = (exc, data)  # refused by the caller (see _feed)

    # --- internals: the handshake answer ----------------------------------------

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
        self._events.append(Opened(self.subprotocol, self.compression))

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

    # --- internals: how it ends ---------------------------------------------------

    def _finish_failed(self, now: float) -> None:
        """We failed the connection (websockets sent the close frame), or it died."""
        protocol = self._protocol
        received = protocol.close_rcvd
        if received is not None:
            # The server's close frame, in the middle of a fragmented message
            # (websockets answers it with 1002): the server's words stand.
            if self._fragment_opcode is not None:
                self._events.append(
                    MessageRejected(_CUT_SHORT, b"".join(self._fragments))
                )
                self._fragment_opcode, self._fragments = None, []
            self._finish_closed(received.code, received.reason, now)
            return
        sent = protocol.close_sent
        if sent is None:
            self._finish_lost(now)
            return
        if sent.code == 1009:
            self._events.append(MessageRejected(_TOO_BIG))
            reason = "Message too big"
        else:
            reason = f"Protocol error: {sent.reason or sent.code}"
            logger.warning(
                "the server broke the WebSocket protocol (%s): %s",
                sent.code,
                short_text(sent.reason),
            )
        self._finish_closed(sent.code, reason, now)

    def _cut(self, now: float, reason: str | None) -> list[SessionEvent]:
        """The connection ended under us: 1006 with ``reason``, unless finished."""
        if self.state is SessionState.CONNECTING:
            self._finish(_closed_during_handshake())
        elif self.state is SessionState.FINISHED:
            pass
        elif reason is None:
            self._finish_lost(now)  # nothing to drop: the transport is gone
        else:
            self._drop_silently(now, reason)
        return self._take_events()

    def _drop_silently(self, now: float, reason: str) -> None:
        """The peer is gone: no close handshake, nothing more is sent."""
        self._protocol.data_to_send()
        self._finish_closed(1006, reason, now)

    def _finish_lost(self, now: float) -> None:
        self._finish_closed(1006, None, now)

    def _finish_closed(self, code: int, reason: str | None, now: float) -> None:
        logger.info(
            "connection closed: code=%s reason=%s",
            code,
            short_text(reason or ""),
            extra={"ws_bus_close_code": code},
        )
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
        self._partial = bytearray()
        self._events.append(Finished(failure))


def _frame_bounds(
    data: bytes | bytearray | memoryview, pos: int, end: int
) -> tuple[int, int] | None:
    """Where the payload of the frame at ``pos`` starts and stops.

    The stop may lie beyond ``end``; ``None`` if the header is not all there.
    """
    if end - pos < 2:
        return None
    second = data[pos + 1]
    length = second & 0x7F
    if length < 126:
        start = pos + 2
    elif length == 126:
        start = pos + 4
        if start > end:
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
    else:
        start = pos + 10
        if start > end:
            return None
        length = int.from_bytes(data[pos + 2 : start], "big")
    if second & 0x80:  # masked (websockets refuses it at the header)
        start += 4
    return start, start + length


def _closed_during_handshake() -> ConnectionFailure:
    return ConnectionFailure(
        FailureKind.UNREACHABLE,
        reason="Connection closed during the opening handshake",
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds the server's ``Retry-After`` asks for (delay or HTTP date)."""
    return None if value is None else parse_retry_after(value)
