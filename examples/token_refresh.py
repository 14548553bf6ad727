"""A fresh token for every connection attempt, from an async token provider.

The manager calls its token provider before every attempt, so short-lived
tokens just work: the provider below stands in for a request to an identity
provider (OAuth2 client credentials, Keycloak, ...). Tokens are never printed;
a short SHA-256 fingerprint shows that each attempt used a new one.

Run against an embedded reference server that drops every connection every
1.5 s, so each reconnect fetches a new token (needs
``pip install -e '.[testing]'``):

    python examples/token_refresh.py --duration 5

or against a backend, where the "identity provider" reads the ``WS_TOKEN``
environment variable on every attempt:

    WS_TOKEN=... python examples/token_refresh.py --url https://ops.example.com
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

import trio

from trio_ws_bus import CONNECTION_TOPIC, Backoff, open_websocket_manager

if TYPE_CHECKING:
    from trio_ws_bus.testing import ReferenceServer

TOKEN_VARIABLE = "WS_TOKEN"
DROP_EVERY = 1.5


def fingerprint(token: str) -> str:
    """A short, one-way fingerprint of a token: safe to print."""
    return hashlib.sha256(token.encode()).hexdigest()[:10]


class TokenRefresher:
    """An async token provider that fetches a new token on every call.

    Args:
        issue: Makes a token; called with a number that grows with each fetch
            (the embedded server puts it in the token's subject, so two tokens
            issued in the same second still differ).
    """

    def __init__(self, issue: Callable[[int], str | None]) -> None:
        self._issue = issue
        self.fetched: list[str] = []

    async def __call__(self) -> str | None:
        """Fetch a fresh token (the manager awaits this before each attempt)."""
        await trio.sleep(0.05)  # the round trip to the identity provider
        token = self._issue(len(self.fetched) + 1)
        if token is None:
            print("token provider: no token available", flush=True)
            return None  # the manager stops: no token, no connection
        self.fetched.append(token)
        print(
            f"token provider: fetched token #{len(self.fetched)} "
            f"(sha256 {fingerprint(token)})",
            flush=True,
        )
        return token


async def drop_now_and_then(server: ReferenceServer) -> None:
    """Make the embedded server drop every connection every DROP_EVERY seconds."""
    while True:
        await trio.sleep(DROP_EVERY)
        await server.drop_connections()


@asynccontextmanager
async def backend(url: str | None) -> AsyncIterator[tuple[str, TokenRefresher]]:
    """Yield ``(url, token provider)``: the given backend, or an embedded one."""
    if url is not None:
        yield url, TokenRefresher(lambda n: os.environ.get(TOKEN_VARIABLE))
        return
    from trio_ws_bus.testing import open_reference_server

    async with open_reference_server() as server, trio.open_nursery() as nursery:
        nursery.start_soon(drop_now_and_then, server)
        refresher = TokenRefresher(
            lambda n: server.issue_token(f"example-{n}", expires_in=60)
        )
        yield server.url, refresher
        nursery.cancel_scope.cancel()
        seen = {t for t in server.tokens_seen if t}
        print(
            f"server: {server.handshakes} handshakes with {len(seen)} distinct tokens",
            flush=True,
        )


async def main(url: str | None = None, duration: float = 5.0) -> None:
    """Stay connected for ``duration`` seconds, printing each connection change."""
    start = trio.current_time()
    async with (
        backend(url) as (base_url, refresher),
        open_websocket_manager(
            base_url, token=refresher, backoff=Backoff(base=0.2)
        ) as manager,
        manager.bus.subscribe(CONNECTION_TOPIC) as changes,
    ):
        with trio.move_on_after(duration):
            async for event in changes:
                elapsed = trio.current_time() - start
                detail = f" (code {event.code})" if event.code else ""
                if event.retry_in is not None:
                    detail = f" (retry {event.retry_count} in {event.retry_in:g} s)"
                print(f"{elapsed:6.2f}  {event.status.value}{detail}", flush=True)
    stats = manager.statistics()
    print(
        f"{stats.attempts} attempts, {stats.connections} connections, "
        f"{len(refresher.fetched)} tokens fetched, "
        f"{len(set(refresher.fetched))} distinct",
        flush=True,
    )


def parse_args() -> argparse.Namespace:
    """The command line of this example."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", help=f"backend base URL (token from ${TOKEN_VARIABLE})"
    )
    parser.add_argument("--duration", type=float, default=5.0, metavar="SECONDS")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    with suppress(KeyboardInterrupt):  # Ctrl-C: stop without a traceback
        trio.run(main, args.url, args.duration)
