"""A stream wrapper that watches what the peer sends for the manager.

Two jobs trio-websocket cannot do for us:

* **End of input.** trio-websocket waits for the opening handshake with no way
  to learn that the connection died first; ``ended`` lets the manager fail
  such an attempt at once instead of at ``open_timeout``.
* **The handshake answer.** trio-websocket reads a rejection's whole body
  (growing a ``bytes`` with ``+=``, quadratic in the number of chunks) and
  crashes with wsproto's ``LocalProtocolError`` on an answer that is not HTTP.
  The wrapper reads the status line itself and stops a non-101 answer after
  :data:`ANSWER_LIMIT` bytes, an answer that is not HTTP at once, raising
  :class:`HandshakeAnswerError` out of trio-websocket's reader task.

Rules: the answer is watched until its head (status line and headers, up to
the blank line) is complete. A 101 head ends the watch: what follows are
WebSocket frames, limited by ``max_message_size`` instead. Any other status
may send up to :data:`ANSWER_LIMIT` bytes in all (head and body).
"""

from __future__ import annotations

import re
from typing import Final

import trio

__all__ = ["ANSWER_LIMIT", "HandshakeAnswerError", "ObservedStream"]

#: The most bytes of a non-101 handshake answer read before giving up on it:
#: a rejection needs a status line, not an 8 MiB body.
ANSWER_LIMIT: Final = 64 * 1024
#: The most bytes of an answer's head (status line and headers). h11, which
#: parses it for trio-websocket, gives up after 16 KiB with a bare "Bad HTTP
#: message"; stopping first keeps the status for the retry policy.
HEAD_LIMIT: Final = 16 * 1024

_HTTP_PREFIX: Final = b"HTTP/"
#: A status line must be recognisable within this many bytes.
_STATUS_LINE_LIMIT: Final = 1024
_STATUS_LINE = re.compile(rb"HTTP/\d\.\d (\d{3})[ \r\n]")


class HandshakeAnswerError(Exception):
    """The server's answer to the opening handshake is not a usable one.

    Attributes:
        reason: A short description (no server-provided text).
        status_code: The answer's HTTP status, if its status line was valid.
    """

    def __init__(self, reason: str, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class ObservedStream(trio.abc.Stream):
    """Wraps the transport's stream: bytes, end of input, the handshake answer.

    See the module docstring for the rules.
    """

    def __init__(
        self, stream: trio.abc.Stream, *, answer_limit: int = ANSWER_LIMIT
    ) -> None:
        self._stream = stream
        self._answer_limit = answer_limit
        self._watching = True
        self._head = bytearray()
        self._head_done = False
        self.ended = trio.Event()
        """Set once a receive returned end-of-file or failed."""
        self.bytes_received = 0
        """Bytes read from the peer so far."""
        self.status_code: int | None = None
        """The HTTP status of the handshake answer, once its status line arrived."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Receive from the wrapped stream, recording end-of-file and failures.

        Raises:
            HandshakeAnswerError: If the handshake answer is not HTTP, or is
                a non-101 answer longer than the limit.
        """
        try:
            data = await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.ended.set()
            raise
        if not data:
            self.ended.set()
        self.bytes_received += len(data)
        if self._watching and data:
            self._watch_answer(data)
        return data

    def _watch_answer(self, data: bytes | bytearray) -> None:
        limit = self._answer_limit
        if self._head_done:
            # A non-101 answer's head is over: only its length matters now.
            if self.bytes_received > limit:
                raise HandshakeAnswerError(
                    f"answer longer than {limit} bytes", self.status_code
                )
            return
        head = self._head
        search_from = max(len(head) - 3, 0)
        head += data[: HEAD_LIMIT + 4 - len(head)]
        if self.status_code is None:
            self._parse_status_line(head)
        if (
            head.find(b"\r\n\r\n", search_from) < 0
            and head.find(b"\n\n", search_from) < 0
        ):
            if len(head) > HEAD_LIMIT:
                raise HandshakeAnswerError(
                    f"answer head longer than {HEAD_LIMIT} bytes", self.status_code
                )
            return
        self._head_done = True
        self._head = bytearray()
        if self.status_code == 101:
            self._watching = False  # frames follow: max_message_size rules them
        elif self.bytes_received > limit:
            raise HandshakeAnswerError(
                f"answer longer than {limit} bytes", self.status_code
            )

    def _parse_status_line(self, head: bytearray) -> None:
        """Set ``status_code`` from the status line, or raise if it is not HTTP."""
        if not head.startswith(_HTTP_PREFIX[: len(head)]):
            raise HandshakeAnswerError("answer is not HTTP")
        match = _STATUS_LINE.match(head)
        if match is not None:
            self.status_code = int(match[1])
        elif b"\n" in head or len(head) > _STATUS_LINE_LIMIT:
            raise HandshakeAnswerError("answer is not HTTP")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send on the wrapped stream."""
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Delegate to the wrapped stream."""
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """Close the wrapped stream."""
        self.ended.set()
        await self._stream.aclose()
