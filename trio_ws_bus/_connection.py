"""The pump: moves bytes between a Trio stream and a :class:`ClientSession`.

Two tasks per connection, and nothing else touches the stream:

* the **reader** receives up to :data:`RECEIVE_SIZE` bytes at a time, feeds
  them to the session, queues what the session wants sent in answer (pongs,
  the echo of a close frame) for the writer, then routes the events the
  session returned, in this task: each message is decoded and published
  synchronously (no channel hop). When a subscription passes its high-water
  mark, the reader gives subscribers a turn (:meth:`MessageBus.drain
  <trio_ws_bus.MessageBus.drain>`, at most ``subscriber_wait`` seconds) before
  it routes more or reads more, so TCP slows the server down instead of the
  bus dropping messages. It does not read while the outbox holds more than
  :data:`OUTBOX_LIMIT` bytes (a peer that floods pings but never reads cannot
  grow it without bound);
* the **writer** sends the outbox, the handshake request, subscription
  changes (:data:`REPLAY_SLICE` at a time, so a replay of a large set never
  blocks the event loop for long), pings, and runs the session's timers
  (heartbeat, close deadline).

A write that cannot finish within ``send_timeout`` (the peer stopped
reading) counts as a lost peer, as a heartbeat timeout does, with its own
reason: 1006 "Write stalled". When the
session finishes, the writer sends what is left (bounded by
``close_timeout``), the reader is cancelled (messages it had already read are
still routed) and the stream is closed at once.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import Final

import trio

from ._bus import MessageBus
from ._failures import ConnectionFailure, FailureKind
from ._ledger import SubscriptionLedger
from ._routing import Router
from ._session import (
    ClientSession,
    MessageRejected,
    Opened,
    SessionEvent,
    SessionState,
)

__all__ = ["OUTBOX_LIMIT", "RECEIVE_SIZE", "REPLAY_SLICE", "Connection"]

#: Bytes asked of the stream per receive: 64 KiB was 1.5x faster than 4 KiB on
#: 2.5 KB alerts messages (docs/performance.rst).
RECEIVE_SIZE: Final = 64 * 1024
#: The reader waits for the writer while more than this many bytes are queued.
OUTBOX_LIMIT: Final = 256 * 1024
#: Subscription requests queued per turn of the writer: encoding and framing
#: one costs 4-9 us here, so a turn stays around a millisecond.
REPLAY_SLICE: Final = 128

_STREAM_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class Connection:
    """Runs one :class:`ClientSession` over one stream (see the module rules).

    Args:
        stream: The transport's stream, already connected (and TLS-wrapped).
        session: The session, with its handshake request queued.
        router: Decodes and publishes each message the session returns.
        bus: The bus the router publishes to, for its backpressure.
        ledger: The subscriptions the server should hold; the writer sends
            what it lacks.
        on_open: Called with :class:`Opened` when the handshake succeeds,
            before any message is routed.
        close_timeout: Seconds the last writes (and a close we start) may take.
        send_timeout: Seconds one write may block before the peer counts as
            gone.
        subscriber_wait: The most seconds the reader waits, at a time, for
            congested subscriptions before it reads on (they lag, then).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        session: ClientSession,
        *,
        router: Router,
        bus: MessageBus,
        ledger: SubscriptionLedger,
        on_open: Callable[[Opened], None],
        close_timeout: float,
        send_timeout: float,
        subscriber_wait: float,
    ) -> None:
        self.session = session
        self._stream = stream
        self._router = router
        self._bus = bus
        self._ledger = ledger
        self._on_open = on_open
        self._close_timeout = close_timeout
        self._send_timeout = send_timeout
        self._subscriber_wait = subscriber_wait
        self._outbox: deque[bytes] = deque()
        self._outbox_size = 0
        self._outbox_room: trio.Event | None = None
        self._wake = trio.Event()
        self._wake.set()  # the handshake request is waiting

    def request_flush(self) -> None:
        """Wake the writer to send subscription changes. Never blocks."""
        self._wake.set()

    def request_close(self) -> None:
        """Close on purpose (1000); the session bounds it by close_timeout."""
        self.session.close(trio.current_time())
        self._wake.set()

    async def run(self, handshake_deadline: float) -> ConnectionFailure:
        """Pump until the session finishes; return how the connection ended.

        The opening handshake must finish by ``handshake_deadline``.
        """
        session = self.session
        try:
            with trio.CancelScope(deadline=handshake_deadline) as handshake:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read, handshake)
                    await self._write()
                    nursery.cancel_scope.cancel()
        finally:
            self._router.end_connection(trio.current_time())
            await trio.aclose_forcefully(self._stream)
        if session.outcome is None:
            return ConnectionFailure(
                FailureKind.TIMEOUT, reason="Opening handshake timed out"
            )
        return session.outcome

    # --- the reader -------------------------------------------------------------

    async def _read(self, handshake: trio.CancelScope) -> None:
        session = self.session
        stream = self._stream
        try:
            while session.state is not SessionState.FINISHED:
                while self._outbox_size > OUTBOX_LIMIT:
                    self._outbox_room = trio.Event()
                    await self._outbox_room.wait()
                data = await stream.receive_some(RECEIVE_SIZE)
                now = trio.current_time()
                if data:
                    events = session.receive_data(data, now)
                else:
                    events = session.receive_eof(now)
                self._queue(session.data_to_send())
                if events:
                    await self._route(iter(events), now, handshake)
                if not data:
                    break
        except _STREAM_ERRORS:
            session.connection_lost(trio.current_time())
        self._wake.set()

    async def _route(
        self, events: Iterator[SessionEvent], now: float, handshake: trio.CancelScope
    ) -> None:
        """Route events in order; give subscribers a turn when one is congested."""
        text = self._router.text
        bus = self._bus
        wait = self._subscriber_wait
        for event in events:
            if type(event) is str:
                text(event, now)
            else:
                self._route_one(event, now, handshake)
            if wait and bus.congested:  # 0: never wait, never yield (0.2.0)
                try:
                    await bus.drain(wait)
                except trio.Cancelled:
                    # The connection is ending: what was read is still routed
                    # (subscribers' overflow policies apply).
                    for rest in events:
                        self._route_one(rest, now, handshake)
                    raise
                now = trio.current_time()

    def _route_one(
        self, event: SessionEvent, now: float, handshake: trio.CancelScope
    ) -> None:
        if type(event) is str:
            self._router.text(event, now)
        elif type(event) is bytes:
            self._router.binary(event, now)
        elif isinstance(event, MessageRejected):
            self._router.refused(event.reason, event.raw, now)
        elif isinstance(event, Opened):
            handshake.deadline = math.inf  # open_timeout is over
            self._on_open(event)
            self._wake.set()  # the writer replays the subscriptions
        # Finished: run() returns the outcome.

    def _queue(self, data: list[bytes]) -> None:
        if data:
            self._outbox.extend(data)
            self._outbox_size += sum(map(len, data))
            self._wake.set()

    # --- the writer ---------------------------------------------------------------

    async def _write(self) -> None:
        session = self.session
        outbox = self._outbox
        more = False  # subscription requests left for the next turn
        while True:
            if not more:
                with trio.move_on_at(session.deadline()):
                    await self._wake.wait()
                self._wake = trio.Event()
            now = trio.current_time()
            session.on_timer(now)
            more = False
            if session.is_open:
                requests = self._ledger.take_pending(REPLAY_SLICE)
                if requests:
                    session.send_requests(requests)
                    more = len(requests) == REPLAY_SLICE
            self._queue(session.data_to_send())
            finished = session.state is SessionState.FINISHED
            timeout = self._close_timeout if finished else self._send_timeout
            if more and not outbox:
                await trio.lowlevel.checkpoint()
            while outbox:
                data = outbox.popleft()
                # A close we started is bounded by its own deadline too.
                deadline = min(trio.current_time() + timeout, session.close_deadline)
                with trio.move_on_at(deadline) as send:
                    try:
                        await self._stream.send_all(data)
                    except _STREAM_ERRORS:
                        session.connection_lost(trio.current_time())
                        return
                if send.cancelled_caught:
                    session.on_timer(trio.current_time())  # the close deadline
                    session.peer_stalled(trio.current_time())  # or a stuck peer
                    return
                self._sent(len(data))
            if finished or session.state is SessionState.FINISHED:
                return

    def _sent(self, size: int) -> None:
        self._outbox_size -= size
        room = self._outbox_room
        if room is not None and self._outbox_size <= OUTBOX_LIMIT:
            self._outbox_room = None
            room.set()
