"""Helpers shared by the network, misbehaving-server, auth and TLS fault tests.

Task bookkeeping, event filters and log checks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pytest
import trio
import trio.testing
from conftest import TaskCensus

from trio_ws_bus import (
    CONNECTION_TOPIC,
    ConnectionEvent,
    ConnectionGaveUp,
    ConnectionStatus,
    WebSocketManager,
)

#: The longest log line a scenario may produce (prefix, escaped text, suffix).
LOG_LINE_LIMIT = 300


def lineage(task: trio.lowlevel.Task) -> list[str]:
    """The names of a task and of every task above it."""
    names = []
    current: trio.lowlevel.Task | None = task
    while current is not None:
        names.append(current.name)
        nursery = current.parent_nursery
        current = None if nursery is None else nursery.parent_task
    return names


def manager_tasks(census: TaskCensus) -> list[str]:
    """Live tasks of a manager: its connection task and everything below it."""
    return sorted(
        task.name
        for task in census.live
        if any(name.endswith("WebSocketManager._run") for name in lineage(task))
    )


def idle_manager_tasks(census: TaskCensus) -> list[str]:
    """Manager tasks other than the connection task itself (reader, heartbeat...)."""
    return [name for name in manager_tasks(census) if not name.endswith("._run")]


#: The messages of an "error" event that means the manager has given up.
GIVE_UP_MESSAGES = ("Max reconnection attempts reached", "No auth token")


async def wait_given_up(manager: WebSocketManager, within: float = 1200.0) -> str:
    """Wait until the manager gives up; return the error message it published.

    Unlike ``wait_connected()`` this does not return while a flapping server
    lets the manager connect for an instant. Fails after ``within`` seconds
    (virtual ones under ``autojump_clock``: the default budget takes 511 s).
    """
    with trio.fail_after(within):
        async with manager.bus.subscribe(CONNECTION_TOPIC, max_buffer=10_000) as watch:
            async for event in watch:
                message = event.message or ""
                if message in GIVE_UP_MESSAGES or message.endswith("(not retried)"):
                    break
    with pytest.raises(ConnectionGaveUp) as gave_up:
        await manager.wait_connected()
    return gave_up.value.reason


def errors(events: Sequence[ConnectionEvent]) -> list[str | None]:
    """The messages of the ``error`` events."""
    return [e.message for e in events if e.status is ConnectionStatus.ERROR]


def retries(events: Sequence[ConnectionEvent]) -> list[float]:
    """The ``retry_in`` of every retry announcement."""
    return [e.retry_in for e in events if e.retry_in is not None]


def losses(events: Sequence[ConnectionEvent]) -> list[tuple[int | None, str | None]]:
    """``(code, reason)`` of every "disconnected" event that reports a code."""
    return [
        (e.code, e.reason)
        for e in events
        if e.status is ConnectionStatus.DISCONNECTED and e.code is not None
    ]


def max_per_window(times: Sequence[float], window: float = 60.0) -> int:
    """The most ``times`` that fall within any ``window`` seconds."""
    return max(
        (sum(1 for t in times if start <= t < start + window) for start in times),
        default=0,
    )


def log_lines(caplog: pytest.LogCaptureFixture, name: str = "trio_ws_bus") -> list[str]:
    """The messages logged under ``name`` (and its children), formatted."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == name or record.name.startswith(name + ".")
    ]


def assert_tidy_logs(caplog: pytest.LogCaptureFixture, *forbidden: str) -> list[str]:
    """Every log line is short and free of ``forbidden`` text and raw control chars."""
    lines = [record.getMessage() for record in caplog.records]
    for line in lines:
        assert len(line) <= LOG_LINE_LIMIT, line[:LOG_LINE_LIMIT] + "..."
        for text in forbidden:
            assert text not in line
    ours = log_lines(caplog)
    for line in ours:
        assert not any(ch in line for ch in "\r\n\x1b\x00"), repr(line)
    return lines


def count_matching(lines: Sequence[str], predicate: Callable[[str], bool]) -> int:
    """How many of ``lines`` satisfy ``predicate``."""
    return sum(1 for line in lines if predicate(line))


def debug_logging(caplog: pytest.LogCaptureFixture) -> None:
    """Capture every logger at DEBUG (trio-websocket's included)."""
    caplog.set_level(logging.DEBUG)
