"""The connection manager against the reference server, in virtual time.

Every test here runs the real WebSocket protocol (our sans-I/O session against
the trio-websocket reference server, over in-memory streams) under
``MockClock`` autojump, so times are exact.
"""

from __future__ import annotations

import json
import math

import pytest
import trio
import trio.testing
from conftest import TaskCensus
from helpers import (
    CONNECTED,
    CONNECTING,
    SEED_ATTEMPT_TIMES,
    TIMESTAMP,
    TokenLog,
    manager_on,
)

from trio_ws_bus import (
    Alert,
    Backoff,
    ConnectionEvent,
    ConnectionGaveUp,
    ConnectionStatus,
    Telemetry,
    open_websocket_manager,
)
from trio_ws_bus.testing import (
    Opcode,
    encode_frame,
    make_alert,
    open_reference_server,
)


async def test_refused_handshakes_follow_the_seed_schedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Refused forever: attempts at t = 0, 1, 3, 7, 15, 31, 61...; 21, then give up."""
    async with open_reference_server(listen=False) as server:
        server.reject_next(1000, status=503)
        provide = TokenLog(server)
        calls = provide.times
        async with manager_on(server, token=provide) as (manager, events):
            with pytest.raises(
                ConnectionGaveUp, match="Max reconnection attempts reached"
            ):
                await manager.wait_connected()
            gave_up_at = trio.current_time()
            await trio.sleep(3600)
            assert manager.status is ConnectionStatus.ERROR
        start = calls[0]
        assert [t - start for t in calls] == SEED_ATTEMPT_TIMES
        assert len(calls) == 21
        assert server.handshakes == 21
        assert gave_up_at - start == SEED_ATTEMPT_TIMES[-1]
        assert events[:4] == [
            CONNECTING,
            ConnectionEvent(
                ConnectionStatus.ERROR, message="Handshake rejected with HTTP 503"
            ),
            ConnectionEvent(ConnectionStatus.DISCONNECTED, code=1006),
            ConnectionEvent(ConnectionStatus.DISCONNECTED, retry_in=1.0, retry_count=1),
        ]
        assert events[-2] == ConnectionEvent(ConnectionStatus.DISCONNECTED, code=1006)
        assert events[-1] == ConnectionEvent(
            ConnectionStatus.ERROR, message="Max reconnection attempts reached"
        )
        retries = [e.retry_in for e in events if e.retry_in is not None]
        assert retries == list(Backoff().delays())


async def test_connect_after_giving_up_starts_a_fresh_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """connect() after the manager gave up tries again with the base delay."""
    async with open_reference_server(listen=False) as server:
        server.reject_next(3, status=500)
        async with manager_on(server, backoff=Backoff(max_retries=1)) as (manager, _):
            with pytest.raises(ConnectionGaveUp):
                await manager.wait_connected()
            assert server.handshakes == 2
            manager.connect()
            await manager.wait_connected()
            assert server.handshakes == 4


async def test_drop_reconnects_with_a_new_token_and_replays_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A drop reconnects after 1 s with a fresh token and the same subscriptions."""
    async with open_reference_server(listen=False) as server:
        provide = TokenLog(server)
        calls = provide.times
        async with manager_on(server, token=provide) as (manager, events):
            manager.subscribe("device", "d2")
            async with manager.alerts() as alerts, manager.telemetry("d1") as d1:
                await server.wait_until(lambda s: len(s.connections) == 1)
                await server.wait_subscribed("device", "d1")
                await server.publish_alerts([make_alert(1)])
                await server.publish_telemetry("d1", {"temp": 20.5, "on": True})
                first_alerts = await alerts.receive()
                assert [a.alert_id for a in first_alerts] == [1]
                assert isinstance(first_alerts[0], Alert)
                assert (await d1.receive()).metrics == {"temp": 20.5, "on": True}

                dropped_at = trio.current_time()
                events.clear()
                assert await server.drop_connections() == 1
                await server.wait_until(
                    lambda s: (
                        len(s.connections) == 1
                        and len(s.connections[0].subscriptions) == 3
                    )
                )
                second = server.connections[0]
                assert calls[1] - dropped_at == 1.0
                assert server.tokens_seen[0] != server.tokens_seen[1]
                assert second.subscriptions == [
                    ("device", "d2"),
                    ("alerts", None),
                    ("device", "d1"),
                ]
                assert [m for m in second.received if isinstance(m, str)][:3] == [
                    '{"action":"subscribe","type":"device","device_id":"d2"}',
                    '{"action":"subscribe","type":"alerts"}',
                    '{"action":"subscribe","type":"device","device_id":"d1"}',
                ]
                assert events == [
                    ConnectionEvent(ConnectionStatus.DISCONNECTED, code=1006),
                    ConnectionEvent(
                        ConnectionStatus.DISCONNECTED, retry_in=1.0, retry_count=1
                    ),
                    CONNECTING,
                    CONNECTED,
                ]
                await server.publish_alerts([make_alert(2)])
                await server.publish_telemetry("d1", {"temp": 21.0})
                assert [a.alert_id for a in await alerts.receive()] == [2]
                telemetry = await d1.receive()
                assert isinstance(telemetry, Telemetry)
                assert (telemetry.device_id, telemetry.metrics) == (
                    "d1",
                    {"temp": 21.0},
                )
            assert manager.statistics().reconnects == 1


async def test_no_token_is_an_error_without_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A provider returning None publishes "No auth token" and never retries."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, token=lambda: None) as (manager, events):
            with pytest.raises(ConnectionGaveUp, match="No auth token"):
                await manager.wait_connected()
            await trio.sleep(600)
            assert events == [
                ConnectionEvent(ConnectionStatus.ERROR, message="No auth token")
            ]
            assert manager.status is ConnectionStatus.ERROR
            assert server.handshakes == 0


async def test_raising_provider_is_retried_with_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A provider that raises gives an error event, then a normal backoff retry."""
    async with open_reference_server(listen=False) as server:
        results = iter([RuntimeError("secret-ish detail"), None])

        async def provide() -> str:
            failure = next(results, None)
            if failure is not None:
                raise failure
            return server.issue_token()

        async with manager_on(server, token=provide) as (manager, events):
            start = trio.current_time()
            await manager.wait_connected()
            assert trio.current_time() - start == 1.0
            assert events[0] == ConnectionEvent(
                ConnectionStatus.ERROR, message="Token provider failed: RuntimeError"
            )
            assert all("secret-ish" not in repr(e) for e in events)


STATUS_BEFORE_DISCONNECT = {
    "token call": ConnectionStatus.DISCONNECTED,  # "connecting" follows the token
    "handshake": ConnectionStatus.CONNECTING,
    "backoff wait": ConnectionStatus.DISCONNECTED,
    "connected": ConnectionStatus.CONNECTED,
}


@pytest.mark.parametrize("state", list(STATUS_BEFORE_DISCONNECT))
async def test_intentional_disconnect_from_every_state(
    state: str, autojump_clock: trio.testing.MockClock, task_census: TaskCensus
) -> None:
    """disconnect() stops the manager anywhere: no further attempt, no leaked task."""
    async with open_reference_server(listen=False) as server:
        hang = trio.Event()

        async def provide() -> str:
            if state == "token call":
                await hang.wait()
            return server.issue_token()

        if state == "handshake":
            server.transport.stall_next(1)
        if state == "backoff wait":
            server.reject_next(1, status=503)
        before = set(task_census.live)
        async with manager_on(server, token=provide) as (manager, events):
            if state == "connected":
                await manager.wait_connected()
            else:
                await trio.sleep(0.5)
            assert manager.status is STATUS_BEFORE_DISCONNECT[state]
            manager.disconnect()
            await trio.sleep(3600)
            assert manager.status is ConnectionStatus.DISCONNECTED
            attempts = manager.statistics().attempts
            assert attempts == 1
            if state == "connected":
                assert events[-1] == ConnectionEvent(
                    ConnectionStatus.DISCONNECTED, code=1000, reason="Client disconnect"
                )
                assert server.all_connections[0].close_code == 1000
            else:
                assert events[-1] == ConnectionEvent(ConnectionStatus.DISCONNECTED)
            # Idle: only the connection task itself is alive in the manager.
            assert [
                t.name for t in task_census.live - before if "_run" not in t.name
            ] == []
        await task_census.assert_none_left(before)


async def test_connect_again_after_disconnect_replays(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """disconnect() keeps subscriptions; connect() reconnects and replays them."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, _):
            manager.subscribe("alerts")
            await server.wait_subscribed("alerts")
            manager.disconnect()
            await server.wait_until(lambda s: not s.connections)
            assert manager.subscriptions == [("alerts", None)]
            manager.connect()
            manager.connect()  # idempotent
            await server.wait_until(lambda s: len(s.all_connections) == 2)
            await server.wait_subscribed("alerts")
            assert server.max_concurrent_connections == 1


async def test_subscription_contexts_are_reference_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two alerts() users share one server subscription; the last out unsubscribes."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, _):
            await manager.wait_connected()
            async with manager.alerts() as first:
                async with manager.alerts() as second:
                    await server.wait_subscribed("alerts")
                    await server.publish_alerts([make_alert(7)])
                    assert (await first.receive())[0].alert_id == 7
                    assert (await second.receive())[0].alert_id == 7
                assert manager.subscriptions == [("alerts", None)]
            assert manager.subscriptions == []
            await server.wait_until(lambda s: not s.connections[0].subscriptions)
            sent = [m for m in server.connections[0].received if isinstance(m, str)]
            assert sent == [
                '{"action":"subscribe","type":"alerts"}',
                '{"action":"unsubscribe","type":"alerts"}',
            ]


async def test_subscribe_validates_its_arguments() -> None:
    """A device needs an id; alerts take none; unknown kinds are rejected."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, autoconnect=False) as (manager, _):
            with pytest.raises(ValueError, match="device_id"):
                manager.subscribe("device")
            with pytest.raises(ValueError, match="device_id"):
                manager.subscribe("alerts", "d1")
            with pytest.raises(ValueError, match="kind"):
                manager.subscribe("devices", "d1")  # type: ignore[arg-type]
            assert manager.subscriptions == []


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://127.0.0.1", ValueError),
        ("http://", ValueError),
        (b"http://127.0.0.1", TypeError),
    ],
)
async def test_unusable_urls_fail_when_opening(
    url: object, error: type[Exception]
) -> None:
    """A URL that can never work raises before anything connects."""
    with pytest.raises(error):
        async with open_websocket_manager(url, token="t"):  # type: ignore[arg-type]
            pass  # pragma: no cover


async def test_slow_subscriber_never_stalls_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A subscriber that never reads loses messages; heartbeat and others go on."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, ping_interval=1.0, ping_timeout=1.0) as (
            manager,
            _,
        ):
            async with (
                manager.telemetry("d1", max_buffer=2) as stalled,
                manager.telemetry("d1", max_buffer=1000) as reader,
            ):
                await server.wait_subscribed("device", "d1")
                for i in range(500):
                    await server.publish_telemetry("d1", {"i": i})
                    if i % 50 == 0:
                        await trio.sleep(
                            5
                        )  # ten heartbeats pass while nobody reads `stalled`
                received = [(await reader.receive()).metrics["i"] for _ in range(500)]
                assert received == list(range(500))
                assert stalled.dropped == 498
                assert manager.is_connected
                assert manager.statistics().connections == 1


async def test_heartbeat_detects_a_silent_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A silent peer is dropped after interval + timeout, then reconnected."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, ping_interval=5.0, ping_timeout=2.0) as (
            manager,
            events,
        ):
            await manager.wait_connected()
            connected_at = trio.current_time()
            server.connections[0].freeze()
            await server.wait_until(lambda s: len(s.all_connections) == 2)
            lost = [e for e in events if e.code == 1006]
            assert lost == [
                ConnectionEvent(
                    ConnectionStatus.DISCONNECTED, code=1006, reason="Heartbeat timeout"
                )
            ]
            # Lost at 5 + 2 s, back after the 1 s backoff.
            assert math.isclose(trio.current_time() - connected_at, 8.0)


async def test_an_error_in_the_body_comes_out_as_itself(
    autojump_clock: trio.testing.MockClock, task_census: TaskCensus
) -> None:
    """A user exception leaves the manager context unwrapped, with no task left."""

    class AppError(Exception):
        pass

    async with open_reference_server(listen=False) as server:
        before = set(task_census.live)
        # The error must cross the manager's exit, so the whole block is inside.
        with pytest.raises(AppError):  # noqa: PT012 - and not an ExceptionGroup
            async with manager_on(server) as (manager, _):
                await manager.wait_connected()
                raise AppError
        assert server.all_connections[0].close_code == 1000
        await task_census.assert_none_left(before)


async def test_order_holds_across_the_fast_and_slow_paths(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Fragmented and binary frames never overtake or trail short ones."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, _):
            async with manager.alerts(max_buffer=100) as alerts:
                await server.wait_subscribed("alerts")
                connection = server.connections[0]

                def alerts_frame(alert_id: int) -> bytes:
                    text = json.dumps(
                        {"type": "alerts", "alerts": [make_alert(alert_id)]}
                    )
                    return text.encode()

                frames = b"".join(
                    [
                        encode_frame(Opcode.TEXT, alerts_frame(1)),
                        # Alert 2 in two fragments.
                        encode_frame(Opcode.TEXT, alerts_frame(2)[:10], fin=False),
                        encode_frame(Opcode.CONTINUATION, alerts_frame(2)[10:]),
                        encode_frame(Opcode.TEXT, alerts_frame(3)),
                        encode_frame(Opcode.BINARY, b"\x00binary"),
                        encode_frame(Opcode.TEXT, alerts_frame(4)),
                    ]
                )
                assert await connection.write_raw(frames)
                received = [(await alerts.receive())[0].alert_id for _ in range(4)]
                assert received == [1, 2, 3, 4]
                assert manager.statistics().invalid_messages == 1
                assert manager.is_connected


async def test_telemetry_without_a_device_id_is_invalid_not_fatal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A telemetry message with an empty device_id is counted; the connection stays."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, _):
            async with manager.telemetry("d1") as d1:
                await server.wait_subscribed("device", "d1")
                data = {"timestamp": TIMESTAMP, "metrics": {}}
                empty = {"type": "telemetry", "device_id": "", "data": data}
                await server.send_raw(json.dumps(empty))
                await server.publish_telemetry("d1", {"ok": True})
                assert (await d1.receive()).metrics == {"ok": True}
                assert manager.statistics().invalid_messages == 1
                assert manager.statistics().connections == 1


async def test_close_codes_are_plain_ints(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Events carry close codes as int, not wsproto's enum (same repr everywhere)."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, events):
            await manager.wait_connected()
            await server.close_connections(1001, "going away")
            await server.wait_until(lambda s: len(s.all_connections) == 2)
            codes = [e.code for e in events if e.code is not None]
            assert codes == [1001]
            assert type(codes[0]) is int
