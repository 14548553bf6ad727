"""Auth and tokens: a fresh token per attempt, odd providers, refused credentials.

All in virtual time over the reference server's in-memory transport.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from _fault_helpers import (
    errors,
    losses,
    retries,
    wait_given_up,
)
from helpers import SEED_ATTEMPT_TIMES, TokenLog, manager_on

from trio_ws_bus import (
    Backoff,
    ConnectionEvent,
    ConnectionFailure,
    ConnectionGaveUp,
    ConnectionStatus,
    RetryRules,
    RetryVerdict,
    fatal_auth_policy,
    seed_retry_policy,
)
from trio_ws_bus.testing import make_alert, open_reference_server

#: Tokens full of characters that must be percent-encoded in a query string.
ODD_TOKENS = [
    "a+b/c=d&e#f%g h",
    "%2B already encoded?",
    "=&=&==",
    "ünïcødé ✓ token",
]

# --- 12. the token provider ----------------------------------------------------


async def test_every_attempt_gets_a_fresh_percent_encoded_token(
    autojump_clock: trio.testing.MockClock, no_tasks_left: None
) -> None:
    """Each attempt calls the provider; + / = & # % and spaces arrive intact."""
    async with open_reference_server(listen=False) as server:
        server.reject_next(2, status=503)
        tokens = TokenLog(server, ODD_TOKENS)
        async with manager_on(server, token=tokens) as (manager, _):
            await manager.wait_connected()
            await server.close_connections(1012)
            await server.wait_until(lambda s: len(s.all_connections) == 2)
            await manager.wait_connected()
            assert server.tokens_seen == ODD_TOKENS
            assert tokens.issued == ODD_TOKENS
            assert [c.token for c in server.all_connections] == ODD_TOKENS[2:]


def returning(value: object) -> Callable[[], object]:
    """A sync provider returning ``value``."""
    return lambda: value


def returning_async(value: object) -> Callable[[], Awaitable[object]]:
    """An async provider returning ``value`` after a checkpoint."""

    async def provide() -> object:
        await trio.lowlevel.checkpoint()
        return value

    return provide


@pytest.mark.parametrize(
    "provider",
    [returning(None), returning(""), returning_async(None), returning_async("")],
    ids=["none", "empty", "async-none", "async-empty"],
)
async def test_missing_token_stops_without_retrying(
    provider: Callable[[], object],
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
) -> None:
    """None or "": one "No auth token" error, no handshake, no retry, ever."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, token=provider) as (manager, events):
            with pytest.raises(ConnectionGaveUp, match="No auth token"):
                await manager.wait_connected()
            await trio.sleep(3600)
            assert events == [
                ConnectionEvent(ConnectionStatus.ERROR, message="No auth token")
            ]
            assert manager.status is ConnectionStatus.ERROR
            assert manager.statistics().attempts == 1
        assert server.transport.attempts == 0


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("raise", "Token provider failed: PermissionError"),
        ("hang", "Token provider timed out"),
        ("bytes", "Token provider returned bytes, not str"),
        ("int", "Token provider returned int, not str"),
    ],
)
async def test_failing_provider_is_retried_on_the_schedule(
    bad: str,
    message: str,
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
) -> None:
    """A provider that raises, hangs or returns a non-str: error, then backoff retry."""
    async with open_reference_server(listen=False) as server:
        calls: list[float] = []

        async def provide() -> object:
            calls.append(trio.current_time())
            if len(calls) <= 2:
                if bad == "raise":
                    raise PermissionError("token=very-secret-refresh-token")
                if bad == "hang":
                    await trio.sleep_forever()
                return b"tok" if bad == "bytes" else 42
            return server.issue_token()

        async with manager_on(server, token=provide, open_timeout=4.0) as (
            manager,
            events,
        ):
            await manager.wait_connected()
            hung = 4.0 if bad == "hang" else 0.0
            assert calls == [0.0, hung + 1.0, 2 * hung + 3.0]
            assert errors(events) == [message, message]
            assert retries(events) == [1.0, 2.0]
            assert all("very-secret" not in repr(event) for event in events)
            assert manager.statistics().connections == 1


async def test_slow_provider_and_handshake_share_one_open_timeout(
    autojump_clock: trio.testing.MockClock, no_tasks_left: None
) -> None:
    """open_timeout bounds the whole attempt: a 3 s token call leaves 2 s of 5."""
    async with open_reference_server(listen=False) as server:
        server.transport.stall_next(1)

        async def provide() -> str:
            await trio.sleep(3.0)
            return server.issue_token()

        async with manager_on(server, token=provide, open_timeout=5.0) as (
            manager,
            events,
        ):
            await manager.wait_connected()
            assert errors(events) == ["Opening handshake timed out"]
            # Failed at 5.0 (not 3 + 5), retried 1 s later, 3 s of token call.
            assert trio.current_time() == 5.0 + 1.0 + 3.0


# --- 13. refused credentials -----------------------------------------------------


async def test_401_once_then_a_fresh_token_recovers(
    autojump_clock: trio.testing.MockClock, no_tasks_left: None
) -> None:
    """Default policy: one 401, then at once a fresh token, which is accepted."""
    async with open_reference_server(listen=False) as server:
        tokens = TokenLog(server)
        server.reject_next(1, status=401, body=b"token expired")
        async with manager_on(server, token=tokens) as (manager, events):
            await manager.wait_connected()
            assert tokens.relative_times() == [0.0, 0.0]
            assert errors(events) == ["Handshake rejected with HTTP 401"]
            assert server.connections[0].token == tokens.issued[1] != tokens.issued[0]


async def test_fatal_auth_policy_retries_a_401_at_once_with_a_fresh_token(
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
) -> None:
    """fatal_auth_policy: a single 401 is retried immediately and recovers."""
    async with open_reference_server(listen=False) as server:
        tokens = TokenLog(server)
        server.reject_next(1, status=401)
        async with manager_on(server, token=tokens, retry_policy=fatal_auth_policy) as (
            manager,
            events,
        ):
            await manager.wait_connected()
            assert tokens.relative_times() == [0.0, 0.0]
            assert retries(events) == [0.0]
            assert tokens.issued[0] != tokens.issued[1]


@pytest.mark.parametrize(
    ("status", "policy", "attempts", "given_up"),
    [
        (401, None, 2, "Connection rejected with HTTP 401 (not retried)"),
        (403, None, 1, "Connection rejected with HTTP 403 (not retried)"),
        (404, None, 1, "Connection rejected with HTTP 404 (not retried)"),
        (401, seed_retry_policy, 21, "Max reconnection attempts reached"),
        (403, seed_retry_policy, 21, "Max reconnection attempts reached"),
        (401, fatal_auth_policy, 2, "Connection rejected with HTTP 401 (not retried)"),
        (403, fatal_auth_policy, 1, "Connection rejected with HTTP 403 (not retried)"),
        (
            401,
            RetryRules(fatal_statuses={401}),
            1,
            "Connection rejected with HTTP 401 (not retried)",
        ),
    ],
    ids=[
        "401-default",
        "403-default",
        "404-default",
        "401-seed",
        "403-seed",
        "401-fatal-auth",
        "403-fatal-auth",
        "401-rules",
    ],
)
async def test_refused_forever_follows_the_policy(
    status: int,
    policy: Callable[..., object] | None,
    attempts: int,
    given_up: str,
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
) -> None:
    """401/403/404 forever: the seed rule spends the budget; the others stop."""
    async with open_reference_server(listen=False) as server:
        if status != 401:
            server.reject_next(1000, status=status)
        tokens = TokenLog(server, valid=status != 401)
        options = {} if policy is None else {"retry_policy": policy}
        async with manager_on(server, token=tokens, **options) as (manager, events):
            assert await wait_given_up(manager) == given_up
            await trio.sleep(3600)  # and nothing more happens
        assert server.rejections == attempts
        assert len(tokens.times) == attempts
        if attempts == 21:
            assert tokens.relative_times() == SEED_ATTEMPT_TIMES
        else:
            assert tokens.relative_times() == [0.0] * attempts
        assert events[-1] == ConnectionEvent(ConnectionStatus.ERROR, message=given_up)


# --- 14. token expiry mid-session --------------------------------------------------


@pytest.mark.parametrize("immediate", [False, True], ids=["default", "retry-now-4001"])
async def test_token_expiry_close_reconnects_with_a_new_token_and_replays(
    immediate: bool,
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
) -> None:
    """Server closes with 4001: new token, replay; RetryRules can make it immediate."""
    async with open_reference_server(listen=False) as server:
        tokens = TokenLog(server)
        options = {"retry_policy": RetryRules(retry_now_close_codes={4001})}
        async with manager_on(
            server, token=tokens, **(options if immediate else {})
        ) as (
            manager,
            events,
        ):
            async with manager.alerts() as alerts, manager.telemetry("d1") as d1:
                await server.wait_subscribed("device", "d1")
                # A long, healthy session. Not a multiple of ping_interval: a
                # ping that crosses the server's close frame makes
                # trio-websocket's server crash on the pong it owes (wsproto
                # refuses to send in LOCAL_CLOSING) and drop TCP unclosed.
                await trio.sleep(599.5)
                expired_at = trio.current_time()
                await server.close_connections(4001, "token expired")
                await server.wait_until(
                    lambda s: (
                        len(s.connections) == 1
                        and len(s.connections[0].subscriptions) == 2
                    )
                )
                delay = 0.0 if immediate else 1.0
                assert tokens.times[1] - expired_at == delay
                assert server.connections[0].token == tokens.issued[1]
                assert tokens.issued[1] != tokens.issued[0]
                await server.publish_alerts([make_alert(5)])
                await server.publish_telemetry("d1", {"v": 1})
                assert (await alerts.receive())[0].alert_id == 5
                assert (await d1.receive()).metrics == {"v": 1}
            assert losses(events) == [(4001, "token expired")]
            assert retries(events) == [delay]


def always_now(failure: ConnectionFailure) -> RetryVerdict:
    """A reckless policy: retry everything at once."""
    return RetryVerdict.RETRY_NOW


@pytest.mark.parametrize(
    ("policy", "first_delays"),
    [
        (always_now, [0.0, 2.0, 0.0, 8.0, 0.0]),
        (RetryRules(retry_now_close_codes={4001}), [0.0, 2.0, 4.0, 8.0, 16.0]),
    ],
    ids=["always-retry-now", "rules-4001"],
)  # reset_after opted in: by default each handshake would refill the budget
async def test_immediate_retries_never_loop(
    policy: Callable[[ConnectionFailure], RetryVerdict],
    first_delays: list[float],
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
) -> None:
    """4001 at every connect, retried "now": never two immediate retries in a row."""
    async with open_reference_server(listen=False) as server:
        server.close_next(1000, code=4001, reason="token expired")
        tokens = TokenLog(server)
        async with manager_on(
            server,
            token=tokens,
            retry_policy=policy,
            backoff=Backoff(reset_after=10.0),
        ) as (manager, events):
            assert await wait_given_up(manager) == "Max reconnection attempts reached"
        delays = retries(events)
        assert len(delays) == 20
        assert all(not (a == 0.0 and b == 0.0) for a, b in itertools.pairwise(delays))
        assert delays[:5] == first_delays
        assert len(server.all_connections) == 21


async def test_a_closed_managers_token_stops_rewriting_log_lines(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    no_tasks_left: None,
) -> None:
    """After a manager with token "t" exits, later log lines keep their letter t."""
    caplog.set_level(logging.INFO, logger="trio_ws_bus")
    async with open_reference_server(listen=False) as server:
        server.accept_token("t")
        async with manager_on(server, token="t") as (first, _):
            await first.wait_connected()
        caplog.clear()
        async with manager_on(server, token=server.issue_token()) as (second, _):
            await second.wait_connected()
    assert "connected to http://127.0.0.1:8080" in caplog.text
