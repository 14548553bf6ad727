"""Canary sweep: every fault scenario again, with a token that must never show.

The token has the characters that need percent-encoding (``+ / = & # %`` and a
space). Each scenario of ``test_backpressure``, ``test_cancellation`` and
``test_load_and_soak`` runs with it (smaller), and so do scenarios where the
server echoes it back (close reasons, error messages, 401 bodies and
headers, invalid frames). Then the DEBUG log of every logger, the repr and
str of everything a scenario could show a user (manager, subscriptions,
events, statistics, bus) and the str, repr and traceback, with its chain, of
every exception must hold neither the token nor any encoding of it.
"""

from __future__ import annotations

import logging
import traceback
import urllib.parse

import pytest
import trio
import trio.testing
from conftest import TaskCensus
from helpers import MEMORY_URL, manager_on
from test_backpressure import (
    cancelled_subscribers_scenario,
    stalled_subscriber_scenario,
)
from test_cancellation import (
    STATES,
    alternation_scenario,
    disconnect_races_retry_scenario,
    end_in_state_scenario,
)
from test_load_and_soak import load_scenario, soak_scenario

from trio_ws_bus import (
    Backoff,
    ConnectionGaveUp,
    ConnectionStatus,
    Overflow,
    open_websocket_manager,
    seed_retry_policy,
)
from trio_ws_bus.testing import make_alert, open_reference_server

CANARY = "c4n4ry+/=&#% s3cr3t-7Qx"
#: Every form the canary could take on its way: raw, percent-encoded as the
#: client sends it, with "/" left alone, and form-encoded ("+" for space).
FORMS = {
    "raw": CANARY,
    "percent-encoded": urllib.parse.quote(CANARY, safe=""),
    "percent-encoded, / kept": urllib.parse.quote(CANARY),
    "form-encoded": urllib.parse.quote_plus(CANARY),
}


def exception_text(exc: BaseException) -> str:
    """str, repr and the formatted traceback, with causes, contexts and groups."""
    return "".join(traceback.format_exception(exc)) + str(exc) + repr(exc)


class Witness:
    """Collects the text of everything a scenario could show a user."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, thing: object) -> None:
        if isinstance(thing, BaseException):
            self.texts.append(exception_text(thing))
        else:
            self.texts.append(repr(thing))
            self.texts.append(str(thing))


@pytest.fixture
def witness(caplog: pytest.LogCaptureFixture) -> Witness:
    """A witness, with every logger captured at DEBUG (trio-websocket's too)."""
    caplog.set_level(logging.DEBUG)
    return Witness()


def leaks(caplog: pytest.LogCaptureFixture, witness: Witness) -> dict[str, str]:
    """Where each form of the canary shows: in the log or in something shown."""
    assert witness.texts, "the scenario showed something"
    return {
        name: where
        for name, form in FORMS.items()
        for where, text in [
            ("log", caplog.text),
            *(("shown", t) for t in witness.texts),
        ]
        if form in text
    }


async def test_canary_through_the_backpressure_scenarios(
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
    witness: Witness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stalled and cancelled subscribers, with the canary token: nothing shows it."""
    for overflow in Overflow:
        async with open_reference_server(listen=False) as server:
            await stalled_subscriber_scenario(
                server, overflow, messages=500, token=CANARY, show=witness
            )
            assert server.tokens_seen == [CANARY]
    for leave in ("one by one", "all at once"):
        async with open_reference_server(listen=False) as server:
            await cancelled_subscribers_scenario(
                server, leave, token=CANARY, show=witness
            )
            assert server.tokens_seen == [CANARY]
    assert leaks(caplog, witness) == {}


async def test_canary_through_the_cancellation_scenarios(
    autojump_clock: trio.testing.MockClock,
    task_census: TaskCensus,
    no_tasks_left: None,
    witness: Witness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every state and ending, the retry race and the alternation, with the canary."""
    for state in STATES:
        for ending in ("cancel", "raise"):
            async with open_reference_server(listen=False) as server:
                await end_in_state_scenario(
                    server, task_census, state, ending, token=CANARY, show=witness
                )
    for cause in ("rejected", "dropped"):
        for step in (-1, 0, 3, 8, 20):
            async with open_reference_server(listen=False) as server:
                await disconnect_races_retry_scenario(
                    server, cause, step, token=CANARY, show=witness
                )
                assert set(server.tokens_seen) == {CANARY}
    async with open_reference_server(listen=False) as server:
        await alternation_scenario(
            server, seed=4, rounds=50, token=CANARY, show=witness
        )
        assert set(server.tokens_seen) == {CANARY}
    assert leaks(caplog, witness) == {}


async def test_canary_through_load_and_soak(
    autojump_clock: trio.testing.MockClock,
    task_census: TaskCensus,
    no_tasks_left: None,
    witness: Witness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A short load run and three hours of faults (token failures too), canary token."""
    async with open_reference_server(listen=False) as server:
        await load_scenario(server, messages=10_000, token=CANARY, show=witness)
        assert server.tokens_seen == [CANARY]
    # The provider's failures carry the token in their message: only their
    # type may be shown.
    report = await soak_scenario(
        task_census, seed=4, hours=3, token=CANARY, show=witness
    )
    assert report["faults"]["token"] >= 1
    assert report["statuses"][ConnectionStatus.ERROR] >= 1
    assert leaks(caplog, witness) == {}


async def test_canary_echoed_by_the_server(
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
    witness: Witness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Close reasons, errors, bad frames, 401 bodies and headers echo the token."""
    encoded = FORMS["percent-encoded"]
    async with open_reference_server(listen=False) as server:
        server.accept_token(CANARY)
        async with manager_on(
            server,
            token=CANARY,
            ping_interval=1.0,
            backoff=Backoff(max_retries=3),
            retry_policy=seed_retry_policy,  # 401s until the budget is spent
        ) as (manager, events):
            async with manager.alerts() as alerts:
                witness(alerts)
                await server.wait_subscribed("alerts")
                await server.publish_alerts([make_alert(1)])
                witness(await alerts.receive())
                await server.send_error(f"bad request for token {CANARY} ({encoded})")
                await server.send_raw(f'{{"type":"nope","token":"{CANARY}"}}')
                await server.send_raw(f'{{"type":"alerts","alerts":"{encoded}"}}')
                await server.send_raw(f"not json {CANARY}")
                await server.send_raw(f"binary {CANARY}".encode())
                # A few heartbeats; the close comes between two pings (a ping
                # that crosses trio-websocket's close frame crashes its server).
                await trio.sleep(3.5)
                await server.close_connections(4001, f"token {CANARY} expired")
                await server.wait_subscribed("alerts")
                await server.close_connections(4002, f"token={encoded}")
                await server.wait_subscribed("alerts")
                await server.drop_connections()
                await server.wait_subscribed("alerts")
                server.connections[0].freeze()
                server.reject_next(
                    10,
                    status=401,
                    body=f"bad token {CANARY} {encoded}".encode(),
                    headers=[(b"WWW-Authenticate", f"Bearer {encoded}".encode())],
                )
                await trio.sleep(60)  # heartbeat timeout, then 401 until giving up
                with pytest.raises(ConnectionGaveUp) as gave_up:
                    await manager.wait_connected()
                witness(gave_up.value)
            witness(manager)
            witness(manager.statistics())
            witness(manager.bus)
            witness(manager.bus.statistics())
            witness(events)
            stats = manager.statistics()
            assert (stats.server_errors, stats.invalid_messages) == (1, 4)
            assert any(e.reason == "Heartbeat timeout" for e in events)
            assert any(e.code == 4001 for e in events)
            assert events[-1].message == "Max reconnection attempts reached"
    assert leaks(caplog, witness) == {}


async def test_canary_from_a_failing_provider(
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
    witness: Witness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A provider that raises with the token in its message, or returns bytes."""
    async with open_reference_server(listen=False) as server:
        server.accept_token(CANARY)
        answers: list[object] = [
            RuntimeError(f"refresh failed for {CANARY}"),
            CANARY.encode(),
            ValueError(FORMS["percent-encoded"]),
            CANARY,
        ]

        def provide() -> str:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer  # type: ignore[return-value]  # bytes on purpose

        async with manager_on(server, token=provide) as (manager, events):
            await manager.wait_connected()
            witness(manager)
            witness(events)
        assert [e.message for e in events if e.status is ConnectionStatus.ERROR] == [
            "Token provider failed: RuntimeError",
            "Token provider returned bytes, not str",
            "Token provider failed: ValueError",
        ]
    assert leaks(caplog, witness) == {}


async def test_canary_in_the_base_url_is_redacted_in_the_repr(
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
    witness: Witness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A base URL that carries ?token=... shows as token=*** (DESIGN.md rule 10)."""
    async with open_reference_server(listen=False) as server:
        server.accept_token(CANARY)
        base = f"{MEMORY_URL}/api/v2/ws?token={FORMS['percent-encoded']}&v=2"
        async with open_websocket_manager(
            base, token=CANARY, transport=server.transport
        ) as manager:
            await manager.wait_connected()
            witness(manager)
            assert "token=***" in repr(manager)
    assert leaks(caplog, witness) == {}
