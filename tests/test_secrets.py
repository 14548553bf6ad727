"""Canary: the token never shows in a log line, a repr, an event or an exception."""

from __future__ import annotations

import logging
import traceback
import urllib.parse

import pytest
import trio
import trio.testing
from helpers import manager_on

from trio_ws_bus import Backoff, ConnectionGaveUp
from trio_ws_bus.testing import make_alert, open_reference_server

CANARY = "canary+/=&#% tok-3f9a"
ENCODED = urllib.parse.quote(CANARY, safe="")


def exception_text(exc: BaseException) -> str:
    """str, repr and the formatted traceback, causes and contexts included."""
    return "".join(traceback.format_exception(exc)) + str(exc) + repr(exc)


async def test_canary_token_never_leaks(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A token with + / = & # % and a space stays out of logs, reprs and events."""
    caplog.set_level(logging.DEBUG)  # every logger, trio-websocket's included
    shown: list[str] = []
    with trio.fail_after(600):
        async with open_reference_server(listen=False) as server:
            server.accept_token(CANARY)
            async with manager_on(
                server, token=CANARY, ping_interval=1.0, backoff=Backoff(max_retries=2)
            ) as (manager, events):
                async with manager.alerts() as alerts:
                    await server.wait_subscribed("alerts")
                    assert server.tokens_seen == [CANARY]  # it did travel, encoded
                    await server.publish_alerts([make_alert(1)])
                    await alerts.receive()
                    await server.send_error(f"bad request for token {CANARY}")
                    await trio.sleep(3)  # a few heartbeats
                    await server.close_connections(4001, f"token {CANARY} expired")
                    await server.wait_subscribed("alerts")
                    server.connections[0].freeze()
                    server.reject_next(
                        5,
                        status=401,
                        body=f"bad token {CANARY} {ENCODED}".encode(),
                        headers=[(b"Set-Cookie", f"t={ENCODED}".encode())],
                    )
                    await trio.sleep(60)  # heartbeat timeout, then 401 until giving up
                    with pytest.raises(ConnectionGaveUp) as gave_up:
                        await manager.wait_connected()
                    shown.append(exception_text(gave_up.value))
                shown.append(repr(manager))
                shown.append(repr(manager.statistics()))
                shown.extend(repr(event) for event in events)
    shown.append(caplog.text)
    text = "\n".join(shown)
    assert "Heartbeat timeout" in text  # the scenario really went everywhere
    assert "HTTP 401" in text
    assert CANARY not in text
    assert ENCODED not in text
    assert "Set-Cookie" not in text
