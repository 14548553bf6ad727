"""A misbehaving server: answers every WebSocket handshake with canned bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import trio

from .._logs import get_logger
from .._util import open_nursery_body_as_itself
from ._memory import MemoryTransport
from ._server import check_host

__all__ = ["RawAnswer", "RawHttpServer", "open_raw_http_server"]

logger = get_logger("trio_ws_bus.testing")

RawAnswer = bytes | Callable[[bytes], bytes]
"""What a :class:`RawHttpServer` sends: bytes, or a function of the request head."""

#: The most bytes of a request head the raw server reads.
_REQUEST_LIMIT = 64 * 1024


class RawHttpServer:
    """A TCP server that answers each connection with canned bytes, then closes.

    Made by :func:`open_raw_http_server`. It speaks no protocol at all: it
    reads the client's request head (up to the blank line), records it, sends
    the next answer of its script and closes the connection (or keeps it
    open, see ``hold_open``). Answers can be anything: a 401 with an 8 MiB
    body, a 301 redirect, junk bytes, a 101 followed by broken frames.

    Rules: connection *i* (from 0) gets ``answers[i]``; once the script is
    used up, every connection gets the last answer.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        answers: Sequence[RawAnswer],
        *,
        chunk_size: int,
        hold_open: bool,
    ) -> None:
        self._nursery = nursery
        self._answers = list(answers)
        self._chunk_size = chunk_size
        self._hold_open = hold_open
        self._requests: list[bytes] = []
        self._connections = 0
        self._host: str | None = None
        self._port: int | None = None
        self._closed = trio.Event()
        self._transport = MemoryTransport(self._connect_memory)

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. ``"http://127.0.0.1:54321"``.

        Raises:
            RuntimeError: If the server was opened with ``listen=False``.
        """
        if self._port is None:
            raise RuntimeError("this raw server does not listen on a socket")
        host = f"[{self._host}]" if self._host and ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def transport(self) -> MemoryTransport:
        """An in-memory transport to this server (works under ``MockClock``)."""
        return self._transport

    @property
    def connections(self) -> int:
        """How many connections the server accepted."""
        return self._connections

    @property
    def requests(self) -> list[bytes]:
        """The request head of every connection, in order (cut at 64 KiB)."""
        return list(self._requests)

    async def _listen(self, host: str, port: int) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        self._host = host
        self._port = listeners[0].socket.getsockname()[1]
        await self._nursery.start(trio.serve_listeners, self._serve, listeners)

    def _connect_memory(self, stream: trio.abc.Stream) -> None:
        self._nursery.start_soon(self._serve, stream)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        index = self._connections
        self._connections += 1
        try:
            head = await _read_head(stream)
            self._requests.append(head)
            answer = self._answers[min(index, len(self._answers) - 1)]
            data = answer(head) if callable(answer) else answer
            for start in range(0, len(data), self._chunk_size):
                await stream.send_all(data[start : start + self._chunk_size])
            if self._hold_open:
                await self._closed.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("raw server: client went away: %r", exc)
        finally:
            await trio.aclose_forcefully(stream)

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "memory"
        return f"<RawHttpServer {where} connections={self._connections}>"


async def _read_head(stream: trio.abc.Stream) -> bytes:
    head = bytearray()
    while b"\r\n\r\n" not in head and len(head) < _REQUEST_LIMIT:
        data = await stream.receive_some(_REQUEST_LIMIT)
        if not data:
            break
        head += data
    return bytes(head[:_REQUEST_LIMIT])


@asynccontextmanager
async def open_raw_http_server(
    answers: RawAnswer | Sequence[RawAnswer],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    listen: bool = True,
    chunk_size: int = 64 * 1024,
    hold_open: bool = False,
) -> AsyncIterator[RawHttpServer]:
    """Run a server that answers every handshake with canned bytes.

    See :class:`RawHttpServer` for what it does with each connection.
    Build answers with :func:`http_response` and :func:`encode_frame`. Reach
    it over loopback (:attr:`RawHttpServer.url`) or in memory
    (:attr:`RawHttpServer.transport`). On exit every connection is closed and
    no task is left behind.

    Args:
        answers: One answer for every connection, or a script of answers
            (the last one repeats).
        host: The loopback host to listen on.
        port: The TCP port; 0 lets the kernel choose.
        listen: Whether to listen on a real socket (else memory only).
        chunk_size: Send each answer in pieces of this many bytes.
        hold_open: Keep each connection open after the answer, until exit.

    Yields:
        The running server.

    Raises:
        ValueError: If ``host`` is not a loopback host, ``answers`` is empty or
            ``chunk_size`` is not positive.
    """
    check_host(host)
    script = [answers] if isinstance(answers, bytes) or callable(answers) else answers
    if not script:
        raise ValueError("answers must not be empty")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    bind_host = "127.0.0.1" if host == "localhost" else host
    async with open_nursery_body_as_itself() as nursery:
        server = RawHttpServer(
            nursery, script, chunk_size=chunk_size, hold_open=hold_open
        )
        try:
            if listen:
                await server._listen(bind_host, port)
            yield server
        finally:
            server._closed.set()
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await server._transport._aclose()
