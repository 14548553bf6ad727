"""A stream wrapper that tells the manager when the peer's bytes stop."""

from __future__ import annotations

import trio

__all__ = ["ObservedStream"]


class ObservedStream(trio.abc.Stream):
    """Wraps the transport's stream: counts bytes and notices end of input.

    trio-websocket waits for the opening handshake with no way to learn that
    the connection died first; ``ended`` lets the manager fail such an
    attempt at once instead of at ``open_timeout``.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self.ended = trio.Event()
        """Set once a receive returned end-of-file or failed."""
        self.bytes_received = 0
        """Bytes read from the peer so far."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Receive from the wrapped stream, recording end-of-file and failures."""
        try:
            data = await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.ended.set()
            raise
        if not data:
            self.ended.set()
        self.bytes_received += len(data)
        return data

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
