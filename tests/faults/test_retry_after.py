"""Retry-After end to end: the server's wait sets the next attempt, capped.

The reference server rejects a handshake with 503 and a ``Retry-After``
header; under ``autojump_clock`` the next attempt's exact virtual time shows
the wait the manager chose.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from _fault_helpers import retries
from helpers import TokenLog, manager_on

from trio_ws_bus import Backoff
from trio_ws_bus.testing import open_reference_server


@pytest.mark.parametrize(
    ("header", "wait"),
    [(b"7", 7.0), (b"120", Backoff().max_delay)],
    ids=["honoured", "capped at max_delay"],
)
async def test_the_next_attempt_waits_what_the_server_asked(
    header: bytes, wait: float, autojump_clock: trio.testing.MockClock
) -> None:
    """503 with Retry-After: 7 retries 7 s later; 120 is cut to max_delay (30 s)."""
    async with open_reference_server(listen=False) as server:
        server.reject_next(1, status=503, headers=[(b"Retry-After", header)])
        tokens = TokenLog(server)
        async with manager_on(server, token=tokens) as (manager, events):
            await manager.wait_connected()
        assert tokens.relative_times() == [0.0, wait]
        assert retries(events) == [wait]
        assert server.rejections == 1
