"""Network faults and lifecycle: the manager against unreliable servers.

Refused, unresolvable, stalled, dropped, silent, flapping, unclosable and
restarting servers.

Everything runs the real protocol (trio-websocket over in-memory streams)
under ``autojump_clock``, so every time asserted here is exact. Each scenario
ends with a task census: nothing the manager spawned outlives its context.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import socket

import pytest
import trio
import trio.testing
from _fault_helpers import (
    errors,
    idle_manager_tasks,
    losses,
    manager_tasks,
    max_per_window,
    retries,
    wait_given_up,
)
from conftest import TaskCensus
from helpers import CONNECTED, CONNECTING, SEED_ATTEMPT_TIMES, TokenLog, manager_on

from trio_ws_bus import (
    Backoff,
    ConnectionEvent,
    ConnectionFailure,
    ConnectionGaveUp,
    ConnectionStatus,
    FailureKind,
    RetryVerdict,
    default_retry_policy,
)
from trio_ws_bus._transport import failure_from_os_error
from trio_ws_bus._util import BaseExceptionGroup
from trio_ws_bus.testing import Opcode, encode_frame, make_alert, open_reference_server

REFUSED = "Connection failed: Connection refused (MemoryTransport.fail_next)"


def gaierror() -> OSError:
    """What a failed DNS lookup raises (``getaddrinfo`` on Linux)."""
    return socket.gaierror(socket.EAI_NONAME, "Name or service not known")


# --- 1. attempts that never connect ---------------------------------------------


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("refused", REFUSED),
        ("dns", "Name resolution failed: Name or service not known"),
    ],
)
async def test_unreachable_attempts_are_counted_and_retried(
    fault: str,
    message: str,
    autojump_clock: trio.testing.MockClock,
    task_census: TaskCensus,
    no_tasks_left: None,
) -> None:
    """Refused or unresolvable: an error per attempt, backoff 1, 2, 4 s, then in."""
    async with open_reference_server(listen=False) as server:
        server.transport.fail_next(3, gaierror if fault == "dns" else None)
        tokens = TokenLog(server)
        async with manager_on(server, token=tokens) as (manager, events):
            await manager.wait_connected()
            assert tokens.relative_times() == SEED_ATTEMPT_TIMES[:4]
            assert errors(events) == [message] * 3
            assert retries(events) == [1.0, 2.0, 4.0]
            assert events[:4] == [
                CONNECTING,
                ConnectionEvent(ConnectionStatus.ERROR, message=message),
                ConnectionEvent(ConnectionStatus.DISCONNECTED, code=1006),
                ConnectionEvent(
                    ConnectionStatus.DISCONNECTED, retry_in=1.0, retry_count=1
                ),
            ]
            stats = manager.statistics()
            assert (stats.attempts, stats.connections) == (4, 1)
        assert manager_tasks(task_census) == []


async def test_retry_forever_goes_on_past_the_default_budget_at_the_capped_delay(
    autojump_clock: trio.testing.MockClock, task_census: TaskCensus, no_tasks_left: None
) -> None:
    """Backoff(max_retries=None): 60 refusals, retried every 30 s, then in."""
    async with open_reference_server(listen=False) as server:
        server.transport.fail_next(60)
        tokens = TokenLog(server)
        backoff = Backoff(max_retries=None)
        async with manager_on(server, token=tokens, backoff=backoff) as (
            manager,
            events,
        ):
            # Mid-way, far past the default budget of 20: still retrying.
            await trio.sleep(1000.0)
            assert manager.status is ConnectionStatus.DISCONNECTED
            assert manager.statistics().retries_used == 38
            await manager.wait_connected()
            delays = [1.0, 2.0, 4.0, 8.0, 16.0] + [30.0] * 55
            assert tokens.relative_times() == list(itertools.accumulate([0.0, *delays]))
            assert trio.current_time() - tokens.times[0] == 1681.0
            assert retries(events) == delays
            counts = [e.retry_count for e in events if e.retry_count is not None]
            assert counts == list(range(1, 61))
            assert errors(events) == [REFUSED] * 60
            stats = manager.statistics()
            assert (stats.attempts, stats.connections, stats.retries_used) == (
                61,
                1,
                0,
            )
        assert manager_tasks(task_census) == []


def test_each_address_os_error_is_named_once() -> None:
    """open_tcp_stream's "all attempts failed" shows each address's OS words once."""
    causes = [
        OSError(errno.ECONNREFUSED, "Error connecting to ('::1', 9): ..."),
        OSError(errno.ECONNREFUSED, "Error connecting to ('127.0.0.1', 9): ..."),
        OSError(errno.ENETUNREACH, "Error connecting to ('10.0.0.1', 9): ..."),
        OSError(errno.ETIMEDOUT, "Error connecting to ('10.0.0.2', 9): ..."),
    ]
    exc = OSError("all attempts to connect to ops.test:9 failed")
    exc.__cause__ = BaseExceptionGroup("all attempts", causes)
    assert failure_from_os_error(exc) == ConnectionFailure(
        FailureKind.UNREACHABLE,
        reason=f"Connection failed: {os.strerror(errno.ECONNREFUSED)}, "
        f"{os.strerror(errno.ENETUNREACH)}, {os.strerror(errno.ETIMEDOUT)} "
        "(all attempts to connect to ops.test:9 failed)",
    )


async def test_failed_attempt_leaves_no_reader_task_during_backoff(
    autojump_clock: trio.testing.MockClock, task_census: TaskCensus, no_tasks_left: None
) -> None:
    """While waiting to retry, only the connection task itself is alive."""
    async with open_reference_server(listen=False) as server:
        server.transport.fail_next(1)
        server.transport.stall_next(1)
        async with manager_on(server, open_timeout=3.0) as (manager, events):
            await trio.sleep(0.5)  # refused at 0, retry at 1.0
            assert idle_manager_tasks(task_census) == []
            await trio.sleep(1.0)  # stalled handshake under way since 1.0
            assert manager.status is ConnectionStatus.CONNECTING
            assert idle_manager_tasks(task_census) != []
            await trio.sleep(3.0)  # timed out at 4.0, retry at 6.0
            assert errors(events)[-1] == "Opening handshake timed out"
            assert idle_manager_tasks(task_census) == []
            await manager.wait_connected()
            assert trio.current_time() == 6.0


async def test_stalled_handshake_is_bounded_by_open_timeout(
    autojump_clock: trio.testing.MockClock, no_tasks_left: None
) -> None:
    """A server that accepts TCP and never answers fails the attempt at open_timeout."""
    async with open_reference_server(listen=False) as server:
        server.transport.stall_next(2)
        seen: list[FailureKind] = []

        def policy(failure: ConnectionFailure) -> RetryVerdict:
            seen.append(failure.kind)
            return default_retry_policy(failure)

        tokens = TokenLog(server)
        async with manager_on(
            server, token=tokens, open_timeout=2.5, retry_policy=policy
        ) as (manager, events):
            await manager.wait_connected()
            # 0 -> 2.5 timeout, +1 s -> 3.5 -> 6.0 timeout, +2 s -> 8.0 connected.
            assert tokens.relative_times() == [0.0, 3.5, 8.0]
            assert errors(events) == ["Opening handshake timed out"] * 2
            assert seen == [FailureKind.TIMEOUT] * 2
            assert manager.statistics().attempts == 3


# --- 2. abrupt drops ----------------------------------------------------------------

ALERT_3 = json.dumps({"type": "alerts", "alerts": [make_alert(3)]}).encode()


@pytest.mark.parametrize(
    "partial",
    [
        # The first of three fragments of a text message, then nothing.
        encode_frame(Opcode.TEXT, ALERT_3[:40], fin=False),
        # Two fragments out of three.
        encode_frame(Opcode.TEXT, ALERT_3[:40], fin=False)
        + encode_frame(Opcode.CONTINUATION, ALERT_3[40:90], fin=False),
        # Half of a single-frame message: the header promises more bytes.
        encode_frame(Opcode.TEXT, ALERT_3)[: len(ALERT_3) // 2],
    ],
    ids=["first-fragment", "two-fragments", "mid-frame"],
)
async def test_drop_mid_message_delivers_complete_messages_only(
    partial: bytes,
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
) -> None:
    """A drop mid-message: earlier messages arrive, the partial never, then replay."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, ping_interval=None) as (manager, events):
            manager.subscribe("device", "d1")
            async with manager.alerts() as alerts:
                await server.wait_subscribed("alerts")
                await server.wait_subscribed("device", "d1")
                await server.publish_alerts([make_alert(1)])
                await server.publish_alerts([make_alert(2)])
                conn = server.connections[0]
                assert await conn.write_raw(partial)
                await trio.testing.wait_all_tasks_blocked()
                dropped_at = trio.current_time()
                await conn.drop()
                await server.wait_until(
                    lambda s: (
                        len(s.connections) == 1
                        and s.connections[0].subscriptions
                        == [("device", "d1"), ("alerts", None)]
                    )
                )
                assert trio.current_time() - dropped_at == 1.0
                await server.publish_alerts([make_alert(4)])
                got = [(await alerts.receive())[0].alert_id for _ in range(3)]
                assert got == [1, 2, 4]
                with pytest.raises(trio.WouldBlock):
                    alerts.receive_nowait()
            assert losses(events) == [(1006, None)]
            stats = manager.statistics()
            assert (stats.alerts_messages, stats.invalid_messages) == (3, 0)


# --- 3. half-open connection ---------------------------------------------------------


@pytest.mark.parametrize(("interval", "pong_wait"), [(5.0, 2.0), (20.0, 20.0)])
async def test_half_open_connection_is_detected_by_the_heartbeat(
    interval: float,
    pong_wait: float,
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
) -> None:
    """A silent peer is lost within ping interval + timeout; one reconnect follows."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(
            server, ping_interval=interval, ping_timeout=pong_wait
        ) as (
            manager,
            events,
        ):
            manager.subscribe("alerts")
            await server.wait_subscribed("alerts")
            frozen_at = trio.current_time()
            server.connections[0].freeze()
            lost = trio.Event()

            def on_event(event: ConnectionEvent) -> None:
                if event.code == 1006:
                    lost.set()

            manager.bus.on("connection", on_event)
            await lost.wait()
            assert trio.current_time() - frozen_at <= interval + pong_wait
            await server.wait_subscribed("alerts")  # replayed on the new connection
            await trio.sleep(10 * (interval + pong_wait))  # nothing else happens
            assert len(server.all_connections) == 2
            stats = manager.statistics()
            assert (stats.connections, stats.reconnects) == (2, 1)
            assert losses(events) == [(1006, "Heartbeat timeout")]
            assert manager.is_connected


# --- 4. flapping server ---------------------------------------------------------


@pytest.mark.parametrize(
    ("backoff", "close_code"),
    [
        (Backoff(reset_after=10.0), None),
        (Backoff(reset_after=10.0), 1013),
        (Backoff(reset_after=60.0), None),
    ],
    ids=["reset-after-10-drop", "reset-after-10-1013", "reset-after-60-drop"],
)
async def test_flapping_server_spends_the_budget_without_a_tight_loop(
    backoff: Backoff,
    close_code: int | None,
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
) -> None:
    """Accept-then-close forever, reset_after opted in: seed schedule, give up."""
    async with open_reference_server(listen=False) as server:
        server.close_next(1000, code=close_code)
        tokens = TokenLog(server)
        async with manager_on(server, token=tokens, backoff=backoff) as (
            manager,
            events,
        ):
            assert await wait_given_up(manager) == "Max reconnection attempts reached"
            with pytest.raises(ConnectionGaveUp):
                await manager.wait_connected()
            await trio.sleep(3600)
        assert tokens.relative_times() == SEED_ATTEMPT_TIMES
        assert max_per_window(tokens.times, 60.0) == 6
        assert len(server.all_connections) == 21  # every attempt was accepted
        assert retries(events) == list(Backoff().delays())
        expected_code = 1006 if close_code is None else close_code
        assert {code for code, _ in losses(events)} == {expected_code}


async def test_short_connections_never_end_the_feed_by_default(
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
) -> None:
    """30 connections closed with 4001 at once: each retried 1 s later, then up."""
    async with open_reference_server(listen=False) as server:
        server.close_next(30, code=4001)
        tokens = TokenLog(server)
        async with manager_on(server, token=tokens, ping_interval=None) as (
            manager,
            events,
        ):
            await server.wait_until(lambda s: len(s.all_connections) == 31)
            await manager.wait_connected()
            assert tokens.relative_times() == [float(n) for n in range(31)]
            assert retries(events) == [1.0] * 30
            assert {e.retry_count for e in events if e.retry_in is not None} == {1}


async def test_connection_that_stays_up_gives_the_retries_back(
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
) -> None:
    """reset_after=10: a connection up for 10 s resets the count; next wait is 1 s."""
    async with open_reference_server(listen=False) as server:
        server.close_next(4)
        async with manager_on(
            server, ping_interval=None, backoff=Backoff(reset_after=10.0)
        ) as (manager, events):
            await server.wait_until(lambda s: len(s.all_connections) == 5)
            await manager.wait_connected()
            assert retries(events) == [1.0, 2.0, 4.0, 8.0]
            await trio.sleep(9.0)
            assert manager.statistics().retries_used == 4
            await trio.sleep(1.0)
            assert manager.statistics().retries_used == 0
            await server.drop_connections()
            await server.wait_until(lambda s: len(s.all_connections) == 6)
            assert retries(events)[-1] == 1.0


# --- 5. a close handshake that never completes ----------------------------------------


@pytest.mark.parametrize("how", ["disconnect", "context exit"])
async def test_unanswered_close_handshake_is_bounded_by_close_timeout(
    how: str,
    autojump_clock: trio.testing.MockClock,
    task_census: TaskCensus,
    no_tasks_left: None,
) -> None:
    """A peer that never answers our close frame costs exactly close_timeout."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, close_timeout=3.0) as (manager, events):
            await manager.wait_connected()
            server.connections[0].freeze()
            started = trio.current_time()
            if how == "disconnect":
                async with manager.bus.subscribe("connection") as watch:
                    manager.disconnect()  # synchronous: returns at once
                    assert trio.current_time() == started
                    event = await watch.receive()
                assert event.status is ConnectionStatus.DISCONNECTED
                assert trio.current_time() - started == 3.0
                await trio.sleep(60)
                assert manager.statistics().attempts == 1
        if how == "context exit":
            assert trio.current_time() - started == 3.0
        assert events[-1] == ConnectionEvent(
            ConnectionStatus.DISCONNECTED, code=1000, reason="Client disconnect"
        )
        assert manager_tasks(task_census) == []


async def test_ping_racing_our_close_frame_does_not_crash(
    autojump_clock: trio.testing.MockClock, no_tasks_left: None
) -> None:
    """A server ping that arrives after our close frame ends the close quietly."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, close_timeout=3.0) as (manager, events):
            await manager.wait_connected()
            conn = server.connections[0]
            conn.freeze()  # our close frame stays unanswered...
            manager.disconnect()
            await trio.sleep(0.5)
            assert await conn.write_raw(encode_frame(Opcode.PING, b"late"))
            await trio.sleep(5.0)
            assert manager.status is ConnectionStatus.DISCONNECTED
            assert events[-1] == ConnectionEvent(
                ConnectionStatus.DISCONNECTED, code=1000, reason="Client disconnect"
            )
            manager.connect()  # ...and the manager still works
            await manager.wait_connected()


# --- 6. server restarts ---------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1001, "Going away"), (1012, "Service restart"), (1013, "Try again later")],
)
async def test_server_restart_reconnects_and_replays(
    code: int,
    reason: str,
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
) -> None:
    """A restart close code: reported as is, reconnect after 1 s, replay, data flows."""
    async with open_reference_server(listen=False) as server:
        tokens = TokenLog(server)
        async with manager_on(server, token=tokens) as (manager, events):
            async with manager.alerts() as alerts, manager.telemetry("pump") as pump:
                await server.wait_subscribed("device", "pump")
                await server.publish_alerts([make_alert(1)])
                assert (await alerts.receive())[0].alert_id == 1
                await trio.sleep(30)  # a healthy connection
                closed_at = trio.current_time()
                assert await server.close_connections(code, reason) == 1
                await server.wait_until(
                    lambda s: (
                        len(s.connections) == 1
                        and len(s.connections[0].subscriptions) == 2
                    )
                )
                assert tokens.times[-1] - closed_at == 1.0
                assert tokens.issued[0] != tokens.issued[1]
                assert server.connections[0].subscriptions == [
                    ("alerts", None),
                    ("device", "pump"),
                ]
                await server.publish_alerts([make_alert(2)])
                await server.publish_telemetry("pump", {"rpm": 5})
                assert (await alerts.receive())[0].alert_id == 2
                assert (await pump.receive()).metrics == {"rpm": 5}
            assert losses(events) == [(code, reason)]
            assert retries(events) == [1.0]
            assert events[-2:] == [CONNECTING, CONNECTED]
        assert server.max_concurrent_connections == 1
