"""How-to: hand the manager a fresh token before every connection attempt.

Run: python docs/examples/token_refresh.py (needs the testing extra). It runs
in memory under Trio's mock clock, so the minutes it spans pass at once.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trio.testing

from trio_ws_bus import (
    CONNECTION_TOPIC,
    ConnectionEvent,
    ConnectionGaveUp,
    ConnectionStatus,
    open_websocket_manager,
)
from trio_ws_bus.testing import ReferenceServer, open_reference_server

# --- an async provider ---------------------------------------------------------


class RefreshingToken:
    """An async token provider that logs in again shortly before expiry.

    ``login`` returns a token and its lifetime in seconds (what an OAuth token
    endpoint answers). The manager calls this object before every attempt;
    between logins it returns the cached token.
    """

    def __init__(
        self, login: Callable[[], Awaitable[tuple[str, float]]], *, margin: float
    ) -> None:
        self._login = login
        self._margin = margin
        self._token: str | None = None
        self._refresh_at = -math.inf

    async def __call__(self) -> str | None:
        """Return a token that is valid for at least ``margin`` more seconds."""
        if trio.current_time() >= self._refresh_at:
            token, lifetime = await self._login()
            self._token = token
            self._refresh_at = trio.current_time() + lifetime - self._margin
        return self._token


# --- a sync provider -----------------------------------------------------------


def token_from_file(path: Path) -> Callable[[], str | None]:
    """A sync provider: the token a sidecar keeps in ``path``, or None."""

    def read() -> str | None:
        try:
            return path.read_text().strip() or None
        except FileNotFoundError:
            return None

    return read


# --- the demo ------------------------------------------------------------------


def show_problem(event: ConnectionEvent) -> None:
    """Print the error events the manager publishes on CONNECTION_TOPIC."""
    if event.status is ConnectionStatus.ERROR:
        print(f"  error event: {event.message}")
    elif event.retry_in is not None:
        print(f"  retry {event.retry_count} in {event.retry_in:g} s")


async def async_provider(server: ReferenceServer) -> None:
    """Part 1: a login that fails once, a cached token, a refresh."""
    logins = 0

    async def login() -> tuple[str, float]:
        nonlocal logins
        logins += 1
        await trio.lowlevel.checkpoint()  # an HTTP request to the identity provider
        if logins == 1:
            raise OSError("identity provider unreachable")
        return server.issue_token(f"login-{logins}"), 300.0  # valid for 5 minutes

    token = RefreshingToken(login, margin=60.0)
    async with open_websocket_manager(
        "http://localhost", token=token, transport=server.transport
    ) as manager:
        manager.bus.on(CONNECTION_TOPIC, show_problem)
        await manager.wait_connected()
        print(f"connected after {logins} logins")
        await reconnect(server)
        print(f"reconnected, same token: {is_same_token(server)}")
        await trio.sleep(300)  # the token is now due for a refresh
        await reconnect(server)
        print(f"5 minutes later, reconnected, same token: {is_same_token(server)}")
    print(f"{logins} logins for {server.handshakes} handshakes")


async def reconnect(server: ReferenceServer) -> None:
    """Drop the connection and wait for the manager to be back."""
    await server.drop_connections()
    await server.wait_connections(1)


def is_same_token(server: ReferenceServer) -> bool:
    """Whether the last two handshakes used the same token."""
    return server.tokens_seen[-1] == server.tokens_seen[-2]


async def sync_provider(server: ReferenceServer, token_file: Path) -> None:
    """Part 2: no token yet means no retry; connect() once there is one."""
    async with open_websocket_manager(
        "http://localhost",
        token=token_from_file(token_file),
        transport=server.transport,
    ) as manager:
        manager.bus.on(CONNECTION_TOPIC, show_problem)
        try:
            await manager.wait_connected()
        except ConnectionGaveUp as exc:
            print(f"gave up: {exc.reason}; status is {manager.status}")
        await trio.Path(token_file).write_text(server.issue_token("from-file"))
        manager.connect()  # a new session with a fresh retry budget
        await manager.wait_connected()
        print(f"connected with the token from {token_file.name}")


async def main() -> None:
    """Run both parts against an in-memory reference server."""
    async with open_reference_server(listen=False) as server:
        print("async provider:")
        await async_provider(server)
    async with open_reference_server(listen=False) as server:
        print("sync provider:")
        with tempfile.TemporaryDirectory() as directory:
            await sync_provider(server, Path(directory) / "token")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
