"""connect() and disconnect() racing the session loop, through the real manager.

Each scenario calls the public methods in the same scheduler tick as a step
of the loop (a backoff wait that ends, an attempt not begun yet, the
context's exit), under ``MockClock`` autojump against the reference server.
"""

from __future__ import annotations

import trio
import trio.testing
from helpers import manager_on

from trio_ws_bus import CONNECTION_TOPIC, ConnectionEvent, ConnectionStatus
from trio_ws_bus.testing import open_reference_server


async def test_connect_then_disconnect_as_a_backoff_wait_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """connect() cuts the wait short, disconnect() comes in the same tick: idle."""
    async with open_reference_server(listen=False) as server:
        server.transport.fail_next(1)
        async with manager_on(server) as (manager, events):
            waiting = trio.Event()
            manager.bus.on(
                CONNECTION_TOPIC, lambda e: e.retry_in is None or waiting.set()
            )
            with trio.fail_after(5):
                await waiting.wait()
            await trio.testing.wait_all_tasks_blocked()  # the loop is in its wait
            manager.connect()  # wakes the wait at once ...
            manager.disconnect()  # ... and cancels it, too late to stop it ending
            manager.connect()
            manager.disconnect()
            await trio.sleep(5)
            assert events[-1] == ConnectionEvent(ConnectionStatus.DISCONNECTED)
            assert not manager.is_connected
            assert server.handshakes == 0
            manager.connect()  # still usable
            with trio.fail_after(5):
                await manager.wait_connected()
            assert server.handshakes == 1


async def test_connect_and_disconnect_before_the_first_attempt_are_not_news(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Nothing happened, so nothing is counted or published."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, autoconnect=False) as (manager, events):
            manager.connect()
            manager.disconnect()
            manager.connect()
            manager.disconnect()
            await trio.sleep(1)
            assert events == []
            assert manager.statistics().attempts == 0
            manager.connect()
            with trio.fail_after(5):
                await manager.wait_connected()
            assert [e.status for e in events] == ["connecting", "connected"]
            assert manager.statistics().attempts == server.handshakes == 1


async def test_leaving_at_once_after_autoconnect_publishes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The context exits before the first attempt began: no lone "disconnected"."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, events):
            pass
    assert events == []
    assert manager.statistics().attempts == 0


async def test_connect_from_a_handler_while_the_context_exits_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A handler's connect() on the final event starts nothing; the exit is prompt."""
    refused: list[BaseException] = []
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, events):

            def reconnect(event: ConnectionEvent) -> None:
                if event.status is ConnectionStatus.DISCONNECTED:
                    try:
                        manager.connect()
                    except trio.ClosedResourceError as exc:
                        refused.append(exc)

            manager.bus.on(CONNECTION_TOPIC, reconnect)
            with trio.fail_after(5):
                await manager.wait_connected()
            exit_started = trio.current_time()
        assert trio.current_time() - exit_started < 1.0  # not close_timeout + 1
        assert events[-1].code == 1000
        assert len(refused) == 1
        assert server.handshakes == 1
