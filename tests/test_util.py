"""open_nursery_body_as_itself: which failure leaves a nursery, and as what."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from trio_ws_bus._util import BaseExceptionGroup, open_nursery_body_as_itself


class BodyError(Exception):
    pass


class TaskError(Exception):
    pass


async def fail_after_a_while(error: BaseException) -> None:
    await trio.sleep(1)
    raise error


async def run(body: Callable[[trio.Nursery], Awaitable[object]]) -> None:
    """Run ``body`` as the body of the nursery under test."""
    async with open_nursery_body_as_itself() as nursery:
        await body(nursery)


async def test_the_bodys_exception_comes_out_as_that_object(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An exception raised in the body leaves as itself, its context kept."""
    error = BodyError("boom")
    before = error.__context__ = KeyError("before")

    async def body(nursery: trio.Nursery) -> None:
        raise error

    with pytest.raises(BodyError) as excinfo:
        await run(body)
    assert excinfo.value is error
    assert error.__context__ is before


async def test_the_bodys_own_group_comes_out_as_that_group(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A group the body raised is not flattened nor wrapped again."""
    group = BaseExceptionGroup("mine", [BodyError("a"), BodyError("b")])
    with pytest.raises(BaseExceptionGroup) as excinfo:
        async with open_nursery_body_as_itself():
            raise group
    assert excinfo.value is group


async def test_one_failed_task_comes_out_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A task's exception that cancelled the body leaves alone, not in a group."""
    error = TaskError("task")

    async def body(nursery: trio.Nursery) -> None:
        nursery.start_soon(fail_after_a_while, error)
        await trio.sleep_forever()

    with pytest.raises(TaskError) as excinfo:
        await run(body)
    assert excinfo.value is error


async def test_two_failures_propagate_as_the_group(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failed task beside a failed body: the group, with both."""
    with pytest.RaisesGroup(TaskError, BodyError):
        async with open_nursery_body_as_itself() as nursery:
            nursery.start_soon(fail_after_a_while, TaskError("task"))
            try:
                await trio.sleep_forever()
            finally:
                raise BodyError("body")


async def test_an_outer_cancellation_is_delivered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelling the code around the nursery cancels body and tasks, silently."""
    with trio.move_on_after(5) as scope:
        async with open_nursery_body_as_itself() as nursery:
            nursery.start_soon(trio.sleep_forever)
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert trio.current_time() == 5


async def test_a_clean_exit_waits_for_the_tasks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without a failure it is a nursery: the exit waits for every task."""
    async with open_nursery_body_as_itself() as nursery:
        nursery.start_soon(trio.sleep, 3)
    assert trio.current_time() == 3
