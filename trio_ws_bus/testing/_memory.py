"""An in-memory transport: each attempt gets a fresh ``memory_stream_pair``."""

from __future__ import annotations

import errno
import ssl
from collections import deque
from collections.abc import Callable

import trio
import trio.testing

__all__ = ["MemoryTransport"]


def _refused() -> OSError:
    return ConnectionRefusedError(
        errno.ECONNREFUSED, "Connection refused (MemoryTransport.fail_next)"
    )


class MemoryTransport:
    """A transport that connects to an in-process server without sockets.

    Every :meth:`open_stream` call makes a :func:`trio.testing.memory_stream_pair`,
    hands one end to the server and returns the other. ``host``, ``port`` and
    ``ssl_context`` are recorded but otherwise ignored (there is no TLS). Nothing
    here reads the clock, so it is safe under ``MockClock(autojump_threshold=0)``.

    Attempts can be scripted: :meth:`fail_next` and :meth:`stall_next` queue
    outcomes for the next calls, in the order they were queued; once the script
    is used up, calls connect normally.

    Usually obtained from :attr:`ReferenceServer.transport`; constructing one
    directly lets you put any server behind it.

    Args:
        connect: Called with the server end of each new stream pair. It must not
            block (start a task for the stream); it may raise :exc:`OSError` to
            refuse the connection.
        on_attempt: Called after every :meth:`open_stream` call, whatever its
            outcome (the reference server uses it to wake its waiters).
    """

    def __init__(
        self,
        connect: Callable[[trio.abc.Stream], None],
        *,
        on_attempt: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._on_attempt = on_attempt
        # Rules: each entry is the outcome of one future attempt, oldest first:
        # an exception factory (fail) or None (stall).
        self._script: deque[Callable[[], Exception] | None] = deque()
        self._targets: list[tuple[str, int]] = []
        self._opened = 0
        self._stalled: list[trio.abc.Stream] = []
        self._closed = False

    @property
    def attempts(self) -> int:
        """How many times :meth:`open_stream` was called."""
        return len(self._targets)

    @property
    def opened(self) -> int:
        """How many streams were handed out (stalled ones included)."""
        return self._opened

    @property
    def targets(self) -> list[tuple[str, int]]:
        """The ``(host, port)`` of every :meth:`open_stream` call, in order."""
        return list(self._targets)

    def fail_next(
        self, n: int = 1, exc_factory: Callable[[], Exception] | None = None
    ) -> None:
        """Make the next ``n`` attempts raise instead of connecting.

        Args:
            n: How many attempts fail.
            exc_factory: Builds the exception each failing attempt raises. The
                default raises :exc:`ConnectionRefusedError` (an :exc:`OSError`);
                pass e.g. ``lambda: socket.gaierror(-2, "Name or service not
                known")`` to simulate a DNS failure.

        Raises:
            ValueError: If ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        self._script.extend([exc_factory or _refused] * n)

    def stall_next(self, n: int = 1) -> None:
        """Make the next ``n`` attempts return a stream nobody ever answers.

        The client's WebSocket handshake then waits forever, which is how a
        client's handshake timeout is tested. The server never sees these
        streams; they get end-of-file when the server closes.

        Raises:
            ValueError: If ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        self._script.extend([None] * n)

    async def open_stream(
        self, host: str, port: int, *, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        """Connect a new in-memory stream to the server and return the client end.

        Raises:
            OSError: When the attempt was scripted to fail with :meth:`fail_next`
                (or another exception its factory built), or the server is
                closed (:exc:`ConnectionRefusedError`).
        """
        await trio.lowlevel.checkpoint()
        self._targets.append((host, port))
        try:
            return self._open()
        finally:
            if self._on_attempt is not None:
                self._on_attempt()

    def _open(self) -> trio.abc.Stream:
        stall = False
        if self._script:
            factory = self._script.popleft()
            if factory is not None:
                raise factory()
            stall = True
        if self._closed:
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, "Connection refused (server closed)"
            )
        client_end, server_end = trio.testing.memory_stream_pair()
        if stall:
            self._stalled.append(server_end)
        else:
            self._connect(server_end)
        self._opened += 1
        return client_end

    async def _aclose(self) -> None:
        """Refuse further attempts and close the stalled streams."""
        self._closed = True
        stalled, self._stalled = self._stalled, []
        for stream in stalled:
            await trio.aclose_forcefully(stream)

    def __repr__(self) -> str:
        return f"<MemoryTransport attempts={self.attempts} opened={self._opened}>"
