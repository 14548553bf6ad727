"""Lifecycle: connect() always means something, and giving up is visible.

Issue 10's lifecycle and liveness scenarios, in virtual time: the seed's
recovery pattern (``connect()`` from a handler of the give-up event), a
``connect()`` that cuts a backoff wait short, a closed manager, the body's own
exception group, receives that raise while the manager has given up, and a
busy connection whose pong is late.
"""

from __future__ import annotations

import json
import sys

import pytest
import trio
import trio.testing
from _fault_helpers import errors, losses, wait_given_up
from conftest import TaskCensus
from helpers import NO_RETRY, manager_on

from trio_ws_bus import (
    Backoff,
    ConnectionEvent,
    ConnectionGaveUp,
    RetryRules,
)
from trio_ws_bus.testing import (
    Opcode,
    ReferenceServer,
    encode_frame,
    make_alert,
    open_reference_server,
)

if sys.version_info < (3, 11):  # pragma: no cover - depends on the Python version
    from exceptiongroup import ExceptionGroup

GIVE_UP_AT_ONCE = RetryRules(fatal_statuses={401, 503})


@pytest.mark.parametrize("cause", ["no token", "retries used up"])
async def test_connect_from_the_give_up_handler_starts_a_new_session(
    cause: str, autojump_clock: trio.testing.MockClock, no_tasks_left: None
) -> None:
    """The seed's recovery pattern: a handler calls connect() on the give-up event."""
    async with open_reference_server(listen=False) as server:
        calls: list[float] = []

        def provide() -> str | None:
            calls.append(trio.current_time())
            if cause == "no token" and len(calls) == 1:
                return None
            return server.issue_token()

        if cause == "retries used up":
            server.reject_next(1, status=503)
        async with manager_on(
            server,
            token=provide,
            backoff=NO_RETRY,
        ) as (manager, _):
            reconnected: list[float] = []

            def on_event(event: ConnectionEvent) -> None:
                if event.message in (
                    "No auth token",
                    "Max reconnection attempts reached",
                ):
                    reconnected.append(trio.current_time())
                    manager.connect()

            manager.bus.on("connection", on_event)
            await manager.wait_connected()
            assert len(reconnected) == 1
            assert len(calls) == 2  # a new session, with a new token call
            assert manager.statistics().connections == 1


async def test_connect_during_a_backoff_wait_tries_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """connect() while waiting 5 s to retry makes the next attempt right away."""
    async with open_reference_server(listen=False) as server:
        server.reject_next(1, status=503)
        async with manager_on(server, backoff=Backoff(base=5.0)) as (manager, events):
            await server.wait_until(lambda s: s.rejections == 1)
            await trio.sleep(2.0)  # two seconds into the five-second wait
            asked_at = trio.current_time()
            manager.connect()
            await manager.wait_connected()
            assert trio.current_time() == asked_at
            assert events[-3].retry_in == 5.0


async def test_connect_on_a_closed_manager_raises(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After the context exits, connect() raises trio.ClosedResourceError."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, _):
            await manager.wait_connected()
        with pytest.raises(trio.ClosedResourceError):
            manager.connect()


async def test_an_exception_group_from_the_body_comes_out_as_itself(
    autojump_clock: trio.testing.MockClock, task_census: TaskCensus
) -> None:
    """An ExceptionGroup raised in the body is the very object that comes out."""
    raised = ExceptionGroup("app", [ValueError("one")])
    async with open_reference_server(listen=False) as server:
        before = set(task_census.live)
        with pytest.raises(ExceptionGroup) as caught:  # noqa: PT012
            async with manager_on(server) as (manager, _):
                await manager.wait_connected()
                raise raised
        assert caught.value is raised
        await task_census.assert_none_left(before)


async def give_up_after_a_connection(server: ReferenceServer) -> None:
    """Close the live connection; the next attempt is refused with 401."""
    server.reject_next(1, status=401)
    await server.close_connections(4001, "bye")


async def test_giving_up_is_visible_where_the_app_waits(
    autojump_clock: trio.testing.MockClock, no_tasks_left: None
) -> None:
    """Buffered alerts first, then ConnectionGaveUp; connect() re-arms the receive."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(
            server, backoff=Backoff(max_retries=1), retry_policy=GIVE_UP_AT_ONCE
        ) as (manager, events):
            async with manager.alerts() as alerts:
                await server.wait_subscribed("alerts")
                await server.publish_alerts([make_alert(1)])
                await trio.testing.wait_all_tasks_blocked()
                await give_up_after_a_connection(server)
                reason = await wait_given_up(manager)
                assert reason == "Connection rejected with HTTP 401 (not retried)"
                # What was buffered comes first, then the give-up.
                assert (await alerts.receive())[0].alert_id == 1
                with pytest.raises(ConnectionGaveUp) as gave_up:
                    await alerts.receive()
                assert gave_up.value.reason == reason
                with pytest.raises(ConnectionGaveUp):
                    await alerts.receive_batch()
                # connect() re-arms: the receive waits, then gets the next alert.
                manager.connect()
                received: list[int] = []
                async with trio.open_nursery() as nursery:

                    async def receive_one() -> None:
                        received.append((await alerts.receive())[0].alert_id)

                    nursery.start_soon(receive_one)
                    await server.wait_subscribed("alerts")
                    await server.publish_alerts([make_alert(2)])
                assert received == [2]
            assert errors(events)[:2] == ["Handshake rejected with HTTP 401", reason]


async def test_a_subscription_opened_after_giving_up_raises_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """alerts() entered while given up: its first receive raises ConnectionGaveUp."""
    async with open_reference_server(listen=False) as server:
        server.reject_next(1, status=401)
        async with manager_on(
            server, backoff=Backoff(max_retries=1), retry_policy=GIVE_UP_AT_ONCE
        ) as (manager, _):
            await wait_given_up(manager)
            async with manager.telemetry("d1") as d1:
                with pytest.raises(ConnectionGaveUp):
                    await d1.receive()


# --- a busy connection is alive -------------------------------------------------


def big_alerts_frame(size: int) -> bytes:
    alert = make_alert(7)
    alert["summary"] = "x" * size
    payload = json.dumps({"type": "alerts", "alerts": [alert]}).encode()
    return encode_frame(Opcode.TEXT, payload)


async def send_slowly(
    server: ReferenceServer, frame: bytes, chunk: int, every: float
) -> None:
    """Write ``frame`` ``chunk`` bytes at a time; stop when the client left."""
    connection = server.connections[0]
    connection.freeze()  # no pongs from here on: only the data speaks
    for start in range(0, len(frame), chunk):
        if not await connection.write_raw(frame[start : start + chunk]):
            return
        await trio.sleep(every)


async def test_a_large_message_on_a_slow_link_is_not_a_dead_peer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """300 KB at 100 KB/s with ping_timeout=1: delivered, not cut off."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, ping_interval=0.5, ping_timeout=1.0) as (
            manager,
            events,
        ):
            async with manager.alerts() as alerts:
                await server.wait_subscribed("alerts")
                frame = big_alerts_frame(300_000)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send_slowly, server, frame, 10_000, 0.1)
                    batch = await alerts.receive()
                assert len(batch[0].summary) == 300_000
                assert trio.current_time() >= 3.0  # it really took 3 s
                assert losses(events) == []
                assert manager.statistics().connections == 1


async def test_a_trickle_is_still_cut_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A frame that trickles in a few bytes a second is a dead peer: 1006."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, ping_interval=0.5, ping_timeout=1.0) as (
            manager,
            events,
        ):
            await manager.wait_connected()
            frame = big_alerts_frame(10_000)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_slowly, server, frame, 50, 0.1)
                await server.wait_until(lambda s: len(s.all_connections) == 2)
                nursery.cancel_scope.cancel()
            assert losses(events)[0] == (1006, "Heartbeat timeout")
            assert trio.current_time() < 3.0  # at the first silent window
            assert manager.statistics().alerts_messages == 0
