"""Secrets, the manager side: no form of the token escapes, whatever it holds.

Issue 10's "Secrets" scenarios through ``open_websocket_manager`` and the
reference server's memory transport: a token that cannot be sent fails the
attempt cleanly, and server text quoting the live token (a close reason, an
``error`` message) is scrubbed before the retry policy, an event or the bus
sees it.
"""

from __future__ import annotations

import json
import urllib.parse

import pytest
import trio
import trio.testing
from _fault_helpers import debug_logging, errors, wait_given_up
from helpers import SpyPolicy, manager_on

from trio_ws_bus import (
    ERROR_TOPIC,
    ConnectionStatus,
    FailureKind,
)
from trio_ws_bus._secrets import REDACTED, token_forms
from trio_ws_bus.testing import open_reference_server

PADDING = "0123456789abcdefghijklmnopqrstuvwxyzABCD"  # 40 characters


def assert_hidden(token: str, *texts: str) -> None:
    """No form of ``token`` (raw, percent-encoded, escaped...) is in any text."""
    for form in token_forms(token):
        for text in texts:
            assert form not in text


@pytest.mark.parametrize(
    ("token", "location"),
    [
        (f"SECRET-\udcff-{PADDING}", "query"),
        (f"SECRET-\r\nX-Evil: 1-{PADDING}", "header"),
    ],
    ids=["lone surrogate", "CRLF in a header"],
)
async def test_a_token_that_cannot_be_sent_fails_the_attempt_cleanly(
    token: str,
    location: str,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """INVALID_TOKEN: one immediate retry, then an error event; nothing shows it."""
    debug_logging(caplog)
    spy = SpyPolicy()
    async with open_reference_server(listen=False) as server:
        async with manager_on(
            server, token=lambda: token, token_location=location, retry_policy=spy
        ) as (manager, events):
            reason = await wait_given_up(manager)
            stats = manager.statistics()
        assert server.handshakes == 0
    assert [f.kind for f in spy.failures] == [FailureKind.INVALID_TOKEN] * 2
    assert stats.attempts == 2
    assert events[-1].status is ConnectionStatus.ERROR
    assert reason in errors(events)
    assert_hidden(token, repr(events), repr(stats), repr(spy.failures), caplog.text)


TOKEN = f'SECRET-/+ "{PADDING}'
SERVER_QUOTES = {
    "raw": TOKEN,
    "percent-encoded": urllib.parse.quote(TOKEN, safe=""),
    "JSON-escaped": json.dumps(TOKEN)[1:-1],
}


@pytest.mark.parametrize("form", SERVER_QUOTES)
async def test_a_close_reason_quoting_the_token_is_scrubbed(
    form: str, autojump_clock: trio.testing.MockClock
) -> None:
    """The policy's ConnectionFailure.reason and the event's reason show ***."""
    spy = SpyPolicy()
    async with open_reference_server(listen=False) as server:
        server.accept_token(TOKEN)
        async with manager_on(server, token=TOKEN, retry_policy=spy) as (
            manager,
            events,
        ):
            await manager.wait_connected()
            await server.close_connections(4001, f"bad {SERVER_QUOTES[form]}!")
            await server.wait_until(lambda s: len(s.all_connections) == 2)
    (closed,) = spy.failures
    assert (closed.kind, closed.close_code) == (FailureKind.CLOSED, 4001)
    assert closed.reason == f"bad {REDACTED}!"
    (lost,) = [e for e in events if e.code == 4001]
    assert lost.reason == f"bad {REDACTED}!"
    assert_hidden(TOKEN, repr(events), repr(spy.failures))


@pytest.mark.parametrize("form", SERVER_QUOTES)
async def test_a_server_error_quoting_the_token_is_published_scrubbed(
    form: str, autojump_clock: trio.testing.MockClock
) -> None:
    """An ``error`` message naming the token reaches ERROR_TOPIC with *** instead."""
    async with open_reference_server(listen=False) as server:
        server.accept_token(TOKEN)
        async with manager_on(server, token=TOKEN) as (manager, _):
            published: list[str] = []
            manager.bus.on(ERROR_TOPIC, published.append)
            await manager.wait_connected()
            assert await server.send_error(f"token {SERVER_QUOTES[form]} refused") == 1
            await trio.testing.wait_all_tasks_blocked()
            assert published == [f"token {REDACTED} refused"]
            assert manager.statistics().server_errors == 1
