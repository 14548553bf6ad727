"""Cancellation: the manager context ends cleanly from every state, one error at a time.

Whatever the connection task is doing when the ``async with`` body is
cancelled or raises, exactly the body's exception comes out (``trio.Cancelled``
caught by the enclosing scope, or the user's own exception), never an
``ExceptionGroup``; no manager task survives the context; and there is never
more than one connection. ``disconnect()`` racing the backoff timer and rapid
connect/disconnect alternation keep the same promises.
"""

from __future__ import annotations

import itertools
import random
import ssl
from collections.abc import Callable
from typing import NoReturn

import pytest
import trio
import trio.testing
from _fault_helpers import manager_tasks
from conftest import TaskCensus
from helpers import MEMORY_URL, manager_on
from test_backpressure import Show, ignore, within

from trio_ws_bus import (
    CONNECTION_TOPIC,
    ConnectionEvent,
    ConnectionStatus,
    MessageBus,
    SubscriptionKey,
    TokenProvider,
    open_websocket_manager,
)
from trio_ws_bus.testing import ReferenceServer, open_reference_server

CLIENT_CLOSE = ConnectionEvent(
    ConnectionStatus.DISCONNECTED, code=1000, reason="Client disconnect"
)


class AppError(Exception):
    """An application's own exception, raised in the manager's ``async with`` body."""


def fail_in_body() -> NoReturn:
    """What the application does in the body: raise its own exception."""
    raise AppError("raised in the body")


class Network:
    """The reference server's memory transport, with congestion on demand.

    While congested, every send of the client blocks (a full send buffer on a
    dead link); closing the stream ends a blocked send.
    """

    def __init__(self, server: ReferenceServer) -> None:
        self._inner = server.transport
        self.congested = False
        self._changed = trio.Event()

    def congest(self) -> None:
        self.congested = True
        self.poke()

    def poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    async def open_stream(
        self, host: str, port: int, *, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        stream = await self._inner.open_stream(host, port, ssl_context=ssl_context)
        return Valve(stream, self)


class Valve(trio.abc.Stream):
    """One stream of a :class:`Network`: sends block while it is congested."""

    def __init__(self, stream: trio.abc.Stream, network: Network) -> None:
        self._stream = stream
        self._network = network
        self._closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        while self._network.congested and not self._closed:
            await self._network.wait_changed()
        if self._closed:
            raise trio.ClosedResourceError("stream closed while the send was blocked")
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        self._closed = True
        self._network.poke()
        await self._stream.aclose()


def settled_on(
    keys: list[SubscriptionKey],
) -> Callable[[ReferenceServer], bool]:
    """A server predicate: one open connection holding exactly ``keys``, in order."""

    def settled(server: ReferenceServer) -> bool:
        conns = server.connections
        return len(conns) == 1 and conns[0].subscriptions == list(keys)

    return settled


# --- the manager context cancelled, or raising, from every state -------------------

STATES = [
    "token call",
    "handshake",
    "backoff wait",
    "connected",
    "closing after disconnect",
    "closing on exit",
]
CLOSE_TIMEOUT = 2.0


@within(300)
async def end_in_state_scenario(
    server: ReferenceServer,
    census: TaskCensus,
    state: str,
    ending: str,
    *,
    token: str | None = None,
    show: Show = ignore,
) -> None:
    """Bring a manager to ``state``, then cancel its context or raise in its body.

    ``ending="cancel"`` cancels the scope around the context; ``"raise"`` raises
    :class:`AppError` in the body. In the two closing states the network is
    congested, so the close frame cannot go out and the close takes
    ``close_timeout``; in "closing on exit" the enclosing scope is cancelled a
    second into that close.
    """
    in_token_call = trio.Event()
    if token is not None:
        server.accept_token(token)

    async def provide() -> str:
        if state == "token call":
            in_token_call.set()
            await trio.sleep_forever()
        return server.issue_token() if token is None else token

    if state == "handshake":
        server.transport.stall_next(1)
    if state == "backoff wait":
        server.reject_next(1, status=503)
    network = Network(server)
    bus = MessageBus()
    events: list[ConnectionEvent] = []
    bus.on(CONNECTION_TOPIC, events.append)

    outcome: BaseException | None = None
    left_at = ended_at = float("nan")
    try:
        with trio.CancelScope() as outer:
            try:
                async with open_websocket_manager(
                    MEMORY_URL,
                    token=provide,
                    bus=bus,
                    transport=network,
                    close_timeout=CLOSE_TIMEOUT,
                    ping_interval=None,
                ) as manager:
                    show(manager)
                    if state == "token call":
                        await in_token_call.wait()
                        assert manager.status is ConnectionStatus.DISCONNECTED
                    elif state == "handshake":
                        await server.wait_until(lambda s: s.transport.attempts == 1)
                        assert manager.status is ConnectionStatus.CONNECTING
                    elif state == "backoff wait":
                        await server.wait_until(lambda s: s.rejections == 1)
                        await trio.sleep(0.5)  # the retry comes at 1.0 s
                        assert events[-1].retry_in == 1.0
                    else:
                        async with manager.alerts() as alerts:
                            show(alerts)
                            await server.wait_subscribed("alerts")
                            assert manager.is_connected
                        await server.wait_until(
                            lambda s: not s.connections[0].subscriptions
                        )
                    if state.startswith("closing"):
                        network.congest()  # the close frame cannot go out
                    left_at = trio.current_time()
                    if state == "closing after disconnect":
                        manager.disconnect()
                        await trio.sleep(1.0)
                        assert manager.status is ConnectionStatus.CONNECTED
                    elif state == "closing on exit":
                        outer.deadline = left_at + 1.0  # fires mid-close
                    show(manager.statistics())
                    if ending == "raise":
                        fail_in_body()
                    if state != "closing on exit":
                        outer.cancel()
                        await trio.lowlevel.checkpoint()
                        pytest.fail("not cancelled")  # pragma: no cover
            except BaseException as exc:
                outcome = exc
                show(exc)
                raise
            finally:
                ended_at = trio.current_time()
    except AppError:
        pass
    show(events)

    if ending == "raise":
        assert type(outcome) is AppError
        assert not outer.cancelled_caught
    else:
        # Also in "closing on exit", where the body ended normally: leaving
        # the context is a checkpoint, so the deadline that passed during the
        # shielded close comes out of it.
        assert type(outcome) is trio.Cancelled
        assert outer.cancelled_caught
    # An open connection closes at once; a congested one takes close_timeout.
    expected_end = left_at + (CLOSE_TIMEOUT if state.startswith("closing") else 0.0)
    assert ended_at == expected_end
    assert manager_tasks(census) == []
    assert manager.status is ConnectionStatus.DISCONNECTED
    assert server.max_concurrent_connections <= 1
    if state == "connected":
        assert events[-1] == CLIENT_CLOSE
        await server.wait_until(lambda s: not s.connections)
        assert server.all_connections[0].close_code == 1000


@pytest.mark.parametrize("ending", ["cancel", "raise"])
@pytest.mark.parametrize("state", STATES, ids=lambda s: s.replace(" ", "-"))
async def test_manager_context_ends_cleanly_from_every_state(
    state: str,
    ending: str,
    autojump_clock: trio.testing.MockClock,
    task_census: TaskCensus,
    no_tasks_left: None,
) -> None:
    """Cancelled or raising anywhere: the plain exception, no task, one connection."""
    async with open_reference_server(listen=False) as server:
        await end_in_state_scenario(server, task_census, state, ending)


# --- disconnect() racing the backoff timer ------------------------------------------

#: Checkpoints after the retry timer fires before disconnect() is called: from
#: "not woken yet" through the token call and handshake to "connected".
RACE_STEPS = range(-1, 32)  # connected from step 17 or 18 today


@within(1000)
async def disconnect_races_retry_scenario(
    server: ReferenceServer,
    cause: str,
    step: int,
    *,
    token: TokenProvider | None = None,
    show: Show = ignore,
) -> ConnectionStatus:
    """Call disconnect() ``step`` checkpoints after the retry timer fires.

    ``step=-1`` is one millisecond before it fires. Afterwards nothing may
    connect until connect(), which then makes exactly one connection that
    replays the subscription. Returns the status disconnect() interrupted.
    """
    if cause == "rejected":
        server.reject_next(1, status=503)
    if token is None:
        token = server.issue_token
    elif isinstance(token, str):
        server.accept_token(token)
    async with manager_on(server, token=token, ping_interval=None) as (
        manager,
        events,
    ):
        async with manager.bus.subscribe(CONNECTION_TOPIC, max_buffer=64) as watch:
            manager.subscribe("alerts")
            if cause == "dropped":
                await server.wait_until(settled_on([("alerts", None)]))
                await server.drop_connections()
            for _ in range(10):  # connecting, error, disconnected, then the retry
                retry = await watch.receive()
                if retry.retry_in is not None:
                    break
        assert retry.retry_in is not None
        fire_at = trio.current_time() + retry.retry_in
        if step < 0:
            await trio.sleep_until(fire_at - 0.001)
        else:
            await trio.sleep_until(fire_at)
            for _ in range(step):
                await trio.lowlevel.checkpoint()
        interrupted = manager.status
        manager.disconnect()
        await trio.sleep(120)  # long past every retry the old session could make
        assert manager.status is ConnectionStatus.DISCONNECTED
        assert server.connections == []
        assert events[-1] in (
            ConnectionEvent(ConnectionStatus.DISCONNECTED),
            CLIENT_CLOSE,
        )
        connections_before = len(server.all_connections)
        manager.connect()
        await manager.wait_connected()
        await server.wait_until(settled_on([("alerts", None)]))
        await trio.sleep(120)
        assert len(server.all_connections) == connections_before + 1
        assert len(server.connections) == 1
        assert server.max_concurrent_connections == 1
        show(manager)
        show(events)
        show(manager.statistics())
    return interrupted


@pytest.mark.parametrize("cause", ["rejected", "dropped"])
async def test_disconnect_racing_the_retry_timer(
    cause: str, autojump_clock: trio.testing.MockClock, task_census: TaskCensus
) -> None:
    """disconnect() at any step around the retry timer: no reconnect, no stray task."""
    interrupted = set()
    for step in RACE_STEPS:
        before = set(task_census.live)
        async with open_reference_server(listen=False) as server:
            interrupted.add(await disconnect_races_retry_scenario(server, cause, step))
        await trio.testing.wait_all_tasks_blocked()
        assert task_census.live - before == set(), f"step {step}"
    # The sweep really hit the wait, the handshake and the open connection
    # (if CONNECTED is missing, an attempt now takes more steps: extend them).
    assert interrupted == {
        ConnectionStatus.DISCONNECTED,
        ConnectionStatus.CONNECTING,
        ConnectionStatus.CONNECTED,
    }


# --- connect() and disconnect() in quick alternation ----------------------------------


async def pause(rng: random.Random) -> None:
    """No pause at all, a few checkpoints, or a short virtual sleep."""
    kind = rng.randrange(4)
    if kind == 1:
        for _ in range(rng.randint(1, 20)):
            await trio.lowlevel.checkpoint()
    elif kind == 2:
        await trio.sleep(rng.uniform(0.0, 0.01))
    elif kind == 3:
        await trio.sleep(rng.choice([0.001, 0.1, 1.5]))


@within(3600)
async def alternation_scenario(
    server: ReferenceServer,
    *,
    seed: int,
    rounds: int = 200,
    token: TokenProvider | None = None,
    show: Show = ignore,
) -> None:
    """connect(); pause; disconnect(); pause -- ``rounds`` times, then settle."""
    rng = random.Random(seed)
    if token is None:
        token = server.issue_token
    elif isinstance(token, str):
        server.accept_token(token)
    keys: list[SubscriptionKey] = [("alerts", None), ("device", "d1")]
    async with manager_on(server, token=token, autoconnect=False) as (
        manager,
        events,
    ):
        for key in keys:
            manager.subscribe(*key)
        for _ in range(rounds):
            manager.connect()
            await pause(rng)
            manager.disconnect()
            await pause(rng)
        await trio.sleep(120)
        assert manager.status is ConnectionStatus.DISCONNECTED
        assert server.connections == []
        manager.connect()
        await manager.wait_connected()
        await server.wait_until(settled_on(keys))
        await trio.sleep(120)
        assert settled_on(keys)(server)
        assert server.max_concurrent_connections == 1
        assert len(server.all_connections) > 1, "some rounds really connected"
        show(manager)
        show(manager.statistics())
        show(events)
    # Nothing failed, so nothing reported an error; "connected" never repeats
    # without a "disconnected" in between.
    assert [e for e in events if e.status is ConnectionStatus.ERROR] == []
    statuses = [e.status for e in events if e.status is not ConnectionStatus.CONNECTING]
    assert all(
        not (a is b is ConnectionStatus.CONNECTED)
        for a, b in itertools.pairwise(statuses)
    )
    assert all(c.close_code in (1000, 1006) for c in server.all_connections)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_connect_and_disconnect_in_quick_alternation(
    seed: int, autojump_clock: trio.testing.MockClock, no_tasks_left: None
) -> None:
    """200 connect/disconnect rounds: one connection at most, then a clean replay."""
    async with open_reference_server(listen=False) as server:
        await alternation_scenario(server, seed=seed)


# --- tasks still waiting on the manager when its context exits -----------------------


async def test_wait_connected_does_not_outlive_the_manager(
    autojump_clock: trio.testing.MockClock, no_tasks_left: None
) -> None:
    """A task in wait_connected() when the context exits gets ClosedResourceError."""
    woken: list[tuple[float, BaseException]] = []
    async with open_reference_server(listen=False) as server:
        server.reject_next(100, status=503)  # never connects
        async with trio.open_nursery() as nursery:
            async with manager_on(server) as (manager, _):

                async def wait() -> None:
                    try:
                        await manager.wait_connected()
                    except trio.ClosedResourceError as exc:
                        woken.append((trio.current_time(), exc))

                nursery.start_soon(wait)
                await trio.sleep(5)
                closed_at = trio.current_time()
            await trio.sleep(60)
            nursery.cancel_scope.cancel()  # the waiter, if still waiting
    assert [at for at, _ in woken] == [closed_at]
