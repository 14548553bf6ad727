"""The pump: moves bytes between a Trio stream and a :class:`ClientSession`.

Two tasks per connection, and nothing else touches the stream:

* the **reader** receives up to :data:`RECEIVE_SIZE` bytes at a time and
  feeds them to the session, which decodes and publishes every complete
  message synchronously, in this task (no channel hop per message). What the
  session wants sent in answer (pongs, the echo of a close frame) goes to the
  outbox, and only then is the writer woken;
* the **writer** sends the outbox, the handshake request, subscription
  changes, pings, and runs the session's timers (heartbeat, close deadline).

A write that cannot finish within ``send_timeout`` (the peer stopped
reading) counts as a lost peer, as a heartbeat timeout does. When the
session finishes, the writer sends what is left (bounded by
``close_timeout``), the reader is cancelled and the stream is closed at once.
"""

from __future__ import annotations

import math
from typing import Final

import trio

from ._reconnect import ConnectionFailure, FailureKind
from ._session import ClientSession, SessionState

__all__ = ["RECEIVE_SIZE", "Connection"]

#: Bytes asked of the stream per receive: 64 KiB was 1.5x faster than 4 KiB on
#: 2.5 KB alerts messages (docs/performance.rst).
RECEIVE_SIZE: Final = 64 * 1024

_STREAM_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class Connection:
    """Runs one :class:`ClientSession` over one stream (see the module rules).

    Args:
        stream: The transport's stream, already connected (and TLS-wrapped).
        session: The session, with its handshake request queued.
        close_timeout: Seconds the last writes (and a close we start) may take.
        send_timeout: Seconds one write may block before the peer counts as
            gone.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        session: ClientSession,
        *,
        close_timeout: float,
        send_timeout: float,
    ) -> None:
        self.session = session
        self._stream = stream
        self._close_timeout = close_timeout
        self._send_timeout = send_timeout
        self._outbox: list[bytes] = []
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
            await trio.aclose_forcefully(self._stream)
        if session.outcome is None:
            return ConnectionFailure(
                FailureKind.TIMEOUT, reason="Opening handshake timed out"
            )
        return session.outcome

    async def _read(self, handshake: trio.CancelScope) -> None:
        session = self.session
        stream = self._stream
        outbox = self._outbox
        handshaking = True
        try:
            while session.state is not SessionState.FINISHED:
                data = await stream.receive_some(RECEIVE_SIZE)
                now = trio.current_time()
                if not data:
                    session.receive_eof(now)
                    break
                session.receive_data(data, now)
                if handshaking and session.state is not SessionState.CONNECTING:
                    handshaking = False
                    handshake.deadline = math.inf  # open_timeout is over
                answer = session.data_to_send()
                if answer:
                    outbox.extend(answer)
                    self._wake.set()
        except _STREAM_ERRORS:
            session.connection_lost(trio.current_time())
        self._wake.set()

    async def _write(self) -> None:
        session = self.session
        outbox = self._outbox
        while True:
            with trio.move_on_at(session.deadline()):
                await self._wake.wait()
            self._wake = trio.Event()
            session.on_timer(trio.current_time())
            session.flush_subscriptions()
            outbox.extend(session.data_to_send())
            finished = session.state is SessionState.FINISHED
            timeout = self._close_timeout if finished else self._send_timeout
            while outbox:
                data = outbox.pop(0)
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
            if finished or session.state is SessionState.FINISHED:
                return
