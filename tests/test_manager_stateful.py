"""A Hypothesis state machine: subscribe, unsubscribe, connect, disconnect, drop.

Invariant: once the manager has settled, the server holds exactly the
manager's persisted subscriptions (or nothing, when disconnected), over one
connection at most. Trio runs in a helper thread with an autojump clock; each
rule calls into it with ``trio.from_thread``.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
import trio.testing
from helpers import MEMORY_URL, SUBSCRIPTION_KEYS
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from trio_ws_bus import SubscriptionKey, WebSocketManager, open_websocket_manager
from trio_ws_bus.testing import ReferenceServer, open_reference_server

T = TypeVar("T")


class TrioInThread:
    """A reference server and a manager running in their own trio thread."""

    server: ReferenceServer
    manager: WebSocketManager

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError(f"trio thread did not start: {self._failure!r}")

    def _run(self) -> None:
        try:
            trio.run(self._main, clock=trio.testing.MockClock(autojump_threshold=0))
        except BaseException as exc:  # reported by start() and stop()
            self._failure = exc

    async def _main(self) -> None:
        async with open_reference_server(listen=False) as server:
            async with open_websocket_manager(
                MEMORY_URL,
                token=server.issue_token,
                transport=server.transport,
                ping_interval=None,
                autoconnect=False,
            ) as manager:
                self.server, self.manager = server, manager
                self._stop = trio.Event()
                self._token = trio.lowlevel.current_trio_token()
                self._ready.set()
                await self._stop.wait()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def wait(self, afn: Callable[[], Awaitable[T]]) -> T:
        return trio.from_thread.run(afn, trio_token=self._token)

    def stop(self) -> None:
        self.call(self._stop.set)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()
        if self._failure is not None:
            raise self._failure


class ManagerMachine(RuleBasedStateMachine):
    """Random operations; after each step the manager must settle on the model."""

    def __init__(self) -> None:
        super().__init__()
        self.trio = TrioInThread()
        self.connected = False
        self.persisted: list[SubscriptionKey] = []

    @rule(key=st.sampled_from(SUBSCRIPTION_KEYS))
    def subscribe(self, key: SubscriptionKey) -> None:
        self.trio.call(self.trio.manager.subscribe, *key)
        if key not in self.persisted:
            self.persisted.append(key)

    @rule(key=st.sampled_from(SUBSCRIPTION_KEYS))
    def unsubscribe(self, key: SubscriptionKey) -> None:
        self.trio.call(self.trio.manager.unsubscribe, *key)
        if key in self.persisted:
            self.persisted.remove(key)

    @rule()
    def connect(self) -> None:
        self.trio.call(self.trio.manager.connect)
        self.connected = True

    @rule()
    def disconnect(self) -> None:
        self.trio.call(self.trio.manager.disconnect)
        self.connected = False

    @precondition(lambda self: self.connected)
    @rule()
    def server_drops(self) -> None:
        self.trio.wait(self.trio.server.drop_connections)

    @invariant()
    def settles_on_the_persisted_subscriptions(self) -> None:
        server, manager = self.trio.server, self.trio.manager
        expected = sorted(self.persisted, key=repr)

        def settled(s: ReferenceServer) -> bool:
            if not self.connected:
                return not s.connections
            return (
                len(s.connections) == 1
                and sorted(s.connections[0].subscriptions, key=repr) == expected
            )

        async def settle() -> None:
            with trio.fail_after(300):  # virtual seconds: far beyond one backoff step
                await server.wait_until(settled)
                if self.connected:
                    await manager.wait_connected()

        self.trio.wait(settle)
        assert manager.subscriptions == self.persisted
        assert server.max_concurrent_connections <= 1

    def teardown(self) -> None:
        self.trio.stop()


ManagerMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestManagerMachine = ManagerMachine.TestCase
