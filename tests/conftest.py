"""Shared fixtures and hooks: a census of live tasks, a deadline on every test."""

from __future__ import annotations

import functools
import inspect
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing


class TaskCensus(trio.abc.Instrument):
    """Counts live tasks, to prove a scenario leaves none behind."""

    def __init__(self) -> None:
        self.live: set[trio.lowlevel.Task] = set()

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.live.add(task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.live.discard(task)

    def names(self) -> list[str]:
        return sorted(task.name for task in self.live)

    async def assert_none_left(self, before: set[trio.lowlevel.Task]) -> None:
        """Every task spawned since ``before`` (a copy of ``live``) has exited."""
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(task.name for task in self.live - before) == []


@pytest.fixture
async def task_census() -> AsyncIterator[TaskCensus]:
    """A live-task census installed for the duration of one trio test."""
    census = TaskCensus()
    trio.lowlevel.add_instrument(census)
    yield census
    trio.lowlevel.remove_instrument(census)


@pytest.fixture
async def no_tasks_left(task_census: TaskCensus) -> AsyncIterator[None]:
    """Fails the test if a task it started is still alive once it has returned.

    Name it as an argument (``no_tasks_left: None``): pytest-trio runs only the
    async fixtures a test names, so ``usefixtures`` would skip the check. The
    census is taken before the test starts and checked after it ends, with
    :meth:`TaskCensus.assert_none_left` (under the same deadline as the test).
    Not for tests whose other async fixtures start tasks of their own: their
    teardown is not ordered with this one.
    """
    before = set(task_census.live)
    yield
    with trio.fail_after(_time_cap()):
        await task_census.assert_none_left(before)


#: Every async test runs under a deadline, so a hang fails instead of stalling
#: CI: real seconds on the real clock; virtual seconds under ``MockClock``,
#: where scenarios legitimately wait through hours of backoff and where a
#: deadlock would otherwise never end (nothing is left for autojump to jump to).
REAL_TIME_CAP = 60.0
VIRTUAL_TIME_CAP = 7 * 24 * 3600.0


def _time_cap() -> float:
    """The deadline of a test: in virtual seconds under ``MockClock``, else real."""
    virtual = isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
    return VIRTUAL_TIME_CAP if virtual else REAL_TIME_CAP


def _capped(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(test)
    async def run_with_deadline(*args: Any, **kwargs: Any) -> None:
        with trio.fail_after(_time_cap()):
            await test(*args, **kwargs)

    return run_with_deadline


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Wrap every async test function in a deadline (see REAL_TIME_CAP)."""
    for item in items:
        function = getattr(item, "obj", None)
        if inspect.iscoroutinefunction(function):
            item.obj = _capped(function)  # type: ignore[attr-defined]


@pytest.fixture
def dead_proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """HTTP_PROXY, HTTPS_PROXY and ALL_PROXY name a dead proxy on 127.0.0.1.

    The port is bound but never listens, so anything that goes through the
    proxy is refused at once; no ``NO_PROXY`` helps. Subprocesses inherit it.
    Yields the proxy's URL.
    """
    for name in [name for name in os.environ if name.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, url)
        yield url
